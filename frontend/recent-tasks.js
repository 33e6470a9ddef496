// <ts-recent-tasks>: the latest finished tasks, read from the history (so a task that ended
// while nobody was looking shows here with its real state). Fires `ts-ready` once loaded.

import { manager } from './context.js';
import { h, setText } from './dom.js';

const LIMIT = 8;
const DEBOUNCE_MS = 700;

export class RecentTasks extends HTMLElement {
  #table = document.createElement('ts-task-table');
  #total = h('span', { class: 'count' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #off = [];
  #timer = null;
  #ready = false;
  #loading = false;
  #again = false;

  connectedCallback() {
    this.#table.setAttribute('caption', 'Recently finished tasks');
    this.#table.setAttribute('hide-caption', '');
    this.#table.setAttribute('empty', 'Nothing has finished yet.');
    this.replaceChildren(h('section', { class: 'panel', 'aria-labelledby': 'recent-heading' },
      h('div', { class: 'panel-head' },
        h('h2', { id: 'recent-heading' }, 'Recently finished ', this.#total),
        h('a', { href: '#/history', class: 'more' }, 'All history →')),
      this.#error, this.#table));
    const m = manager();
    const soon = () => this.#schedule();
    this.#off.push(
      m.on('taskCompleted', soon), m.on('taskError', soon), m.on('taskCancelled', soon),
      m.on('taskRemoved', soon), m.on('poll', soon),
      m.on('connection', ({ state }) => { if (state === 'live') soon(); }),
    );
    this.#load();
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
    clearTimeout(this.#timer);
  }

  #schedule() {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#load();
    }, DEBOUNCE_MS);
  }

  async #load() {
    if (this.#loading) {
      this.#again = true;
      return;
    }
    this.#loading = true;
    try {
      // One request per state: the server answers a single-state page from its index at once,
      // while a multi-state filter makes it sort every matching row (slow with a long history).
      const { terminalStates } = await manager().loadLifecycle();
      const pages = await Promise.all(terminalStates.map((state) =>
        manager().getJobHistory({ state: [state], limit: LIMIT })));
      const items = pages.flatMap((page) => page.items ?? [])
        .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)) || String(b.id).localeCompare(String(a.id)))
        .slice(0, LIMIT);
      this.#table.tasks = items;
      const total = pages.reduce((sum, page) => sum + (page.total ?? 0), 0);
      setText(this.#total, `(${total.toLocaleString()})`);
      setText(this.#error, '');
    } catch (error) {
      setText(this.#error, `Could not load the history: ${error.message}`);
    } finally {
      this.#loading = false;
      if (!this.#ready) {
        this.#ready = true;
        this.dataset.ready = 'true';
        this.dispatchEvent(new CustomEvent('ts-ready', { bubbles: true }));
      }
      if (this.#again) {
        this.#again = false;
        this.#schedule();
      }
    }
  }
}

export function registerRecentTasks() {
  if (!customElements.get('ts-recent-tasks')) customElements.define('ts-recent-tasks', RecentTasks);
}
