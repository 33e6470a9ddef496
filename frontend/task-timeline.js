// <ts-task-timeline>: a task's transitions, oldest first: each state with when it was entered,
// how long the task stayed in it (the current one ticks), the reason and who made it.

import { lifecycle } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { formatDateTime, formatDuration, formatTime, parseTime, stateLabel } from './format.js';

export class TaskTimeline extends HTMLElement {
  #rows = [];
  #list = h('ol', { class: 'timeline' });
  #current = null;
  #currentAt = null;
  #ticker = null;

  connectedCallback() {
    if (!this.#list.isConnected) this.replaceChildren(this.#list);
    this.#ticker = setInterval(() => this.#tick(), 1000);
    this.#render();
  }

  disconnectedCallback() {
    clearInterval(this.#ticker);
  }

  set transitions(rows) {
    this.#rows = [...rows].sort((a, b) => a.seq - b.seq);
    this.#render();
  }

  get transitions() {
    return this.#rows;
  }

  /** Adds one transition (from a live event) unless its seq is there already. */
  add(row) {
    if (this.#rows.some((r) => r.seq === row.seq)) return;
    this.#rows.push(row);
    this.#rows.sort((a, b) => a.seq - b.seq);
    this.#render();
  }

  #render() {
    const rows = this.#rows;
    this.#current = null;
    if (rows.length === 0) {
      replaceChildren(this.#list, h('li', { class: 'empty' }, 'No transitions yet.'));
      return;
    }
    replaceChildren(this.#list, rows.map((row, index) => {
      const next = rows[index + 1];
      const last = !next;
      const duration = h('span', { class: 'duration' });
      if (next) {
        setText(duration, formatDuration((parseTime(next.at) - parseTime(row.at)) / 1000));
      } else if (lifecycle().isTerminal(row.to_state)) {
        setText(duration, 'final');
      } else {
        this.#current = duration;
        this.#currentAt = parseTime(row.at);
      }
      const why = [row.reason, row.actor].filter(Boolean).join(' · ');
      return h('li', { class: ['step', last && 'step-last'], dataset: { state: row.to_state, seq: String(row.seq) } },
        h('span', { class: ['badge', `state-${row.to_state}`] }, stateLabel(row.to_state)),
        h('time', { datetime: row.at, title: formatDateTime(row.at) }, formatTime(row.at)),
        duration,
        why ? h('span', { class: 'why' }, why) : null);
    }));
    this.#tick();
  }

  #tick() {
    if (!this.#current || this.#currentAt === null) return;
    setText(this.#current, `${formatDuration(Math.max(0, (Date.now() - this.#currentAt) / 1000))} so far`);
  }
}

export function registerTaskTimeline() {
  if (!customElements.get('ts-task-timeline')) customElements.define('ts-task-timeline', TaskTimeline);
}
