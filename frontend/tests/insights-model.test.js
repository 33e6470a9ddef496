// The insights page's data logic: address ⇄ query, and the API's answer → chart columns.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  choicesQuery,
  durationBars,
  formatSeconds,
  outcomeBars,
  queueColumns,
  queuePeaks,
  readChoices,
  throughputColumns,
  totals,
} from '../insights-model.js';
import { parseHash } from '../router.js';

const ANSWER = {
  since: '2026-01-01T00:00:00Z',
  until: '2026-01-01T00:30:00Z',
  interval_seconds: 900,
  type: null,
  throughput: [
    { start: '2026-01-01T00:00:00Z', completed: 3, failed: 1, cancelled: 0 },
    { start: '2026-01-01T00:15:00Z', completed: 2, failed: 0, cancelled: 2 },
  ],
  by_type: [
    { type: 'etl', completed: 4, failed: 1, cancelled: 0 },
    { type: 'train', completed: 1, failed: 0, cancelled: 2 },
  ],
  durations: [
    { type: 'etl', count: 5, p50_seconds: 1.5, p95_seconds: 9, p99_seconds: 9 },
    { type: 'train', count: 1, p50_seconds: 60, p95_seconds: 60, p99_seconds: 60 },
  ],
  queue: [
    { start: '2026-01-01T00:00:00Z', depth: 4, arrived: 9, started: 5, wait_avg_seconds: 0.5, wait_max_seconds: 2 },
    { start: '2026-01-01T00:15:00Z', depth: 0, arrived: 0, started: 4, wait_avg_seconds: null, wait_max_seconds: null },
  ],
};

test('the address gives the choices, unknown windows fall back to 24h', () => {
  assert.deepEqual(readChoices(new URLSearchParams('window=6h&type=etl')), { window: '6h', type: 'etl' });
  assert.deepEqual(readChoices(new URLSearchParams('window=1y')), { window: '24h', type: '' });
  assert.equal(choicesQuery({ window: '24h', type: '' }), '');
  assert.equal(choicesQuery({ window: '7d', type: 'a b' }), 'window=7d&type=a+b');
  const route = parseHash('#/insights?window=6h');
  assert.equal(route.route.name, 'insights');
  assert.equal(route.query.get('window'), '6h');
});

test('throughput: one x per bucket (Unix seconds) and a column per outcome', () => {
  assert.deepEqual(throughputColumns(ANSWER), [
    [Date.UTC(2026, 0, 1) / 1000, Date.UTC(2026, 0, 1, 0, 15) / 1000],
    [3, 2],
    [1, 0],
    [0, 2],
  ]);
});

test('totals and the success rate', () => {
  assert.deepEqual(totals(ANSWER), { completed: 5, failed: 1, cancelled: 2, finished: 8, successRate: 62.5 });
  assert.equal(totals({ by_type: [] }).successRate, null);
});

test('outcomes by type stack: each top is the sum so far, the raw counts kept for the legend', () => {
  const bars = outcomeBars(ANSWER);
  assert.deepEqual(bars.types, ['etl', 'train']);
  assert.deepEqual(bars.x, [0, 1]);
  assert.deepEqual(bars.raw, { completed: [4, 1], failed: [1, 0], cancelled: [0, 2] });
  assert.deepEqual(bars.tops, { completed: [4, 1], failed: [5, 1], cancelled: [5, 3] });
});

test('durations by type, and the queue', () => {
  const d = durationBars(ANSWER);
  assert.deepEqual([d.types, d.counts, d.p50, d.p95, d.p99], [['etl', 'train'], [5, 1], [1.5, 60], [9, 60], [9, 60]]);
  const [x, depth, avg, max] = queueColumns(ANSWER);
  assert.equal(x.length, 2);
  assert.deepEqual([depth, avg, max], [[4, 0], [0.5, null], [2, null]]);
  assert.deepEqual(queuePeaks(ANSWER), { depth: 4, wait: 2 });
  assert.deepEqual(queuePeaks({ queue: [] }), { depth: 0, wait: null });
});

test('durations under a second in milliseconds', () => {
  const plain = (s) => `${s} s`;
  assert.equal(formatSeconds(0.0123, plain), '12.3 ms');
  assert.equal(formatSeconds(0.5, plain), '500 ms');
  assert.equal(formatSeconds(0, plain), '0 ms');
  assert.equal(formatSeconds(42, plain), '42 s');
  assert.equal(formatSeconds(null, plain), '—');
});
