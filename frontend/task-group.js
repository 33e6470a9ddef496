// <ts-task-group root-id="…">: on the dashboard, a workflow as one entry: its root's card, the
// counts of the tasks under it by state, and those tasks as a tree, collapsed until asked for.
// ActiveTasks hands it every task of the workflow (`update`); when it is made, it reads the
// whole tree once (so that the children that ended before the page loaded are counted too).

import { lifecycle, manager, taskTitle } from './context.js';
import { h, setText, uid } from './dom.js';
import { countByState, describeCounts } from './workflow-model.js';

export class TaskGroup extends HTMLElement {
  #card = document.createElement('ts-task-card');
  #placeholder = h('p', { class: 'group-placeholder' });
  #toggle = h('button', { type: 'button', class: 'btn btn-small btn-quiet group-toggle', 'aria-expanded': 'false' });
  #counts = h('span', { class: 'group-counts' });
  #tree = document.createElement('ts-task-tree');
  #built = false;
  #onClick = (event) => {
    if (event.target.closest('.group-toggle') === this.#toggle) this.expanded = !this.expanded;
  };

  get rootId() { return this.getAttribute('root-id'); }

  get root() { return this.#card.task; }

  connectedCallback() {
    if (!this.#built) this.#build();
    this.addEventListener('click', this.#onClick);
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
  }

  get expanded() { return this.#toggle.getAttribute('aria-expanded') === 'true'; }

  set expanded(open) {
    this.#toggle.setAttribute('aria-expanded', String(open));
    this.#tree.hidden = !open;
    this.toggleAttribute('data-expanded', open);
    this.#renderCounts();
  }

  /** A task of this workflow changed (its root, or a task under it). */
  update(task) {
    this.#tree.rootId ??= this.rootId;
    if (task.id === this.rootId) {
      this.#card.task = task;
      this.#placeholder.hidden = true;
      this.#card.hidden = false;
    }
    this.#tree.update(task);
    this.#renderCounts();
  }

  /** Whether every task of the workflow it knows of has ended. */
  get finished() {
    const all = this.#tree.tasks;
    return all.length > 0 && this.root !== undefined && all.every((t) => lifecycle().isTerminal(t.state));
  }

  /** How many of its tasks are active. */
  get activeCount() {
    return this.#tree.tasks.filter((t) => !lifecycle().isTerminal(t.state)).length;
  }

  tick() {
    this.#card.tick?.();
  }

  #build() {
    const treeId = uid('group-tree');
    this.#tree.id = treeId;
    this.#tree.rootId = this.rootId;
    this.#tree.showRoot = false;
    this.#tree.hidden = true;
    this.#toggle.setAttribute('aria-controls', treeId);
    this.#card.hidden = !this.root;
    setText(this.#placeholder, `Workflow ${this.rootId?.slice(0, 8)}…`);
    this.replaceChildren(h('div', { class: 'task-group' },
      this.#placeholder, this.#card,
      h('div', { class: 'group-bar' }, this.#toggle, this.#counts),
      this.#tree));
    this.#built = true;
    this.#renderCounts();
    this.#loadTree();
  }

  async #loadTree() {
    try {
      // The tasks come back through the manager's taskUpdated, which ActiveTasks hands on.
      const tasks = await manager().getTaskTree(this.rootId);
      for (const task of tasks) this.update(task);
    } catch {
      // The tasks already handed on stay; the counts are of those.
    }
  }

  #renderCounts() {
    const under = this.#tree.tasks.filter((t) => t.id !== this.rootId);
    const counts = countByState(under, lifecycle().states);
    const total = under.length;
    const title = this.root ? taskTitle(this.root) : 'this workflow';
    setText(this.#toggle, `${this.expanded ? 'Hide' : 'Show'} ${total} ${total === 1 ? 'child task' : 'child tasks'}`);
    this.#toggle.setAttribute('aria-label', `${this.expanded ? 'Hide' : 'Show'} the ${total} child tasks of ${title}`);
    const blocked = under.filter((t) => t.blocked && t.state === 'queued').length;
    setText(this.#counts, `${describeCounts(counts)}${blocked ? ` (${blocked} blocked)` : ''}`);
    this.dataset.children = String(total);
  }
}

export function registerTaskGroup() {
  if (!customElements.get('ts-task-group')) customElements.define('ts-task-group', TaskGroup);
}
