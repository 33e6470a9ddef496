// <ts-dependency-graph>: the dependencies between tasks (`depends_on`) as an SVG drawing of a
// DAG laid out in layers (dag-layout.js), left to right: each task a rounded box with its name
// and state, a link to its page; each dependency an arrow from the task depended on. The SVG
// has a <title> and each box an aria-label; the same graph is also given as a list, as text.
//
// Properties: `tasks` (every task to draw; edges are read from their depends_on), `currentId`.

import { taskTitle } from './context.js';
import { h, replaceChildren, svg, uid } from './dom.js';
import { stateLabel } from './format.js';
import { NODE_HEIGHT, NODE_WIDTH, layoutDag } from './dag-layout.js';
import { dependencyEdges } from './workflow-model.js';

const NAME_CHARS = 22;

export class DependencyGraph extends HTMLElement {
  currentId = null;
  #tasks = [];
  #key = '';
  #titleId = uid('graph-title');
  #markerId = uid('graph-arrow');
  #figure = h('div', { class: 'graph-scroll' });
  #list = h('ul', { class: 'graph-list' });

  connectedCallback() {
    if (!this.#figure.isConnected) {
      this.replaceChildren(this.#figure,
        h('details', { class: 'graph-text' }, h('summary', {}, 'The dependencies as a list'), this.#list));
    }
    this.#render();
  }

  set tasks(list) {
    this.#tasks = list;
    this.#render();
  }

  /** Whether these tasks have any dependency between them to draw. */
  static hasEdges(tasks) {
    const ids = new Set(tasks.map((t) => t.id));
    return dependencyEdges(tasks).some((e) => ids.has(e.from) && ids.has(e.to));
  }

  #render() {
    if (!this.isConnected) return;
    const tasks = this.#tasks;
    const key = JSON.stringify([this.currentId, tasks.map((t) => [t.id, t.state, taskTitle(t), t.depends_on])]);
    if (key === this.#key) return; // progress alone does not change the drawing
    this.#key = key;
    const focused = this.#figure.contains(document.activeElement) ? document.activeElement.dataset.taskId : null;
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const layout = layoutDag(tasks.map((t) => t.id), dependencyEdges(tasks));
    const drawing = svg('svg', {
      class: 'dependency-graph', role: 'group', 'aria-labelledby': this.#titleId,
      viewBox: `0 0 ${layout.width} ${layout.height}`, width: layout.width, height: layout.height,
    },
    svg('title', { id: this.#titleId }, `Dependencies between ${tasks.length} tasks: an arrow goes from a task to the ones that wait for it`),
    svg('defs', {}, svg('marker', {
      id: this.#markerId, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
    }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'graph-arrowhead' }))),
    layout.edges.map((edge) => svg('path', {
      class: ['graph-edge', byId.get(edge.from)?.state === 'completed' ? 'graph-edge-done' : ''].join(' ').trim(),
      d: pathThrough(edge.points), 'marker-end': `url(#${this.#markerId})`,
    })),
    [...layout.nodes.values()].map((node) => this.#node(byId.get(node.id), node, byId)));
    replaceChildren(this.#figure, drawing);
    replaceChildren(this.#list, tasks.map((t) => this.#listItem(t, byId)));
    if (focused) drawing.querySelector(`a[data-task-id="${CSS.escape(focused)}"]`)?.focus();
  }

  #node(task, { x, y }, byId) {
    const title = taskTitle(task);
    const deps = (task.depends_on ?? []).map((id) => byId.get(id)).filter(Boolean).map(taskTitle);
    const label = `${title}, ${stateLabel(task.state)}${deps.length ? `; depends on ${deps.join(', ')}` : ''}`;
    const link = svg('a', {
      href: `#/tasks/${encodeURIComponent(task.id)}`, class: `graph-node state-${task.state}`,
      'aria-label': label, 'aria-current': task.id === this.currentId ? 'page' : undefined,
    },
    svg('title', {}, label),
    svg('rect', { x, y, width: NODE_WIDTH, height: NODE_HEIGHT, rx: 10, ry: 10 }),
    svg('text', { x: x + 12, y: y + 20, class: 'graph-name' }, clip(title)),
    svg('text', { x: x + 12, y: y + 38, class: 'graph-state' }, stateLabel(task.state)));
    link.dataset.taskId = task.id;
    return link;
  }

  #listItem(task, byId) {
    const deps = (task.depends_on ?? []).map((id) => byId.get(id) ?? { id });
    return h('li', {},
      h('a', { href: `#/tasks/${encodeURIComponent(task.id)}` }, taskTitle(task)), ` (${stateLabel(task.state)})`,
      deps.length ? [' depends on ', deps.map((d, i) => [i ? ', ' : '', d.state ? `${taskTitle(d)} (${stateLabel(d.state)})` : d.id])]
        : ' depends on nothing');
  }
}

function clip(text) {
  return text.length > NAME_CHARS ? `${text.slice(0, NAME_CHARS - 1)}…` : text;
}

function pathThrough(points) {
  const [[x1, y1], [x2, y2]] = points;
  const bend = Math.max(24, Math.abs(x2 - x1) / 2);
  if (x2 > x1) return `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
  return `M ${x1} ${y1} C ${x1} ${y1 + 40}, ${x2} ${y2 + 40}, ${x2} ${y2}`; // under, for an edge that goes back
}

export function registerDependencyGraph() {
  if (!customElements.get('ts-dependency-graph')) customElements.define('ts-dependency-graph', DependencyGraph);
}
