// Unit tests of TaskStateManager against fakes of fetch, WebSocket and timers.
// Run: node --test frontend/tests/

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { ApiError } from '../task-state-manager.js';
import { EVENTS, fakeWorld, later, record, settle, task, transition } from './fakes.js';

let server;
let clock;
let FakeWebSocket;
let makeManager;
let liveManager;

beforeEach(() => {
  ({ server, clock, FakeWebSocket, makeManager, liveManager } = fakeWorld());
});

describe('restoration on load', () => {
  test('reads the table, then restores every active task from GET /api/v2/tasks/active, before the socket opens', async () => {
    const a = task({ state: 'running', progress: 40 });
    const b = task({ state: 'queued' });
    server.put(a, b, task({ state: 'completed' }));
    const manager = makeManager();
    const log = record(manager, EVENTS);

    const restored = await manager.initialize();

    assert.deepEqual(server.requests.map((r) => r.path), ['/api/v2/states', '/api/v2/tasks/active']);
    assert.deepEqual(restored.map((t) => t.id), [a.id, b.id]);
    assert.deepEqual(log.of('taskRestored').map((t) => t.id), [a.id, b.id]);
    assert.equal(log.of('taskRestored')[0].progress, 40);
    assert.equal(log.of('noActiveTask').length, 0);
    assert.equal(log.of('restored').length, 1);
    assert.ok(manager.isRestored);
    // The socket opens after the restore, without `since` (no seq is known yet): a snapshot.
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(FakeWebSocket.last.url, 'ws://ui.test/api/v2/events');
    assert.equal(manager.connectionState, 'connecting');
  });

  test('emits noActiveTask when nothing is active', async () => {
    server.put(task({ state: 'completed' }));
    const manager = makeManager();
    const log = record(manager, EVENTS);
    await manager.initialize();
    assert.equal(log.of('noActiveTask').length, 1);
    assert.equal(log.of('taskRestored').length, 0);
    assert.deepEqual(manager.activeTasks, []);
  });

  test('the snapshot sets lastSeq; a task restored as running that ended meanwhile shows its real end', async () => {
    // The seed's founding bug: the page must never keep showing "running" for a finished task.
    const t = task({ state: 'running' });
    server.put(t);
    const manager = makeManager();
    const log = record(manager, EVENTS);
    await manager.initialize();
    assert.equal(manager.getTask(t.id).state, 'running');

    server.put(later(t, 'completed', { progress: 100 }));
    const socket = FakeWebSocket.last;
    socket.open();
    socket.push({ type: 'snapshot', seq: 7, tasks: [] }); // it is no longer active
    await settle();

    assert.equal(manager.lastSeq, 7);
    assert.equal(manager.connectionState, 'live');
    assert.ok(server.requested('GET', `/api/v2/tasks/${t.id}`).length >= 1, 'the task is read again');
    assert.equal(manager.getTask(t.id).state, 'completed');
    assert.deepEqual(manager.activeTasks, []);
    assert.deepEqual(log.of('taskCompleted').map((x) => x.id), [t.id]);
  });

  test('does not use local storage: a second manager knows only what the server says', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    await makeManager().initialize();
    server.put(later(t, 'completed'));
    const fresh = makeManager();
    await fresh.initialize();
    assert.deepEqual(fresh.activeTasks, []);
  });

  test('uses the seq of GET /active when the server gives one, and opens the socket with since', async () => {
    server.route((method, path) => (path === '/api/v2/tasks/active' ? { status: 200, body: { items: [], seq: 42 } } : undefined));
    const manager = makeManager();
    await manager.initialize();
    assert.equal(FakeWebSocket.last.since, '42');
  });

  test('a server that is down at load: error, reconnecting, then restored once it answers', async () => {
    server.down = true;
    FakeWebSocket.refuse = true;
    const manager = makeManager();
    const log = record(manager, EVENTS);
    await manager.initialize();
    await settle();
    assert.equal(log.of('error').length >= 1, true);
    assert.equal(manager.connectionState, 'reconnecting');
    assert.equal(manager.isRestored, false);

    const t = task({ state: 'running' });
    server.put(t);
    server.down = false;
    await clock.advance(3000); // a poll finds the server
    assert.equal(manager.isRestored, true);
    assert.deepEqual(log.of('taskRestored').map((x) => x.id), [t.id]);
    assert.equal(manager.connectionState, 'polling');
  });
});

