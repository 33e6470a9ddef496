// <ts-task-workflow>: a task's place in a workflow (CONTRACT §6), on its page: what it waits
// for (blocked: its unfinished dependencies or its approval; running: the children still
// open), where it was spawned, its tree (read with root_id, then followed live through the
// manager's events) and, when there are dependencies, their graph. Hidden for a lone task.
//
// The page sets `task` (its task, at every change); the rest is read here.

import { lifecycle, manager, taskTitle } from './context.js';
import { DependencyGraph } from './dependency-graph.js';
import { h, replaceChildren, setText } from './dom.js';
import { stateLabel } from './format.js';
import { countByState, describeCounts, whatBlocks } from './workflow-model.js';

export class TaskWorkflow extends HTMLElement {
  #task = null;
  #rootId = null;
  #outside = new Map(); // tasks depended on that are not in the tree, by id
  #off = [];
  #built = false;
  #els = {};
  #statusHtml = '';

  set task(task) {
    this.#task = task;
    if (!this.#built) return;
    const rootId = task.root_id ?? task.id;
    if (rootId !== this.#rootId) {
      this.#rootId = rootId;
      this.#els.tree.rootId = rootId;
      this.#load();
    }
    this.#els.tree.currentId = task.id;
    this.#els.tree.update(task);
    this.#render();
  }

  connectedCallback() {
    if (!this.#built) this.#build();
    const m = manager();
    this.#off.push(
      m.on('taskUpdated', (task) => this.#changed(task)),
      m.on('connection', ({ state }) => { if (state === 'live') this.#load(); }),
      m.on('poll', () => this.#load()),
    );
    if (this.#task) this.task = this.#task;
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
  }

  #build() {
    const e = this.#els;
    e.status = h('div', { class: 'workflow-status', role: 'status' });
    e.tree = document.createElement('ts-task-tree');
    e.treeCount = h('span', { class: 'count' });
    e.graph = document.createElement('ts-dependency-graph');
    e.treePanel = h('section', { class: 'panel', 'aria-labelledby': 'tree-h', hidden: true },
      h('h2', { id: 'tree-h' }, 'Workflow ', e.treeCount), e.tree);
    e.graphPanel = h('section', { class: 'panel', 'aria-labelledby': 'graph-h', hidden: true },
      h('h2', { id: 'graph-h' }, 'Dependencies'), e.graph);
    this.replaceChildren(e.status, e.treePanel, e.graphPanel);
    this.#built = true;
  }

  async #load() {
    if (!this.#rootId) return;
    try {
      const tasks = await manager().getTaskTree(this.#rootId);
      this.#els.tree.tasks = tasks;
      const inTree = new Set(tasks.map((t) => t.id));
      const missing = new Set(tasks.flatMap((t) => t.depends_on ?? []).filter((id) => !inTree.has(id)));
      const read = await Promise.all([...missing].map((id) => manager().getTaskStatus(id).catch(() => null)));
      for (const task of read) if (task) this.#outside.set(task.id, task);
      this.#render();
    } catch {
      // The connection indicator says what is wrong; the next `live` or poll reads again.
    }
  }

  #changed(task) {
    const inTree = this.#els.tree.update(task);
    if (!inTree && !this.#outside.has(task.id)) return;
    if (!inTree) this.#outside.set(task.id, task);
    this.#render();
  }

  #lookup = (id) => this.#els.tree.tasks.find((t) => t.id === id) ?? this.#outside.get(id) ?? manager().getTask(id);

  #render() {
    const task = this.#task;
    if (!task || !this.#built) return;
    const e = this.#els;
    const tasks = e.tree.tasks;
    e.treePanel.hidden = tasks.length < 2;
    const below = tasks.filter((t) => t.id !== this.#rootId);
    const counts = describeCounts(countByState(below, lifecycle().states));
    setText(e.treeCount, below.length ? `(${below.length} under the root: ${counts})` : '');
    const linked = new Set(tasks.flatMap((t) => (t.depends_on?.length ? [t.id, ...t.depends_on] : [])));
    const drawn = [...tasks, ...this.#outside.values()].filter((t) => linked.has(t.id));
    e.graphPanel.hidden = !DependencyGraph.hasEdges(drawn);
    e.graph.currentId = task.id;
    if (!e.graphPanel.hidden) e.graph.tasks = drawn;
    const lines = [this.#blockedLine(task), this.#waitingLine(task), this.#placeLine(task)].filter(Boolean);
    const html = lines.map((line) => line.outerHTML).join('');
    if (html !== this.#statusHtml) { // unchanged lines stay, and so does a focus in them
      this.#statusHtml = html;
      replaceChildren(e.status, lines);
    }
    e.status.hidden = lines.length === 0;
    this.hidden = lines.length === 0 && e.treePanel.hidden && e.graphPanel.hidden;
  }

  #link(task) {
    return h('a', { href: `#/tasks/${encodeURIComponent(task.id)}` }, taskTitle(task));
  }

  #blockedLine(task) {
    if (!task.blocked && task.state !== 'queued') return null;
    const { approval, dependencies } = whatBlocks(task, this.#lookup);
    if (!approval && !dependencies.length) return null;
    const deps = dependencies.map((dep, i) => [i ? ', ' : '', dep.state ? [this.#link(dep), ` (${stateLabel(dep.state)})`] : dep.id]);
    return h('p', { class: 'blocked-line' }, h('strong', {}, 'Blocked: '),
      approval ? ['waits for approval (', h('a', { href: '#/questions' }, 'approve or reject it'), ')'] : null,
      approval && dependencies.length ? '; ' : null,
      dependencies.length ? ['waits for ', deps, ' to complete'] : null);
  }

  #waitingLine(task) {
    const open = task.waiting_for ?? [];
    if (!open.length || lifecycle().isTerminal(task.state)) return null;
    const children = open.map((id) => this.#lookup(id) ?? { id });
    return h('p', { class: 'waiting-line' }, h('strong', {}, `Waiting for ${open.length} ${open.length === 1 ? 'child' : 'children'}: `),
      children.map((child, i) => [i ? ', ' : '', child.state ? this.#link(child) : child.id]));
  }

  #placeLine(task) {
    if (!task.parent_id) return null;
    const parent = this.#lookup(task.parent_id) ?? { id: task.parent_id };
    const root = task.root_id !== task.parent_id ? this.#lookup(task.root_id) ?? { id: task.root_id } : null;
    const named = (t) => (t.state ? this.#link(t) : h('span', { class: 'mono' }, t.id));
    return h('p', { class: 'place-line' }, 'Spawned by ', named(parent), root ? [', in the workflow of ', named(root)] : null);
  }
}

export function registerTaskWorkflow() {
  if (!customElements.get('ts-task-workflow')) customElements.define('ts-task-workflow', TaskWorkflow);
}
