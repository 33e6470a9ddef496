// The timeline drawn in time: spans from transitions, their place on the axis, the axis ticks.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { axisTicks, placeSpan, timelineSpans } from '../timeline-bars.js';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const isTerminal = (state) => TERMINAL.has(state);
const at = (seconds) => new Date(Date.UTC(2026, 0, 1, 0, 0, seconds)).toISOString();
const T0 = Date.parse(at(0));

test('a finished task: one span per state, proportional to its time, the final state a point', () => {
  const rows = [
    { seq: 1, to_state: 'queued', at: at(0) },
    { seq: 2, to_state: 'preparing', at: at(2) },
    { seq: 3, to_state: 'running', at: at(3) },
    { seq: 4, to_state: 'collecting', at: at(9) },
    { seq: 5, to_state: 'completed', at: at(10) },
  ];
  const { startMs, endMs, spans } = timelineSpans(rows, T0 + 999_000, isTerminal);
  assert.equal(endMs - startMs, 10_000, 'the end is the final transition, not now');
  assert.deepEqual(spans.map((s) => [s.state, s.seconds]), [
    ['queued', 2], ['preparing', 1], ['running', 6], ['collecting', 1], ['completed', 0],
  ]);
  assert.equal(spans[4].final, true);
  assert.ok(spans.every((s) => !s.live));
  const places = spans.map((s) => placeSpan(s, startMs, endMs));
  assert.deepEqual(places.map((p) => [Math.round(p.left), Math.round(p.width)]), [
    [0, 20], [20, 10], [30, 60], [90, 10], [100, 0],
  ]);
});

test('a running task: the current state grows until now, and the axis with it', () => {
  const rows = [
    { seq: 7, to_state: 'queued', at: at(0) },
    { seq: 9, to_state: 'running', at: at(1) },
  ];
  const early = timelineSpans(rows, T0 + 2000, isTerminal);
  const later = timelineSpans(rows, T0 + 5000, isTerminal);
  assert.equal(early.spans[1].live, true);
  assert.equal(early.spans[1].seconds, 1);
  assert.equal(later.spans[1].seconds, 4);
  assert.equal(later.endMs, T0 + 5000);
  assert.equal(Math.round(placeSpan(later.spans[0], later.startMs, later.endMs).width), 20);
  assert.equal(Math.round(placeSpan(early.spans[0], early.startMs, early.endMs).width), 50);
});

test('a clock behind the server never makes a negative span', () => {
  const rows = [{ seq: 1, to_state: 'queued', at: at(10) }];
  const { spans } = timelineSpans(rows, T0, isTerminal);
  assert.equal(spans[0].seconds, 0);
  assert.deepEqual(timelineSpans([], T0, isTerminal).spans, []);
});

test('axis ticks are round steps covering the whole span', () => {
  assert.deepEqual(axisTicks(10), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(axisTicks(10, 2), [0, 5, 10]);
  assert.deepEqual(axisTicks(3), [0, 1, 2, 3]);
  assert.deepEqual(axisTicks(0.3), [0, 0.1, 0.2, 0.3]);
  const long = axisTicks(4000);
  assert.deepEqual(long, [0, 900, 1800, 2700, 3600], 'never past the end');
  assert.deepEqual(axisTicks(0), [0]);
});