describe('a snapshot in parts', () => {
  test('parts are assembled before the snapshot is applied; lastSeq moves only at the last', async () => {
    const [a, b, c] = [task({ state: 'running' }), task({ state: 'queued' }), task({ state: 'queued' })];
    server.put(a, b, c);
    const manager = makeManager();
    const log = record(manager, EVENTS);
    await manager.initialize(); // GET /active without a seq: the socket opens without since
    const socket = FakeWebSocket.last;
    assert.equal(socket.since, null);
    socket.open();
    const d = task({ state: 'queued' });
    server.put(d);
    const before = server.requests.length;

    socket.push({ type: 'snapshot', seq: 9, part: 1, parts: 3, tasks: [a] });
    await settle();
    assert.equal(manager.lastSeq, null, 'not before the last part');
    assert.equal(log.of('snapshot').length, 0);
    socket.push({ type: 'snapshot_part', seq: 9, part: 2, parts: 3, tasks: [b] });
    await settle();
    assert.equal(server.requests.length, before, 'b and c are not taken for finished and read again');
    socket.push({ type: 'snapshot_part', seq: 9, part: 3, parts: 3, tasks: [c, d] });
    await settle();

    assert.equal(manager.lastSeq, 9);
    assert.deepEqual(log.of('snapshot').map((e) => e.tasks.map((t) => t.id)), [[a.id, b.id, c.id, d.id]]);
    assert.deepEqual(manager.activeTasks.map((t) => t.id).sort(), [a.id, b.id, c.id, d.id].sort());
    assert.equal(server.requests.length, before, 'nothing was missing from the whole snapshot');
    socket.push(transition(10, later(a, 'collecting'), 'running'));
    assert.equal(manager.getTask(a.id).state, 'collecting');
  });

  test('a socket lost in the middle drops the parts; a stray part is an error, not applied', async () => {
    server.route((method, path) => (path === '/api/v2/tasks/active' ? { status: 500, body: null } : undefined));
    const a = task({ state: 'running' });
    const manager = makeManager();
    const log = record(manager, EVENTS);
    await manager.initialize();
    const first = FakeWebSocket.last;
    first.open();
    first.push({ type: 'snapshot', seq: 5, part: 1, parts: 2, tasks: [a] });
    first.serverClose();
    await clock.advance(500);
    const second = FakeWebSocket.last;
    assert.notEqual(second, first);
    assert.equal(second.since, null, 'no seq was taken from the unfinished snapshot');
    second.open();
    second.push({ type: 'snapshot_part', seq: 5, part: 2, parts: 2, tasks: [] });
    await settle();
    assert.equal(manager.lastSeq, null);
    assert.equal(log.of('snapshot').length, 0);
    assert.ok(log.of('error').some((e) => /snapshot part 2 of 2/.test(e.message)));
    second.push({ type: 'snapshot', seq: 6, part: 1, parts: 1, tasks: [a] });
    await settle();
    assert.equal(manager.lastSeq, 6);
    assert.deepEqual(manager.activeTasks.map((t) => t.id), [a.id]);
  });

  test('a snapshot without part fields (an older server) is complete on its own', async () => {
    const a = task({ state: 'running' });
    server.put(a);
    const { manager, log } = await liveManager(3);
    assert.equal(manager.lastSeq, 3);
    assert.equal(log.of('snapshot').length, 1);
  });
});

