// <ts-task-tree>: a tree of tasks (a root, the children its job spawned, theirs, …) as nested
// lists: each task's state, name (a link to its page), progress, and what it waits for. Rows
// are updated in place; the nesting is rebuilt only when a task joins or leaves the tree.
//
// Properties: `rootId`, `currentId` (marked as the page's own task), `showRoot` (false: only
// what is under the root, as in a dashboard group), `tasks` (the flat list), and update(task).

import { taskTitle } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { formatPercent, stateLabel } from './format.js';
import { buildTaskTree, describeBlockers, whatBlocks } from './workflow-model.js';

export class TaskTree extends HTMLElement {
  rootId = null;
  currentId = null;
  showRoot = true;
  #tasks = new Map();
  #rows = new Map();
  #shapeKey = '';
  #list = h('ul', { class: 'task-tree' });

  connectedCallback() {
    if (!this.#list.isConnected) this.replaceChildren(this.#list);
    this.#render();
  }

  set tasks(list) {
    this.#tasks = new Map(list.map((task) => [task.id, task]));
    this.#render();
  }

  get tasks() {
    return [...this.#tasks.values()];
  }

  /** A task of this tree changed (or appeared); answers whether it belongs to the tree. */
  update(task) {
    if (!task || (task.root_id ?? task.id) !== this.rootId) return false;
    this.#tasks.set(task.id, task);
    this.#render();
    return true;
  }

  #render() {
    if (!this.isConnected) return;
    const tree = buildTaskTree([...this.#tasks.values()], this.rootId);
    const top = !tree ? [] : this.showRoot ? [tree] : tree.children;
    const shape = JSON.stringify(top.map(function key(node) { return [node.task.id, node.children.map(key)]; }));
    if (shape !== this.#shapeKey) {
      this.#shapeKey = shape;
      replaceChildren(this.#list, top.map((node) => this.#branch(node)));
    }
    for (const task of this.#tasks.values()) this.#fill(task);
    this.setAttribute('aria-busy', String(!tree));
  }

  #branch(node) {
    const row = this.#row(node.task.id);
    const nested = node.children.length ? h('ul', {}, node.children.map((child) => this.#branch(child))) : null;
    row.item.replaceChildren(row.line);
    if (nested) row.item.append(nested);
    return row.item;
  }

  #row(taskId) {
    let row = this.#rows.get(taskId);
    if (!row) {
      const link = h('a', { class: 'tree-name', href: `#/tasks/${encodeURIComponent(taskId)}` });
      row = {
        link,
        badge: h('span', { class: 'badge' }),
        progress: h('progress', { max: 100, value: 0 }),
        percent: h('span', { class: 'percent' }),
        note: h('span', { class: 'tree-note' }),
      };
      row.line = h('div', { class: 'tree-row' }, row.badge, link,
        h('span', { class: 'tree-progress' }, row.progress, row.percent), row.note);
      row.item = h('li', { dataset: { taskId } }, row.line);
      this.#rows.set(taskId, row);
    }
    return row;
  }

  #fill(task) {
    const row = this.#rows.get(task.id);
    if (!row) return;
    const title = taskTitle(task);
    row.item.dataset.state = task.state;
    setText(row.link, title);
    if (task.id === this.currentId) row.link.setAttribute('aria-current', 'page');
    else row.link.removeAttribute('aria-current');
    row.badge.className = `badge state-${task.state}`;
    setText(row.badge, stateLabel(task.state));
    const progress = Math.max(0, Math.min(100, Number(task.progress) || 0));
    if (row.progress.value !== progress) row.progress.value = progress;
    row.progress.setAttribute('aria-label', `Progress of ${title}`);
    setText(row.percent, formatPercent(progress));
    setText(row.note, this.#note(task));
  }

  #note(task) {
    const open = task.waiting_for ?? [];
    if (open.length) {
      const names = open.map((id) => this.#tasks.get(id)).filter(Boolean).map(taskTitle);
      return `waiting for ${open.length} ${open.length === 1 ? 'child' : 'children'}${names.length ? `: ${names.join(', ')}` : ''}`;
    }
    if (task.blocked) return describeBlockers(whatBlocks(task, (id) => this.#tasks.get(id)), taskTitle) || 'blocked';
    return '';
  }
}

export function registerTaskTree() {
  if (!customElements.get('ts-task-tree')) customElements.define('ts-task-tree', TaskTree);
}
