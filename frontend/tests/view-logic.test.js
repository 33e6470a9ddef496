// The views' pure helpers: formatting, routes, reading a params JSON Schema.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatClock, formatDuration, formatPercent } from '../format.js';
import { parseHash } from '../router.js';
import { describeProperty } from '../schema-form.js';

test('durations and clocks', () => {
  assert.equal(formatDuration(null), '—');
  assert.equal(formatDuration(0.04), '0.0 s');
  assert.equal(formatDuration(12.7), '12 s');
  assert.equal(formatDuration(185), '3 min 05 s');
  assert.equal(formatDuration(2 * 3600 + 7 * 60), '2 h 07 min');
  assert.equal(formatDuration(3 * 86400 + 4 * 3600), '3 d 4 h');
  assert.equal(formatClock(7.9), '0:07');
  assert.equal(formatClock(3729), '1:02:09');
  assert.equal(formatPercent(12.5), '13%');
  assert.equal(formatPercent(2.25), '2.3%');
});

test('routes', () => {
  assert.equal(parseHash('').route.name, 'dashboard');
  assert.equal(parseHash('#/').route.name, 'dashboard');
  const task = parseHash('#/tasks/3f0c%2Fx');
  assert.equal(task.route.name, 'task');
  assert.deepEqual(task.params, ['3f0c/x']);
  const history = parseHash('#/history?state=failed&q=a%20b');
  assert.equal(history.route.name, 'history');
  assert.equal(history.query.get('q'), 'a b');
  assert.equal(parseHash('#/questions').route.name, 'questions');
  assert.equal(parseHash('#/schedules/').route.name, 'schedules');
  assert.equal(parseHash('#/nowhere'), null);
});

test('params schema: optional values (anyOf with null), $ref enums', () => {
  const root = {
    $defs: { Mode: { enum: ['fast', 'full'], type: 'string', title: 'Mode' } },
    properties: {
      timeout: { anyOf: [{ type: 'number', exclusiveMinimum: 0 }, { type: 'null' }], default: null, title: 'Timeout' },
      mode: { $ref: '#/$defs/Mode', default: 'fast' },
      either: { anyOf: [{ type: 'string' }, { type: 'integer' }] },
    },
  };
  const timeout = describeProperty(root.properties.timeout, root);
  assert.equal(timeout.nullable, true);
  assert.equal(timeout.base.type, 'number');
  assert.equal(timeout.base.title, 'Timeout');
  const mode = describeProperty(root.properties.mode, root);
  assert.deepEqual(mode.base.enum, ['fast', 'full']);
  assert.equal(mode.base.default, 'fast');
  const either = describeProperty(root.properties.either, root);
  assert.equal(either.base.type, undefined); // edited as JSON
});
