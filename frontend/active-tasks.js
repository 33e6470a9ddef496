// <ts-active-tasks>: every active task as a live card, newest first. A task that ends shows
// its final state for a few seconds, then leaves the list (it is in the history below).
// Fires `ts-ready` once the restored tasks are on screen.

import { lifecycle, manager } from './context.js';
import { h, setText } from './dom.js';

const LINGER_MS = 5000;

export class ActiveTasks extends HTMLElement {
  #cards = new Map();
  #list = h('div', { class: 'card-list', role: 'list' });
  #empty = h('p', { class: 'empty' });
  #count = h('span', { class: 'count' });
  #off = [];
  #ticker = null;
  #lingering = new Map();
  #ready = false;

  connectedCallback() {
    const heading = h('h2', { id: 'active-heading' }, 'Active tasks ', this.#count);
    this.replaceChildren(h('section', { 'aria-labelledby': 'active-heading', class: 'panel' },
      heading, this.#empty, this.#list));
    const m = manager();
    this.#off.push(
      m.on('restored', ({ tasks }) => this.#renderAll(tasks)),
      m.on('taskUpdated', (task) => this.#update(task)),
      m.on('taskRemoved', ({ id }) => this.#remove(id)),
    );
    if (m.isRestored) {
      this.#renderAll(m.activeTasks);
    } else {
      this.setAttribute('aria-busy', 'true');
      setText(this.#empty, 'Restoring active tasks from the server…');
    }
    this.#ticker = setInterval(() => {
      for (const card of this.#cards.values()) card.tick();
    }, 1000);
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
    clearInterval(this.#ticker);
    for (const timer of this.#lingering.values()) clearTimeout(timer);
    this.#lingering.clear();
  }

  #renderAll(tasks) {
    const ids = new Set(tasks.map((t) => t.id));
    for (const id of [...this.#cards.keys()]) if (!ids.has(id)) this.#remove(id);
    const newestFirst = [...tasks].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const fragment = document.createDocumentFragment();
    for (const task of newestFirst) {
      let card = this.#cards.get(task.id);
      if (!card) {
        card = this.#makeCard(task);
        this.#cards.set(task.id, card);
      } else {
        card.task = task;
      }
      fragment.append(card);
    }
    this.#list.append(fragment);
    this.removeAttribute('aria-busy');
    this.#afterChange();
    if (!this.#ready) {
      this.#ready = true;
      this.dataset.ready = 'true';
      this.dispatchEvent(new CustomEvent('ts-ready', { bubbles: true }));
    }
  }

  #makeCard(task) {
    const card = document.createElement('ts-task-card');
    card.setAttribute('role', 'listitem');
    card.task = task;
    return card;
  }

  #update(task) {
    let card = this.#cards.get(task.id);
    if (!card) {
      if (lifecycle().isTerminal(task.state)) return;
      card = this.#makeCard(task);
      this.#cards.set(task.id, card);
      this.#list.prepend(card);
    } else {
      card.task = task;
    }
    if (lifecycle().isTerminal(task.state) && !this.#lingering.has(task.id)) {
      this.#lingering.set(task.id, setTimeout(() => this.#remove(task.id), LINGER_MS));
    }
    this.#afterChange();
  }

  #remove(id) {
    clearTimeout(this.#lingering.get(id));
    this.#lingering.delete(id);
    this.#cards.get(id)?.remove();
    this.#cards.delete(id);
    this.#afterChange();
  }

  #afterChange() {
    let active = 0;
    for (const card of this.#cards.values()) if (!lifecycle().isTerminal(card.task?.state)) active += 1;
    setText(this.#count, `(${active})`);
    const busy = this.hasAttribute('aria-busy');
    this.#empty.hidden = !busy && this.#cards.size > 0;
    if (!busy) setText(this.#empty, 'No active tasks. Start one with the form.');
  }
}

export function registerActiveTasks() {
  if (!customElements.get('ts-active-tasks')) customElements.define('ts-active-tasks', ActiveTasks);
}