describe('live events', () => {
  test('a transition applies its task and emits transition, taskUpdated and the ending event', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(10);

    socket.push(transition(11, later(t, 'collecting'), 'running'));
    const done = later(later(t, 'collecting'), 'completed', { result: { ok: 1 } });
    socket.push(transition(12, done, 'collecting'));

    assert.equal(manager.lastSeq, 12);
    assert.deepEqual(log.of('transition').map((e) => [e.seq, e.to]), [[11, 'collecting'], [12, 'completed']]);
    assert.equal(log.of('taskCompleted').length, 1);
    assert.deepEqual(log.of('taskCompleted')[0].result, { ok: 1 });
    assert.deepEqual(manager.activeTasks, []);
  });

  test('failed and cancelled emit taskError and taskCancelled', async () => {
    const a = task({ state: 'running' });
    const b = task({ state: 'queued' });
    server.put(a, b);
    const { log, socket } = await liveManager(1);
    socket.push(transition(2, later(a, 'failed', { error: 'boom' }), 'running'));
    socket.push(transition(3, later(b, 'cancelled'), 'queued'));
    assert.deepEqual(log.of('taskError').map((t) => t.error), ['boom']);
    assert.deepEqual(log.of('taskCancelled').map((t) => t.id), [b.id]);
  });

  test('a new task (birth transition) becomes active', async () => {
    const { manager, socket } = await liveManager(5);
    const t = task({ state: 'queued' });
    socket.push(transition(6, t, null));
    assert.deepEqual(manager.activeTasks.map((x) => x.id), [t.id]);
  });

  test('progress updates the task in place and emits taskProgress; ignored once terminal', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(3);
    socket.push({ type: 'progress', task_id: t.id, progress: 55.5, phase: 'training', message: 'epoch 5', items_processed: 5, items_failed: 1 });
    const seen = manager.getTask(t.id);
    assert.equal(seen.progress, 55.5);
    assert.equal(seen.phase, 'training');
    assert.equal(seen.message, 'epoch 5');
    assert.equal(seen.items_failed, 1);
    assert.equal(log.of('taskProgress').length, 1);

    socket.push(transition(4, later(t, 'cancelled', { progress: 55.5 }), 'running'));
    socket.push({ type: 'progress', task_id: t.id, progress: 60 });
    assert.equal(manager.getTask(t.id).progress, 55.5);
    assert.equal(log.of('taskProgress').length, 1);
  });

  test('log lines are passed on; questions are added to and removed from pending_questions', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(3);
    socket.push({ type: 'log', task_id: t.id, seq: 1, level: 'info', message: 'hello' });
    assert.deepEqual(log.of('log').map((l) => l.message), ['hello']);

    const q = { id: 'q1', question: 'Go?', choices: ['yes', 'no'], asked_at: '2026-01-01T00:00:00Z', status: 'pending' };
    socket.push({ type: 'question', task_id: t.id, question: q });
    assert.equal(manager.getTask(t.id).waiting_for_input, true);
    assert.deepEqual(manager.getTask(t.id).pending_questions.map((x) => x.question), ['Go?']);
    assert.equal('status' in manager.getTask(t.id).pending_questions[0], false);

    socket.push({ type: 'question', task_id: t.id, question: { id: 'q1', status: 'answered', answer: 'yes' } });
    assert.deepEqual(manager.getTask(t.id).pending_questions, []);
    assert.equal(manager.getTask(t.id).waiting_for_input, false);
    assert.equal(log.of('question').length, 2);
  });

  test('a late, older copy of a task never replaces a newer or terminal one', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, socket } = await liveManager(3);
    const done = later(t, 'completed');
    socket.push(transition(4, done, 'running'));
    // An HTTP read that started before the completion answers after it.
    server.put(t);
    const answer = await manager.getTaskStatus(t.id);
    assert.equal(answer.state, 'completed');
    assert.equal(manager.getTask(t.id).state, 'completed');
  });
});

describe('de-duplication by seq', () => {
  test('a transition whose seq was applied already is dropped', async () => {
    const t = task({ state: 'queued' });
    server.put(t);
    const { manager, log, socket } = await liveManager(10);
    const running = later(t, 'running');
    socket.push(transition(11, running, 'queued'));
    socket.push(transition(11, running, 'queued'));
    socket.push(transition(9, t, null)); // older than the snapshot
    socket.push(transition(10, t, null)); // included in the snapshot
    assert.deepEqual(log.of('transition').map((e) => e.seq), [11]);
    assert.equal(manager.duplicatesDropped, 3);
    assert.equal(manager.lastSeq, 11);
  });

  test('a duplicate seq never emits twice, but its newer task copy is kept (a server whose seq restarted)', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(50);
    const done = later(t, 'completed');
    socket.push(transition(3, done, 'collecting')); // seq 3 < 50: from a new database
    assert.equal(log.of('transition').length, 0);
    assert.equal(manager.getTask(t.id).state, 'completed');
    socket.push(transition(4, t, 'queued')); // an older copy changes nothing
    assert.equal(manager.getTask(t.id).state, 'completed');
  });

  test('a replay after reconnecting that overlaps what was seen applies each seq once', async () => {
    const t = task({ state: 'queued' });
    server.put(t);
    const { manager, log, socket } = await liveManager(20);
    const s1 = later(t, 'preparing');
    const s2 = later(s1, 'running');
    const s3 = later(s2, 'collecting');
    const s4 = later(s3, 'completed');
    socket.push(transition(21, s1, 'queued'));
    socket.push(transition(22, s2, 'preparing'));
    socket.serverClose();
    await clock.advance(500);
    const again = FakeWebSocket.last;
    assert.equal(again.since, '22');
    again.open();
    // A server may resend the boundary; the manager must not apply it twice.
    for (const [seq, task_, from] of [[22, s4, 'preparing'], [23, s4, 'running'], [24, s4, 'collecting']]) {
      again.push(transition(seq, task_, from));
    }
    assert.deepEqual(log.of('transition').map((e) => e.seq), [21, 22, 23, 24]);
    assert.equal(log.of('taskCompleted').length, 1, 'completed is announced once');
    assert.equal(manager.getTask(t.id).state, 'completed');
  });
});

