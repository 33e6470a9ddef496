// <ts-task-table>: a list of tasks as a table (cards on a phone): name, state, type, trigger,
// created, duration, items. Set `.tasks`; the caption comes from the `caption` attribute.

import { h, replaceChildren } from './dom.js';
import { formatDateTime, formatDuration, formatNumber, formatPercent, formatTime, stateLabel } from './format.js';
import { lifecycle, taskTitle } from './context.js';

const COLUMNS = ['Name', 'State', 'Type', 'Trigger', 'Created', 'Duration', 'Items'];

export class TaskTable extends HTMLElement {
  #tasks = [];
  #caption = h('caption');
  #body = h('tbody');
  #table = null;

  set tasks(tasks) {
    this.#tasks = Array.isArray(tasks) ? tasks : [];
    if (this.isConnected) this.#render();
  }

  get tasks() {
    return this.#tasks;
  }

  connectedCallback() {
    if (!this.#table) {
      this.#table = h('table', { class: 'task-table' }, this.#caption,
        h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))), this.#body);
      this.replaceChildren(h('div', { class: 'table-wrap' }, this.#table));
    }
    this.#render();
  }

  #render() {
    this.#caption.textContent = this.getAttribute('caption') ?? '';
    this.#caption.classList.toggle('visually-hidden', this.hasAttribute('hide-caption'));
    if (this.#tasks.length === 0) {
      replaceChildren(this.#body, h('tr', { class: 'empty-row' },
        h('td', { colspan: String(COLUMNS.length) }, this.getAttribute('empty') ?? 'No tasks.')));
      return;
    }
    replaceChildren(this.#body, this.#tasks.map((task) => this.#row(task)));
  }

  #row(task) {
    const href = `#/tasks/${encodeURIComponent(task.id)}`;
    const items = task.items_failed
      ? `${formatNumber(task.items_processed)} · ${formatNumber(task.items_failed)} failed`
      : formatNumber(task.items_processed ?? 0);
    const duration = lifecycle().isTerminal(task.state)
      ? formatDuration(task.duration_seconds)
      : `${formatPercent(task.progress)} · ${formatDuration(task.duration_seconds)}`;
    return h('tr', { dataset: { taskId: task.id, state: task.state } },
      h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href, class: 'task-name' }, taskTitle(task))),
      h('td', { 'data-label': 'State' }, h('span', { class: ['badge', `state-${task.state}`] }, stateLabel(task.state))),
      h('td', { 'data-label': 'Type', class: 'mono' }, task.type),
      h('td', { 'data-label': 'Trigger' }, task.trigger ?? ''),
      h('td', { 'data-label': 'Created' },
        h('time', { datetime: task.created_at, title: formatDateTime(task.created_at) }, formatTime(task.created_at))),
      h('td', { 'data-label': 'Duration', class: 'num' }, duration),
      h('td', { 'data-label': 'Items', class: 'num' }, items),
    );
  }
}

export function registerTaskTable() {
  if (!customElements.get('ts-task-table')) customElements.define('ts-task-table', TaskTable);
}
