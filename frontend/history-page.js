// <ts-history-page>: every task, newest first, with filters (state, type, trigger, created
// date, name search) and the page (its cursor) kept in the address
// (#/history?state=failed&q=…&page=2&cursor=…; see history-cursor.js).

import { manager, navigate } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { PreviousPages, pageHash, pagerOf } from './history-cursor.js';
import { TRIGGERS } from './task-state-manager.js';

const PAGE_SIZE = 25;
const REFRESH_MS = 1500;

function dayStart(value) {
  // <input type=date> gives YYYY-MM-DD in the user's time zone.
  const date = new Date(`${value}T00:00:00`);
  return Number.isNaN(date.getTime()) ? null : date;
}

export class HistoryPage extends HTMLElement {
  #query = new URLSearchParams();
  #pager = { page: 1, cursor: null };
  #previous = new PreviousPages(globalThis.sessionStorage);
  #form = null;
  #inputs = {};
  #oneState = h('optgroup', { label: 'One state' }); // filled once the lifecycle is read
  #table = document.createElement('ts-task-table');
  #summary = h('p', { class: 'summary', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #prev = h('button', { type: 'button', class: 'btn', dataset: { action: 'prev' } }, '← Newer');
  #next = h('button', { type: 'button', class: 'btn', dataset: { action: 'next' } }, 'Older →');
  #pageLabel = h('span', { class: 'page-label' });
  #nextCursor = null;
  #off = [];
  #timer = null;
  #request = 0;
  #onSubmit = (event) => this.#apply(event);
  #onClick = (event) => this.#click(event);

  /** Called by the router with the address's query. */
  set query(query) {
    this.#query = new URLSearchParams(query);
    this.#pager = pagerOf(this.#query);
    if (this.#form) {
      this.#fillForm();
      this.#load();
    }
  }