describe('reconnecting', () => {
  test('reconnects with since = the last seq seen, with a growing backoff', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(10);
    socket.push(transition(11, later(t, 'collecting'), 'running'));
    FakeWebSocket.refuse = true;
    socket.serverClose();
    assert.equal(manager.connectionState, 'reconnecting');

    const opened = () => FakeWebSocket.instances.length;
    const before = opened();
    await clock.advance(499);
    assert.equal(opened(), before, 'not before the first delay');
    await clock.advance(1);
    assert.equal(opened(), before + 1);
    assert.equal(FakeWebSocket.last.since, '11');
    await clock.advance(1000);
    assert.equal(opened(), before + 2, 'second attempt after 1000 ms');
    await clock.advance(2000);
    assert.equal(opened(), before + 3, 'third after 2000 ms');
    await clock.advance(4000);
    await clock.advance(5000);
    await clock.advance(5000);
    assert.equal(opened(), before + 6, 'capped at 5000 ms');
    assert.ok(FakeWebSocket.instances.slice(1).every((s) => s.since === '11'));

    FakeWebSocket.refuse = false;
    await clock.advance(5000);
    const back = FakeWebSocket.last;
    back.open();
    assert.equal(manager.connectionState, 'live');
    back.push(transition(12, later(later(t, 'collecting'), 'completed'), 'collecting'));
    assert.equal(log.of('taskCompleted').length, 1);
    // After a success, the backoff starts again from the first delay.
    back.serverClose();
    const n = opened();
    await clock.advance(500);
    assert.equal(opened(), n + 1);
    assert.equal(FakeWebSocket.last.since, '12');
  });

  test('resync: the server drops a slow client, which comes back at once with since', async () => {
    const { manager, socket } = await liveManager(30);
    socket.push({ type: 'resync' });
    socket.serverClose();
    const n = FakeWebSocket.instances.length;
    await clock.advance(0);
    assert.equal(FakeWebSocket.instances.length, n + 1);
    assert.equal(FakeWebSocket.last.since, '30');
    FakeWebSocket.last.open();
    assert.equal(manager.connectionState, 'live');
  });

  test('a since ahead of the server\'s newest seq (a reset database): back at once for a snapshot', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(30);
    socket.serverClose();
    await clock.advance(500);
    const refused = FakeWebSocket.last;
    assert.equal(refused.since, '30');
    refused.open();
    refused.push({
      type: 'error', error: 'validation_error', newest_seq: 4,
      detail: 'since=30 is ahead of the newest seq 4: reconnect without since for a snapshot',
    });
    refused.serverClose();
    assert.equal(log.of('error').at(-1).code, 'validation_error');
    const n = FakeWebSocket.instances.length;
    await clock.advance(0);
    assert.equal(FakeWebSocket.instances.length, n + 1, 'at once');
    const fresh = FakeWebSocket.last;
    assert.equal(fresh.since, null, 'without since: a snapshot');
    fresh.open();
    fresh.push({ type: 'snapshot', seq: 4, tasks: [t], part: 1, parts: 1 });
    await settle();
    assert.equal(manager.lastSeq, 4);
    fresh.push(transition(5, later(t, 'completed'), 'running'));
    assert.equal(manager.getTask(t.id).state, 'completed', 'seq 5 is new, not a duplicate of 30');
  });

  test('connection events: connecting, live, reconnecting, polling, live', async () => {
    const { log, socket } = await liveManager(1);
    FakeWebSocket.refuse = true;
    socket.serverClose();
    await clock.advance(3000);
    FakeWebSocket.refuse = false;
    await clock.advance(2000);
    FakeWebSocket.last.open();
    assert.deepEqual(log.of('connection').map((c) => c.state), ['connecting', 'live', 'reconnecting', 'polling', 'live']);
  });

  test('destroy closes the socket and stops every timer', async () => {
    const { manager, socket } = await liveManager(1);
    manager.destroy();
    assert.equal(socket.closed, true);
    assert.equal(manager.connectionState, 'closed');
    assert.equal(clock.pending, 0);
  });
});

