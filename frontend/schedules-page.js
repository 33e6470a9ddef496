// <ts-schedules-page>: every schedule: what it runs, how often, its next and last run (a link
// to the last task), whether it is paused; Pause / Resume and Delete (asked twice); and the
// form that makes a new one. Read again every few seconds while shown, and after each change.

import { announce, manager } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { formatDateTime, formatTime } from './format.js';
import { describeCadence } from './schedules.js';

const REFRESH_MS = 5000;
const CONFIRM_MS = 4000;

export class SchedulesPage extends HTMLElement {
  #body = h('tbody');
  #summary = h('p', { class: 'summary', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #timer = null;
  #busy = new Set();
  #confirming = null; // {id, timer}: the schedule whose Delete was pressed once
  #onClick = (event) => this.#click(event);
  #onCreated = () => this.#load();

  connectedCallback() {
    if (!this.childElementCount) {
      const columns = ['Schedule', 'Runs', 'Next run', 'Last run', 'State', 'Actions'];
      this.append(
        h('h1', { class: 'page-title', tabindex: '-1' }, 'Schedules'),
        h('div', { class: 'schedules-grid' },
          h('section', { class: 'panel', 'aria-labelledby': 'schedules-h' },
            h('h2', { id: 'schedules-h' }, 'Schedules'), this.#summary, this.#error,
            h('div', { class: 'table-wrap' }, h('table', { class: 'task-table schedules-table' },
              h('caption', { class: 'visually-hidden' }, 'Schedules'),
              h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
              this.#body))),
          h('ts-schedule-form')));
    }
    this.addEventListener('click', this.#onClick);
    this.addEventListener('ts-schedule-created', this.#onCreated);
    this.#load();
    this.#timer = setInterval(() => this.#load(), REFRESH_MS);
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
    this.removeEventListener('ts-schedule-created', this.#onCreated);
    clearInterval(this.#timer);
    clearTimeout(this.#confirming?.timer);
    this.#confirming = null;
  }

  async #load() {
    try {
      const schedules = await manager().schedules.list();
      setText(this.#error, '');
      const paused = schedules.filter((s) => s.paused).length;
      setText(this.#summary, `${schedules.length} schedule${schedules.length === 1 ? '' : 's'}${paused ? `, ${paused} paused` : ''}`);
      this.#render(schedules);
    } catch (error) {
      setText(this.#error, `Could not load the schedules: ${error.message}`);
    }
  }

  #render(schedules) {
    const focused = this.#body.contains(document.activeElement) ? document.activeElement.dataset : null;
    if (schedules.length === 0) {
      replaceChildren(this.#body, h('tr', { class: 'empty-row' }, h('td', { colspan: '6' }, 'No schedules yet. Make one with the form.')));
      return;
    }
    replaceChildren(this.#body, schedules.map((s) => this.#row(s)));
    if (focused?.action) { // the table was redrawn: the focus goes back to the same button
      this.#body.querySelector(`button[data-action="${focused.action}"][data-schedule="${CSS.escape(focused.schedule)}"]`)?.focus();
    }
  }

  #row(s) {
    const time = (iso) => (iso ? h('time', { datetime: iso, title: formatDateTime(iso) }, formatTime(iso)) : '—');
    const busy = this.#busy.has(s.id);
    const name = s.name || s.type;
    const button = (action, label, cls) => h('button', {
      type: 'button', class: ['btn', 'btn-small', cls], disabled: busy,
      dataset: { action, schedule: s.id }, 'aria-label': `${label} ${name}`,
    }, label);
    const confirming = this.#confirming?.id === s.id;
    return h('tr', { class: s.paused ? 'schedule-paused' : undefined, dataset: { scheduleId: s.id, paused: String(Boolean(s.paused)) } },
      h('th', { scope: 'row', 'data-label': 'Schedule' }, name, h('div', { class: 'hint mono' }, s.type)),
      h('td', { 'data-label': 'Runs' }, describeCadence(s),
        h('div', { class: 'hint' }, `overlap ${s.overlap ?? 'skip'} · catch up ${s.catch_up ?? 'latest'}`)),
      h('td', { 'data-label': 'Next run' }, s.paused ? 'paused' : time(s.next_run_at)),
      h('td', { 'data-label': 'Last run' }, s.last_task_id
        ? h('a', { href: `#/tasks/${encodeURIComponent(s.last_task_id)}` }, time(s.last_fired_at))
        : time(s.last_fired_at)),
      h('td', { 'data-label': 'State' }, h('span', { class: ['badge', s.paused ? 'state-cancelled' : 'state-running'] }, s.paused ? 'paused' : 'active')),
      h('td', { 'data-label': 'Actions' }, h('div', { class: 'table-actions' },
        s.paused ? button('resume', 'Resume', 'btn-primary') : button('pause', 'Pause', 'btn-quiet'),
        confirming ? button('delete', 'Really delete?', 'btn-danger') : button('delete', 'Delete', 'btn-danger-outline'))));
  }

  async #click(event) {
    const button = event.target.closest('button[data-action][data-schedule]');
    if (!button || !this.#body.contains(button)) return;
    const { action, schedule: id } = button.dataset;
    if (this.#busy.has(id)) return;
    if (action === 'delete' && this.#confirming?.id !== id) {
      clearTimeout(this.#confirming?.timer);
      this.#confirming = { id, timer: setTimeout(() => { this.#confirming = null; this.#load(); }, CONFIRM_MS) };
      await this.#load();
      announce('Press “Really delete?” to delete the schedule');
      return;
    }
    this.#busy.add(id);
    const schedules = manager().schedules;
    try {
      if (action === 'pause') await schedules.pause(id);
      else if (action === 'resume') await schedules.resume(id);
      else if (action === 'delete') {
        clearTimeout(this.#confirming?.timer);
        this.#confirming = null;
        await schedules.remove(id);
        announce('Deleted the schedule');
      }
    } catch (error) {
      setText(this.#error, `Could not ${action} the schedule: ${error.message}`);
    } finally {
      this.#busy.delete(id);
      await this.#load();
    }
  }
}

export function registerSchedulesPage() {
  if (!customElements.get('ts-schedules-page')) customElements.define('ts-schedules-page', SchedulesPage);
}