  connectedCallback() {
    if (!this.#form) this.#build();
    this.#form.addEventListener('submit', this.#onSubmit);
    this.addEventListener('click', this.#onClick);
    const m = manager();
    const soon = () => this.#scheduleRefresh();
    this.#off.push(m.on('taskCompleted', soon), m.on('taskError', soon), m.on('taskCancelled', soon),
      m.on('poll', soon));
    this.#fillForm();
    this.#loadTypes();
    this.#load();
  }

  disconnectedCallback() {
    this.#form.removeEventListener('submit', this.#onSubmit);
    this.removeEventListener('click', this.#onClick);
    for (const off of this.#off.splice(0)) off();
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  #build() {
    const i = this.#inputs;
    i.state = h('select', { id: 'f-state', name: 'state' },
      h('option', { value: '' }, 'Any state'),
      h('option', { value: 'active' }, 'Active (not finished)'),
      h('option', { value: 'finished' }, 'Finished'),
      this.#oneState);
    i.type = h('select', { id: 'f-type', name: 'type' }, h('option', { value: '' }, 'Any type'));
    i.trigger = h('select', { id: 'f-trigger', name: 'trigger' }, h('option', { value: '' }, 'Any trigger'),
      TRIGGERS.map((t) => h('option', { value: t }, t)));
    i.from = h('input', { id: 'f-from', name: 'from', type: 'date' });
    i.to = h('input', { id: 'f-to', name: 'to', type: 'date' });
    i.q = h('input', { id: 'f-q', name: 'q', type: 'search', maxlength: '200', placeholder: 'part of a name', autocomplete: 'off' });
    const field = (input, label) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
    this.#form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the history' },
      field(i.q, 'Name'), field(i.state, 'State'), field(i.type, 'Type'), field(i.trigger, 'Trigger'),
      field(i.from, 'Created from'), field(i.to, 'Created until'),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply filters'),
        h('button', { type: 'button', class: 'btn btn-quiet', dataset: { action: 'clear' } }, 'Clear')));
    this.#table.setAttribute('caption', 'Tasks, newest first');
    this.#table.setAttribute('hide-caption', '');
    this.#table.setAttribute('empty', 'No task matches these filters.');
    this.replaceChildren(
      h('h1', { class: 'page-title', tabindex: '-1' }, 'History'),
      h('section', { class: 'panel' }, this.#form),
      h('section', { class: 'panel', 'aria-label': 'Results' },
        h('div', { class: 'panel-head' }, this.#summary,
          h('button', { type: 'button', class: 'btn btn-small btn-quiet', dataset: { action: 'refresh' } }, 'Refresh')),
        this.#error, this.#table,
        h('nav', { class: 'pager', 'aria-label': 'Pages' }, this.#prev, this.#pageLabel, this.#next)));
  }

  #fillForm() {
    const q = this.#query;
    const i = this.#inputs;
    i.state.value = q.get('state') ?? '';
    if (q.get('type') && ![...i.type.options].some((o) => o.value === q.get('type'))) {
      i.type.append(h('option', { value: q.get('type') }, q.get('type')));
    }
    i.type.value = q.get('type') ?? '';
    i.trigger.value = q.get('trigger') ?? '';
    i.from.value = q.get('from') ?? '';
    i.to.value = q.get('to') ?? '';
    i.q.value = q.get('q') ?? '';
  }

  async #loadTypes() {
    try {
      const types = await manager().getTaskTypes();
      const current = this.#inputs.type.value;
      replaceChildren(this.#inputs.type, h('option', { value: '' }, 'Any type'),
        types.map((t) => h('option', { value: t.name }, t.name)));
      if (current && !types.some((t) => t.name === current)) {
        this.#inputs.type.append(h('option', { value: current }, current));
      }
      this.#inputs.type.value = current;
    } catch {
      // The filter still works with the type typed in the address.
    }
  }

  #fillStates(lifecycle) {
    if (this.#oneState.children.length) return;
    this.#oneState.append(...lifecycle.states.map((s) => h('option', { value: s }, s)));
    const state = this.#query.get('state');
    if (lifecycle.states.includes(state)) this.#inputs.state.value = state;
  }

  #filters(lifecycle) {
    const q = this.#query;
    const options = { limit: PAGE_SIZE };
    const state = q.get('state');
    if (state === 'active') options.state = lifecycle.activeStates;
    else if (state === 'finished') options.state = lifecycle.terminalStates;
    else if (state) options.state = [state];
    if (q.get('type')) options.type = q.get('type');
    if (q.get('trigger')) options.trigger = q.get('trigger');
    const from = q.get('from') && dayStart(q.get('from'));
    if (from) options.created_after = from.toISOString();
    const to = q.get('to') && dayStart(q.get('to'));
    if (to) options.created_before = new Date(to.getTime() + 24 * 3600 * 1000).toISOString();
    if (q.get('q')) options.q = q.get('q');
    return options;
  }

  async #load() {
    const request = ++this.#request;
    const { page, cursor } = this.#pager;
    this.setAttribute('aria-busy', 'true');
    try {
      const lifecycle = await manager().loadLifecycle();
      if (request !== this.#request) return;
      this.#fillStates(lifecycle);
      const result = await manager().getJobHistory({ ...this.#filters(lifecycle), cursor });
      if (request !== this.#request) return;
      const items = result.items ?? [];
      this.#table.tasks = items;
      this.#nextCursor = result.next_cursor ?? null;
      const first = (page - 1) * PAGE_SIZE + 1;
      const total = result.total ?? items.length;
      setText(this.#summary, items.length
        ? `Showing ${first.toLocaleString()}–${(first + items.length - 1).toLocaleString()} of ${total.toLocaleString()} tasks`
        : `${total.toLocaleString()} tasks`);
      setText(this.#pageLabel, `Page ${page} of ${Math.max(1, Math.ceil(total / PAGE_SIZE)).toLocaleString()}`);
      this.#prev.disabled = page <= 1;
      // Opened from a link, this tab does not know the newer page: offer the newest instead.
      setText(this.#prev, page > 1 && !this.#previous.newerThan(this.#hash()) ? '⇤ Newest' : '← Newer');
      this.#next.disabled = !this.#nextCursor;
      setText(this.#error, '');
    } catch (error) {
      if (request !== this.#request) return;
      setText(this.#error, `Could not load the history: ${error.message}`);
      if (error?.body?.field === 'cursor') { // a link with a cursor this server did not issue
        this.#prev.disabled = false;
        setText(this.#prev, '⇤ Newest');
      }
    } finally {
      if (request === this.#request) this.removeAttribute('aria-busy');
    }
  }

  #scheduleRefresh() {
    if (this.#pager.page > 1 || this.#timer) return; // only the first page follows along
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#load();
    }, REFRESH_MS);
  }

  #apply(event) {
    event.preventDefault();
    const i = this.#inputs;
    const query = new URLSearchParams();
    for (const key of ['q', 'state', 'type', 'trigger', 'from', 'to']) {
      const value = i[key].value.trim();
      if (value) query.set(key, value);
    }
    const text = query.toString();
    const hash = `#/history${text ? `?${text}` : ''}`;
    if (location.hash === hash) this.query = query;
    else navigate(hash);
  }

  #click(event) {
    const button = event.target.closest('button[data-action]');
    if (!button || !this.contains(button)) return;
    switch (button.dataset.action) {
      case 'next':
        if (this.#nextCursor) {
          const older = pageHash(this.#query, this.#pager.page + 1, this.#nextCursor);
          this.#previous.remember(older, this.#hash());
          navigate(older);
        }
        break;
      case 'prev':
        navigate(this.#previous.newerThan(this.#hash()) ?? pageHash(this.#query, 1, null));
        break;
      case 'refresh':
        this.#load();
        break;
      case 'clear':
        navigate('#/history');
        break;
      default:
    }
  }

  /** The address of the page shown. */
  #hash() {
    return pageHash(this.#query, this.#pager.page, this.#pager.cursor);
  }
}

export function registerHistoryPage() {
  if (!customElements.get('ts-history-page')) customElements.define('ts-history-page', HistoryPage);
}