describe('polling while the socket is down', () => {
  test('polls GET /active every pollingFrequency ms and applies what changed', async () => {
    const a = task({ state: 'running' });
    const b = task({ state: 'running' });
    server.put(a, b);
    const { manager, log, socket } = await liveManager(10, { pollingFrequency: 3000 });
    FakeWebSocket.refuse = true;
    const polls = () => server.requested('GET', '/api/v2/tasks/active').length;
    const start = polls();
    socket.serverClose();

    await clock.advance(2999);
    assert.equal(polls(), start, 'the first poll waits one period');
    server.put(later(a, 'completed', { progress: 100 })); // ended while the socket was down
    const c = task({ state: 'queued' }); // started by someone else
    server.put(c);
    await clock.advance(1);
    assert.equal(polls(), start + 1);
    assert.equal(manager.connectionState, 'polling');
    assert.equal(manager.getTask(a.id).state, 'completed');
    assert.deepEqual(log.of('taskCompleted').map((t) => t.id), [a.id]);
    assert.deepEqual(manager.activeTasks.map((t) => t.id).sort(), [b.id, c.id].sort());
    assert.equal(log.of('poll').length, 1);

    await clock.advance(3000);
    assert.equal(polls(), start + 2);
    await clock.advance(3000);
    assert.equal(polls(), start + 3);

    // The socket comes back: polling stops.
    FakeWebSocket.refuse = false;
    await clock.advance(5000);
    FakeWebSocket.last.open();
    const after = polls();
    await clock.advance(30000);
    assert.equal(polls(), after, 'no polling while live');
    assert.equal(manager.connectionState, 'live');
  });

  test('follows a custom pollingFrequency', async () => {
    server.put(task({ state: 'running' }));
    const { socket } = await liveManager(1, { pollingFrequency: 500 });
    FakeWebSocket.refuse = true;
    const start = server.requested('GET', '/api/v2/tasks/active').length;
    socket.serverClose();
    await clock.advance(2000);
    assert.equal(server.requested('GET', '/api/v2/tasks/active').length, start + 4);
  });

  test('a failing poll says reconnecting, and polling goes on', async () => {
    server.put(task({ state: 'running' }));
    const { manager, log, socket } = await liveManager(1);
    FakeWebSocket.refuse = true;
    server.down = true;
    socket.serverClose();
    await clock.advance(3000);
    assert.equal(manager.connectionState, 'reconnecting');
    assert.deepEqual(log.of('poll').map((p) => p.ok), [false]);
    server.down = false;
    await clock.advance(3000);
    assert.equal(manager.connectionState, 'polling');
  });

  test('a task deleted while we were away is removed', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    const { manager, log, socket } = await liveManager(1);
    FakeWebSocket.refuse = true;
    server.tasks.delete(t.id);
    socket.serverClose();
    await clock.advance(3000);
    assert.equal(manager.getTask(t.id), undefined);
    assert.deepEqual(log.of('taskRemoved').map((x) => x.id), [t.id]);
  });
});

