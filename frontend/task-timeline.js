// <ts-task-timeline>: a task's transitions, oldest first: drawn in time (each state a bar as
// long as the task stayed in it, on one axis; the current one grows while the task runs), then
// listed with when each was entered, how long it lasted, the reason and who made it.

import { lifecycle } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { formatDateTime, formatDuration, formatTime, parseTime, stateLabel } from './format.js';
import { axisTicks, placeSpan, timelineSpans } from './timeline-bars.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
  return el;
}

export class TaskTimeline extends HTMLElement {
  #rows = [];
  #bars = h('figure', { class: 'timeline-bars', 'aria-label': 'Time in each state' });
  #list = h('ol', { class: 'timeline' });
  #current = null;
  #currentAt = null;
  #ticker = null;

  connectedCallback() {
    if (!this.#list.isConnected) this.replaceChildren(this.#bars, this.#list);
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
      replaceChildren(this.#bars);
      replaceChildren(this.#list, h('li', { class: 'empty' }, 'No transitions yet.'));
      return;
    }
    this.#drawBars();
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
    this.#drawBars();
  }

  /** One row per state entered: its name, a bar placed on the task's time axis, its duration. */
  #drawBars() {
    const { startMs, endMs, spans } = timelineSpans(this.#rows, Date.now(), (s) => lifecycle().isTerminal(s));
    const total = (endMs - startMs) / 1000;
    const rows = spans.map((span) => {
      const { left, width } = placeSpan(span, startMs, endMs);
      const track = svg('svg', { class: 'bar-track', role: 'presentation', preserveAspectRatio: 'none' });
      track.append(span.final
        ? svg('rect', { class: `bar bar-final state-fill-${span.state}`, x: `${Math.min(left, 99)}%`, y: 0, width: '4', height: '100%' })
        : svg('rect', { class: `bar state-fill-${span.state}`, x: `${left}%`, y: 0, width: `${Math.max(width, 0.4)}%`, height: '100%', rx: 3 }));
      const said = span.final ? 'final' : `${formatDuration(span.seconds)}${span.live ? ' so far' : ''}`;
      return h('div', {
        class: ['bar-row', span.live && 'bar-live'], role: 'listitem',
        dataset: { state: span.state, seq: String(span.seq), seconds: String(span.seconds), left: left.toFixed(2), width: width.toFixed(2) },
      },
      h('span', { class: 'bar-label' }, stateLabel(span.state)),
      track,
      h('span', { class: 'bar-duration' }, said));
    });
    const ticks = axisTicks(total, 4).map((t) => {
      const tick = h('span', { class: 'tick' }, t === 0 ? formatTime(new Date(startMs).toISOString()) : `+${formatDuration(t)}`);
      tick.style.left = `${total > 0 ? (100 * t) / total : 0}%`; // CSSOM: allowed by the page's CSP
      return tick;
    });
    replaceChildren(this.#bars,
      h('div', { class: 'bar-rows', role: 'list' }, rows),
      h('div', { class: 'bar-axis', 'aria-hidden': 'true' }, h('span'), h('div', { class: 'ticks' }, ticks), h('span')),
      h('figcaption', { class: 'visually-hidden' }, `Time in each state, over ${formatDuration(total)}`));
  }
}

export function registerTaskTimeline() {
  if (!customElements.get('ts-task-timeline')) customElements.define('ts-task-timeline', TaskTimeline);
}
