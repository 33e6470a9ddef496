// <ts-announcer>: status changes for screen readers (aria-live) and, visibly, as toasts.
// Listens to the manager's ending events and to `ts-announce` events from the views.

import { manager, taskTitle } from './context.js';
import { h } from './dom.js';

const SHOW_MS = 6000;
const MAX_TOASTS = 4;
const BURST_MS = 2000;
const BURST_MAX = 4;

export class Announcer extends HTMLElement {
  #polite = h('div', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  #toasts = h('ol', { class: 'toasts', 'aria-hidden': 'true' });
  #off = [];
  #timers = new Set();
  #recent = [];
  #suppressed = 0;
  #summary = null;
  #onAnnounce = (event) => this.say(event.detail?.message, event.detail?.tone);

  connectedCallback() {
    if (!this.#polite.isConnected) this.replaceChildren(this.#polite, this.#toasts);
    document.addEventListener('ts-announce', this.#onAnnounce);
    const m = manager();
    this.#off.push(
      // A workflow's children end with it, or one by one under it: its root's end is what is
      // said (a child's failure too), not every child's.
      m.on('taskCompleted', (task) => { if (!task.parent_id) this.say(`“${taskTitle(task)}” completed`, 'good'); }),
      m.on('taskError', (task) => this.say(`“${taskTitle(task)}” failed`, 'bad')),
      m.on('taskCancelled', (task) => { if (!task.parent_id) this.say(`“${taskTitle(task)}” was cancelled`, 'info'); }),
      m.on('question', ({ question }) => {
        if (question?.status === 'pending') this.say(`A task asks: ${question.question ?? ''}`, 'warn');
      }),
    );
  }

  disconnectedCallback() {
    document.removeEventListener('ts-announce', this.#onAnnounce);
    for (const off of this.#off.splice(0)) off();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    if (this.#summary) clearTimeout(this.#summary);
    this.#summary = null;
  }

  say(message, tone = 'info') {
    if (!message) return;
    // Hundreds of tasks ending at once must not drown the reader: past a few a second,
    // they are summed up in one message.
    const now = Date.now();
    this.#recent = this.#recent.filter((t) => now - t < BURST_MS);
    this.#recent.push(now);
    if (this.#recent.length > BURST_MAX) {
      this.#suppressed += 1;
      if (!this.#summary) {
        this.#summary = setTimeout(() => {
          this.#summary = null;
          const n = this.#suppressed;
          this.#suppressed = 0;
          if (n) this.#show(`…and ${n} more update${n === 1 ? '' : 's'}`, 'info');
        }, BURST_MS);
      }
      return;
    }
    this.#show(message, tone);
  }

  #show(message, tone) {
    this.#polite.textContent = String(message);
    const toast = h('li', { class: ['toast', `toast-${tone}`] }, String(message));
    this.#toasts.append(toast);
    while (this.#toasts.children.length > MAX_TOASTS) this.#toasts.firstElementChild.remove();
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      toast.remove();
    }, SHOW_MS);
    this.#timers.add(timer);
  }
}

export function registerAnnouncer() {
  if (!customElements.get('ts-announcer')) customElements.define('ts-announcer', Announcer);
}