describe('the API calls', () => {
  test('startTask posts the request with trigger manual and tracks the task', async () => {
    const created = task({ state: 'queued', name: 'mine' });
    server.route((method, path, body) => (method === 'POST' && path === '/api/v2/tasks'
      ? { status: 201, body: { ...created, params: body.params, trigger: body.trigger } } : undefined));
    const { manager } = await liveManager(1);
    const answer = await manager.startTask({ type: 'demo.sleep', params: { seconds: 2 }, name: 'mine' });
    const [request] = server.requested('POST', '/api/v2/tasks');
    assert.deepEqual(request.body, { trigger: 'manual', type: 'demo.sleep', params: { seconds: 2 }, name: 'mine' });
    assert.equal(answer.id, created.id);
    assert.deepEqual(manager.activeTasks.map((t) => t.id), [created.id]);
  });

  test('stopTask stops a serving service and cancels anything else', async () => {
    const service = task({ state: 'serving', type: 'demo.serve' });
    const batch = task({ state: 'running' });
    server.put(service, batch);
    server.route((method, path) => {
      const m = /^\/api\/v2\/tasks\/([^/]+)\/(stop|cancel)$/.exec(path);
      if (method !== 'POST' || !m) return undefined;
      const t = server.tasks.get(m[1]);
      return { status: 200, body: later(t, m[2] === 'stop' ? 'stopping' : 'cancelled') };
    });
    const { manager } = await liveManager(1);
    assert.equal((await manager.stopTask(service.id)).state, 'stopping');
    assert.equal((await manager.stopTask(batch.id)).state, 'cancelled');
    assert.equal(server.requested('POST', `/api/v2/tasks/${service.id}/stop`).length, 1);
    assert.equal(server.requested('POST', `/api/v2/tasks/${batch.id}/cancel`).length, 1);
  });

  test('errors are ApiErrors with status, code and detail', async () => {
    const t = task({ state: 'completed' });
    server.put(t);
    server.route((method, path) => (path.endsWith('/cancel')
      ? { status: 409, body: { error: 'invalid_transition', detail: 'completed is terminal', from: 'completed', to: 'cancelled' } }
      : undefined));
    const { manager } = await liveManager(1);
    await assert.rejects(manager.cancelTask(t.id), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 409);
      assert.equal(error.code, 'invalid_transition');
      assert.equal(error.message, 'completed is terminal');
      return true;
    });
  });

  test('validation errors name the field', async () => {
    server.route((method) => (method === 'POST' ? {
      status: 422,
      body: { error: 'validation_error', detail: "params do not match the schema of 'demo.sleep'", errors: [{ loc: ['seconds'], msg: 'Input should be greater than or equal to 0' }] },
    } : undefined));
    const { manager } = await liveManager(1);
    await assert.rejects(manager.startTask({ type: 'demo.sleep', params: { seconds: -1 } }),
      /seconds: Input should be greater than or equal to 0/);
  });

  test('getJobHistory builds the query: repeated state, filters, cursor', async () => {
    server.route((method, path) => (path.startsWith('/api/v2/tasks?') ? { status: 200, body: { items: [], next_cursor: null, total: 0 } } : undefined));
    const { manager } = await liveManager(1);
    await manager.getJobHistory({
      state: ['failed', 'cancelled'], type: 'demo.sleep', trigger: 'manual', q: 'a&b',
      created_after: new Date(Date.UTC(2026, 0, 2)), limit: 25, cursor: 'abc',
    });
    await manager.getJobHistory({ status: 'completed', job_type: 'scheduled' });
    const [first, second] = server.requested('GET', '/api/v2/tasks?').map((r) => new URL(r.path, 'http://x').searchParams);
    assert.deepEqual(first.getAll('state'), ['failed', 'cancelled']);
    assert.equal(first.get('type'), 'demo.sleep');
    assert.equal(first.get('trigger'), 'manual');
    assert.equal(first.get('q'), 'a&b');
    assert.equal(first.get('created_after'), '2026-01-02T00:00:00.000Z');
    assert.equal(first.get('limit'), '25');
    assert.equal(first.get('cursor'), 'abc');
    assert.deepEqual(second.getAll('state'), ['completed']);
    assert.equal(second.get('trigger'), 'scheduled');
  });

  test('resetAgentState posts the reset and reads the active tasks again', async () => {
    const t = task({ state: 'running' });
    server.put(t);
    server.route((method, path) => {
      if (method === 'POST' && path === '/api/v2/admin/reset') {
        server.put(later(t, 'cancelled'));
        return { status: 200, body: { reset: 1 } };
      }
      return undefined;
    });
    const { manager, log } = await liveManager(1);
    assert.equal(await manager.resetAgentState(), 1);
    assert.deepEqual(manager.activeTasks, []);
    assert.deepEqual(log.of('taskCancelled').map((x) => x.id), [t.id]);
  });

  test('reading an old finished task does not announce it as just finished', async () => {
    const old = task({ state: 'failed' });
    server.put(old);
    const { manager, log } = await liveManager(1);
    await manager.getTaskStatus(old.id);
    assert.equal(log.of('taskError').length, 0);
    assert.equal(log.of('taskUpdated').length, 1);
  });
});

