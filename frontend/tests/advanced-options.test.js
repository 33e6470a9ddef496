// The start form's advanced options: what is sent, what is refused before sending, and how a
// server refusal is mapped back to its field.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { readAdvanced, serverFieldErrors } from '../advanced-options.js';

test('empty inputs send nothing (the server defaults apply)', () => {
  assert.deepEqual(readAdvanced({ priority: '', run_at: '', timeout_seconds: ' ', max_attempts: '' }),
    { fields: {}, errors: {} });
});

test('valid values become the create-task fields', () => {
  const { fields, errors } = readAdvanced({
    priority: '-5', run_at: '2030-01-02T03:04', timeout_seconds: '1.5', max_attempts: '7',
  });
  assert.deepEqual(errors, {});
  assert.equal(fields.priority, -5);
  assert.equal(fields.timeout_seconds, 1.5);
  assert.equal(fields.max_attempts, 7);
  assert.equal(fields.run_at, new Date('2030-01-02T03:04').toISOString());
  assert.match(fields.run_at, /Z$/);
});

test('out-of-range and malformed values are refused before sending, per field', () => {
  const { fields, errors } = readAdvanced({
    priority: '2.5', run_at: 'soon', timeout_seconds: '0', max_attempts: '101',
  });
  assert.deepEqual(fields, {});
  assert.equal(errors.priority, 'Enter a whole number.');
  assert.equal(errors.run_at, 'Enter a date and time.');
  assert.equal(errors.timeout_seconds, 'More than 0.');
  assert.equal(errors.max_attempts, 'At most 100.');
  assert.equal(readAdvanced({ priority: '1000001' }).errors.priority, 'At most 1000000.');
  assert.equal(readAdvanced({ max_attempts: '0' }).errors.max_attempts, 'At least 1.');
  assert.equal(readAdvanced({ timeout_seconds: 'abc' }).errors.timeout_seconds, 'Enter a number.');
  assert.equal(readAdvanced({ timeout_seconds: String(31 * 86400) }).errors.timeout_seconds, 'At most 2592000.');
});

test('a server 422 is mapped to the fields it names', () => {
  const body = {
    error: 'validation_error',
    detail: 'run_at: invalid',
    errors: [
      { loc: ['body', 'run_at'], msg: 'Input should be a valid datetime' },
      { loc: ['body', 'max_attempts'], msg: 'Input should be less than or equal to 100' },
    ],
  };
  assert.deepEqual(serverFieldErrors(body), {
    run_at: 'Input should be a valid datetime',
    max_attempts: 'Input should be less than or equal to 100',
  });
  assert.deepEqual(serverFieldErrors({ error: 'validation_error', detail: 'run_at: out of range', field: 'run_at' }),
    { run_at: 'run_at: out of range' });
  assert.deepEqual(serverFieldErrors({ error: 'not_found', detail: 'x' }), {});
  assert.deepEqual(serverFieldErrors(null), {});
});
