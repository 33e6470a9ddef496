// <ts-active-tasks>: every active task as a live card, newest first. A workflow (a root whose
// job spawned children) is one entry, a <ts-task-group>: its root's card with its children
// counted and collapsed under it, instead of a card each. An entry that ends shows its final
// state for a few seconds, then leaves the list (it is in the history below).
// Fires `ts-ready` once the restored tasks are on screen.

import { lifecycle, manager } from './context.js';
import { h, setText } from './dom.js';

const LINGER_MS = 5000;

/** The workflow a task is under, or null for a task that is nobody's child. */
function rootOf(task) {
  return task.root_id && task.root_id !== task.id ? task.root_id : null;
}

export class ActiveTasks extends HTMLElement {
  #entries = new Map(); // by task id: a task's card, or (by root id) a workflow's group
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
      for (const entry of this.#entries.values()) entry.tick();
    }, 1000);
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
    clearInterval(this.#ticker);
    for (const timer of this.#lingering.values()) clearTimeout(timer);
    this.#lingering.clear();
  }

  #renderAll(tasks) {
    const keep = new Set(tasks.map((t) => rootOf(t) ?? t.id));
    for (const id of [...this.#entries.keys()]) if (!keep.has(id)) this.#remove(id);
    const newestFirst = [...tasks].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const fragment = document.createDocumentFragment();
    const placed = new Set(); // a workflow's group goes where its newest task would
    for (const task of newestFirst) {
      const entry = this.#place(task);
      if (!placed.has(entry)) fragment.append(entry);
      placed.add(entry);
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

  /** Puts the task in its entry (made if needed, not yet in the list) and answers the entry. */
  #place(task) {
    const rootId = rootOf(task);
    if (rootId) {
      let group = this.#entries.get(rootId);
      if (!(group?.localName === 'ts-task-group')) group = this.#makeGroup(rootId, group);
      group.update(task);
      return group;
    }
    let entry = this.#entries.get(task.id);
    if (!entry) {
      entry = document.createElement('ts-task-card');
      entry.setAttribute('role', 'listitem');
      this.#entries.set(task.id, entry);
    }
    if (entry.localName === 'ts-task-group') entry.update(task);
    else entry.task = task;
    return entry;
  }

  /** A workflow's group, in the place of its root's card when there is one. */
  #makeGroup(rootId, card) {
    const group = document.createElement('ts-task-group');
    group.setAttribute('root-id', rootId);
    group.setAttribute('role', 'listitem');
    this.#entries.set(rootId, group);
    if (card) {
      group.update(card.task);
      card.replaceWith(group);
    }
    return group;
  }

  #update(task) {
    const rootId = rootOf(task) ?? task.id;
    const known = this.#entries.get(rootId);
    if (!known && lifecycle().isTerminal(task.state)) return;
    const entry = this.#place(task);
    if (!entry.isConnected) this.#list.prepend(entry);
    const ended = entry.localName === 'ts-task-group' ? entry.finished : lifecycle().isTerminal(task.state);
    if (ended && !this.#lingering.has(rootId)) {
      this.#lingering.set(rootId, setTimeout(() => this.#remove(rootId), LINGER_MS));
    } else if (!ended && this.#lingering.has(rootId)) {
      clearTimeout(this.#lingering.get(rootId)); // a group that had ended took a new child
      this.#lingering.delete(rootId);
    }
    this.#afterChange();
  }

  #remove(id) {
    clearTimeout(this.#lingering.get(id));
    this.#lingering.delete(id);
    this.#entries.get(id)?.remove();
    this.#entries.delete(id);
    this.#afterChange();
  }

  #afterChange() {
    let active = 0;
    for (const entry of this.#entries.values()) {
      if (entry.localName === 'ts-task-group') active += entry.activeCount;
      else if (!lifecycle().isTerminal(entry.task?.state)) active += 1;
    }
    setText(this.#count, `(${active})`);
    const busy = this.hasAttribute('aria-busy');
    this.#empty.hidden = !busy && this.#entries.size > 0;
    if (!busy) setText(this.#empty, 'No active tasks. Start one with the form.');
  }
}

export function registerActiveTasks() {
  if (!customElements.get('ts-active-tasks')) customElements.define('ts-active-tasks', ActiveTasks);
}