describe('auth (TASKSTATE_AUTH=tokens)', () => {
  test('the token goes in the Authorization header and as the socket\'s first message, never in the URL', async () => {
    server.put(task({ state: 'running' }));
    const { socket } = await liveManager(1, { token: 'ts_0123456789ab_secretsecretsecretsecret' });
    assert.ok(server.requests.every((r) => r.headers.authorization === 'Bearer ts_0123456789ab_secretsecretsecretsecret'));
    assert.deepEqual(socket.sent, [{ type: 'auth', token: 'ts_0123456789ab_secretsecretsecretsecret' }]);
    assert.equal(socket.url.includes('token'), false);
  });

  test('a 401 emits authRequired', async () => {
    server.route(() => ({ status: 401, body: { error: 'unauthorized', detail: 'a valid API token is required' } }));
    const manager = makeManager();
    const log = record(manager, [...EVENTS, 'authRequired']);
    await manager.initialize();
    assert.equal(log.of('authRequired').length, 1);
    assert.equal(log.of('authRequired')[0].status, 401);
    manager.destroy();
  });
});

describe('the event system', () => {
  test('on answers an unsubscribe function; a throwing listener does not stop the others', async () => {
    const manager = makeManager();
    const seen = [];
    const original = console.error;
    console.error = () => {};
    try {
      manager.on('x', () => { throw new Error('broken view'); });
      const off = manager.on('x', (d) => seen.push(d));
      manager.emit('x', 1);
      off();
      manager.emit('x', 2);
    } finally {
      console.error = original;
    }
    assert.deepEqual(seen, [1]);
  });

  test('pollingFrequency defaults to 3000 ms (TASK_POLLING_FREQUENCY)', () => {
    assert.equal(makeManager().pollingFrequency, 3000);
  });
});

describe('the actions offered follow the transition table the server publishes', () => {
  const expected = {
    queued: ['cancel'],
    preparing: ['cancel'],
    running: ['cancel'],
    collecting: ['cancel'],
    serving: ['cancel', 'stop'],
    stopping: [],
    orphaned: [],
    completed: [],
    failed: ['retry'],
    cancelled: ['retry'],
  };
  test('every state of the contract, in its order', async () => {
    const manager = makeManager();
    await manager.initialize();
    assert.deepEqual(manager.lifecycle.states, [
      'queued', 'preparing', 'running', 'collecting', 'completed',
      'failed', 'cancelled', 'orphaned', 'serving', 'stopping',
    ]);
    assert.deepEqual(manager.lifecycle.terminalStates, ['completed', 'failed', 'cancelled']);
  });
  for (const state of Object.keys(expected)) {
    test(state, async () => {
      const manager = makeManager();
      await manager.initialize();
      const allowed = manager.lifecycle.actions({ state });
      assert.deepEqual(Object.keys(allowed).filter((k) => allowed[k]).sort(), expected[state]);
    });
  }
});

describe('server configuration', () => {
  test('without a pollingFrequency option, TASK_POLLING_FREQUENCY comes from GET /api/v2/config', async () => {
    server.route((method, path) =>
      method === 'GET' && path === '/api/v2/config'
        ? { status: 200, body: { task_polling_frequency: 750, auth: 'off', version: 'x' } }
        : undefined,
    );
    const manager = makeManager({ pollingFrequency: undefined });
    await manager.initialize();
    assert.deepEqual(server.requests.map((r) => r.path), ['/api/v2/config', '/api/v2/states', '/api/v2/tasks/active']);
    assert.equal(manager.pollingFrequency, 750);
  });

  test('an older server without /api/v2/config keeps the default', async () => {
    const manager = makeManager({ pollingFrequency: undefined });
    await manager.initialize();
    assert.equal(manager.pollingFrequency, 3000);
    assert.equal(server.requested('GET', '/api/v2/tasks/active').length, 1);
  });
});
