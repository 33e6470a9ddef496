// <ts-task-report>: the run report of a task: the summary, the seconds spent in each state,
// the system it ran on, its result or error (with the traceback of a failed job, folded), its
// params, and where a service can be reached.

import { h, replaceChildren } from './dom.js';
import { formatDateTime, formatDuration, formatNumber, humanize, toJson } from './format.js';

function valueText(key, value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number' && /seconds$/.test(key)) return formatDuration(value);
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function definitionList(object, className) {
  return h('dl', { class: ['facts', className] },
    Object.entries(object ?? {}).map(([key, value]) =>
      h('div', {}, h('dt', {}, humanize(key)), h('dd', {}, valueText(key, value)))));
}

export class TaskReport extends HTMLElement {
  #task = null;
  #key = '';

  set task(task) {
    this.#task = task;
    if (this.isConnected) this.#render();
  }

  connectedCallback() {
    this.#render();
  }

  #render() {
    const t = this.#task;
    if (!t) return;
    const key = JSON.stringify([t.state, t.execution_summary, t.phase_results, t.system_info, t.result,
      t.error, t.traceback, t.endpoint, t.service_info, t.restoration_count, t.params]);
    if (key === this.#key) return;
    this.#key = key;
    const sections = [];
    if (t.error) {
      sections.push(h('section', { class: 'report-error', 'aria-labelledby': 'report-error-h' },
        h('h3', { id: 'report-error-h' }, 'Error', t.error_type ? h('span', { class: 'mono subtle' }, ` ${t.error_type}`) : null),
        h('pre', { class: 'error-text' }, t.error),
        t.traceback ? h('details', { class: 'traceback' },
          h('summary', {}, `Traceback (${t.traceback.split('\n').length} lines)`),
          h('pre', { class: 'traceback-text mono' }, t.traceback)) : null));
    }
    if (t.endpoint || t.service_info) {
      sections.push(h('section', { 'aria-labelledby': 'report-service-h' },
        h('h3', { id: 'report-service-h' }, 'Service'),
        h('dl', { class: 'facts' },
          t.endpoint ? h('div', {}, h('dt', {}, 'Endpoint'), h('dd', { class: 'mono' }, t.endpoint)) : null,
          t.service_info ? h('div', {}, h('dt', {}, 'Info'), h('dd', {}, h('pre', {}, toJson(t.service_info)))) : null)));
    }
    if (t.execution_summary) {
      sections.push(h('section', { 'aria-labelledby': 'report-summary-h' },
        h('h3', { id: 'report-summary-h' }, 'Summary'), definitionList(t.execution_summary, 'summary')));
    }
    if (t.phase_results && Object.keys(t.phase_results).length) {
      const total = Object.values(t.phase_results).reduce((a, b) => a + (Number(b) || 0), 0) || 1;
      sections.push(h('section', { 'aria-labelledby': 'report-phases-h' },
        h('h3', { id: 'report-phases-h' }, 'Time in each state'),
        h('table', { class: 'phases' },
          h('caption', { class: 'visually-hidden' }, 'Seconds spent in each state'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, 'Time'),
            h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Share')))),
          h('tbody', {}, Object.entries(t.phase_results).map(([state, seconds]) =>
            h('tr', {},
              h('th', { scope: 'row' }, h('span', { class: ['badge', `state-${state}`] }, state)),
              h('td', { class: 'num' }, formatDuration(seconds)),
              h('td', { class: 'bar-cell' }, h('meter', {
                min: 0, max: total, value: Number(seconds) || 0,
                'aria-label': `${state}: ${Math.round((100 * (Number(seconds) || 0)) / total)}% of the time`,
              }))))))));
    }
    if (t.system_info) {
      sections.push(h('section', { 'aria-labelledby': 'report-system-h' },
        h('h3', { id: 'report-system-h' }, 'System'), definitionList(t.system_info, 'system')));
    }
    if (t.restoration_count) {
      sections.push(h('section', { 'aria-labelledby': 'report-restore-h' },
        h('h3', { id: 'report-restore-h' }, 'Restorations'),
        h('dl', { class: 'facts' },
          h('div', {}, h('dt', {}, 'Times restored'), h('dd', {}, String(t.restoration_count))),
          h('div', {}, h('dt', {}, 'Last'), h('dd', {}, formatDateTime(t.last_restored_at) || '—')),
          h('div', {}, h('dt', {}, 'Source'), h('dd', {}, t.restoration_source ?? '—')),
          t.restoration_decision ? h('div', {}, h('dt', {}, 'Decision'), h('dd', {}, t.restoration_decision)) : null)));
    }
    if (t.result !== null && t.result !== undefined) {
      sections.push(h('section', { 'aria-labelledby': 'report-result-h' },
        h('h3', { id: 'report-result-h' }, 'Result'), h('pre', { class: 'result' }, toJson(t.result))));
    }
    sections.push(h('section', { 'aria-labelledby': 'report-params-h' },
      h('h3', { id: 'report-params-h' }, 'Params'), h('pre', { class: 'params' }, toJson(t.params ?? {}))));
    replaceChildren(this, sections);
  }
}

export function registerTaskReport() {
  if (!customElements.get('ts-task-report')) customElements.define('ts-task-report', TaskReport);
}
