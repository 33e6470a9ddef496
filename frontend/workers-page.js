// <ts-workers-page>: the taskstate instances: host, pid, version, heartbeat age, state, slot
// use (jobs at once: used of its capacity) and the tasks each holds. Refreshed every few
// seconds while shown.

import { manager } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { formatDateTime, formatDuration, formatTime } from './format.js';

const REFRESH_MS = 5000;

export class WorkersPage extends HTMLElement {
  #body = h('tbody');
  #summary = h('p', { class: 'summary', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #timer = null;
  #onClick = (event) => {
    if (event.target.closest('button[data-action="refresh"]')) this.#load();
  };

  connectedCallback() {
    if (!this.childElementCount) {
      this.append(
        h('h1', { class: 'page-title', tabindex: '-1' }, 'Workers'),
        h('section', { class: 'panel' },
          h('div', { class: 'panel-head' }, this.#summary,
            h('button', { type: 'button', class: 'btn btn-small btn-quiet', dataset: { action: 'refresh' } }, 'Refresh')),
          this.#error,
          h('div', { class: 'table-wrap' }, h('table', { class: 'task-table workers-table' },
            h('caption', { class: 'visually-hidden' }, 'Workers'),
            h('thead', {}, h('tr', {}, ['Worker', 'State', 'Slots', 'Host', 'PID', 'Version', 'Started', 'Heartbeat', 'Tasks']
              .map((c) => h('th', { scope: 'col' }, c)))),
            this.#body))));
    }
    this.addEventListener('click', this.#onClick);
    this.#load();
    this.#timer = setInterval(() => this.#load(), REFRESH_MS);
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
    clearInterval(this.#timer);
  }

  async #load() {
    try {
      const workers = await manager().getWorkers();
      setText(this.#error, '');
      const running = workers.filter((w) => w.state === 'running').length;
      const live = workers.filter((w) => w.state === 'running' && Number.isInteger(w.slots));
      const used = live.reduce((sum, w) => sum + (w.slots_used ?? 0), 0);
      const capacity = live.reduce((sum, w) => sum + w.slots, 0);
      setText(this.#summary, `${workers.length} instance${workers.length === 1 ? '' : 's'}, ${running} running`
        + (capacity ? ` · ${used} of ${capacity} slots in use` : ''));
      if (workers.length === 0) {
        replaceChildren(this.#body, h('tr', { class: 'empty-row' }, h('td', { colspan: '9' }, 'No workers have registered.')));
        return;
      }
      replaceChildren(this.#body, workers.map((w) => h('tr', { dataset: { workerId: w.id, state: w.state } },
        h('th', { scope: 'row', class: 'mono', 'data-label': 'Worker' }, w.id),
        h('td', { 'data-label': 'State' }, h('span', { class: ['badge', `worker-${w.state}`] }, w.state)),
        h('td', { 'data-label': 'Slots', class: 'slots-cell' }, slotUse(w)),
        h('td', { 'data-label': 'Host' }, w.host),
        h('td', { 'data-label': 'PID', class: 'num' }, String(w.pid)),
        h('td', { 'data-label': 'Version' }, w.version),
        h('td', { 'data-label': 'Started' }, h('time', { datetime: w.started_at, title: formatDateTime(w.started_at) }, formatTime(w.started_at))),
        h('td', { 'data-label': 'Heartbeat' }, `${formatDuration(w.heartbeat_age_seconds)} ago`),
        h('td', { 'data-label': 'Tasks' }, w.tasks.length === 0 ? 'none' : h('ul', { class: 'inline-list' },
          w.tasks.slice(0, 5).map((id) => h('li', {}, h('a', { href: `#/tasks/${encodeURIComponent(id)}`, class: 'mono' }, id.slice(0, 8)))),
          w.tasks.length > 5 ? h('li', {}, `+${w.tasks.length - 5} more`) : null)))));
    } catch (error) {
      setText(this.#error, `Could not load the workers: ${error.message}`);
    }
  }
}

/** "2 of 10" with a meter; a lost or stopped instance uses none; an old one may not say its capacity. */
function slotUse(worker) {
  const used = worker.slots_used ?? 0;
  if (!Number.isInteger(worker.slots)) return used ? `${used} in use` : '—';
  return h('span', { class: 'slot-use' },
    h('meter', {
      min: 0, max: worker.slots, value: used, high: Math.max(1, worker.slots - 0.5), optimum: 0,
      'aria-label': `${used} of ${worker.slots} slots in use`,
    }),
    h('span', { class: 'slot-text' }, `${used} of ${worker.slots}`));
}

export function registerWorkersPage() {
  if (!customElements.get('ts-workers-page')) customElements.define('ts-workers-page', WorkersPage);
}
