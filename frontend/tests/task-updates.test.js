// How changes reach the views: one way, immutably (a task handed out is never changed
// afterwards), and the `snapshot` event.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { later, settle, task, transition, fakeWorld } from './fakes.js';

let world;

beforeEach(() => {
  world = fakeWorld();
});

/** Every task object any listener was handed, with a copy of it as it was then. */
function handedOut(manager) {
  const seen = [];
  const keep = (t) => { if (t && typeof t === 'object') seen.push([t, structuredClone(t)]); };
  for (const name of ['taskRestored', 'taskUpdated', 'taskProgress', 'taskCompleted', 'taskError', 'taskCancelled']) {
    manager.on(name, keep);
  }
  manager.on('transition', (event) => keep(event.task));
  manager.on('restored', ({ tasks }) => tasks.forEach(keep));
  manager.on('snapshot', ({ tasks }) => tasks.forEach(keep));
  return seen;
}

describe('immutable updates', () => {
  test('a task handed to a listener is never changed afterwards', async () => {
    const t = task({ state: 'running' });
    const other = task({ state: 'queued' });
    world.server.put(t, other);
    const manager = world.makeManager();
    const seen = handedOut(manager);
    await manager.initialize();
    const socket = world.FakeWebSocket.last;
    socket.open();
    socket.push({ type: 'snapshot', seq: 1, tasks: [t, other] });
    await settle();

    socket.push({ type: 'progress', task_id: t.id, progress: 10, message: 'one' });
    socket.push({ type: 'progress', task_id: t.id, progress: 20, message: 'two' });
    const q = { id: 'q1', question: 'Go?', choices: ['yes'], status: 'pending' };
    socket.push({ type: 'question', task_id: t.id, question: q });
    socket.push({ type: 'question', task_id: t.id, question: { ...q, status: 'answered', answer: 'yes' } });
    socket.push(transition(2, later(t, 'collecting'), 'running'));
    socket.push(transition(2, later(later(t, 'collecting'), 'collecting', { message: 'dup' }), 'running'));
    socket.push(transition(3, later(other, 'cancelled'), 'queued'));
    world.server.put(later(later(t, 'collecting'), 'completed'));
    await manager.getTaskStatus(t.id);
    world.FakeWebSocket.refuse = true;
    socket.serverClose();
    await world.clock.advance(3000); // a poll

    assert.ok(seen.length >= 10, `${seen.length} tasks handed out`);
    for (const [object, then] of seen) {
      assert.deepEqual(object, then);
      assert.ok(Object.isFrozen(object));
    }
    manager.destroy();
  });

  test('each change is a new object; the manager answers the newest', async () => {
    const t = task({ state: 'running' });
    world.server.put(t);
    const { manager, log, socket } = await world.liveManager(1);
    const before = manager.getTask(t.id);
    socket.push({ type: 'progress', task_id: t.id, progress: 30 });
    const after = manager.getTask(t.id);
    assert.notEqual(after, before);
    assert.equal(before.progress, 0);
    assert.equal(after.progress, 30);
    assert.equal(log.of('taskProgress')[0], after);
    assert.equal(manager.activeTasks[0], after);
    assert.throws(() => { after.progress = 99; }, TypeError, 'frozen: a view cannot change it either');
  });

  test('an update the store refuses (an older copy) hands out nothing new', async () => {
    const t = task({ state: 'running' });
    world.server.put(t);
    const { manager, log, socket } = await world.liveManager(1);
    const done = later(t, 'completed');
    socket.push(transition(2, done, 'running'));
    const held = manager.getTask(t.id);
    const updates = log.of('taskUpdated').length;
    world.server.put(t); // a stale read answers after the completion
    assert.equal(await manager.getTaskStatus(t.id), held);
    assert.equal(log.of('taskUpdated').length, updates);
  });
});

describe('the snapshot event', () => {
  test('after restored on the first connection: {seq, tasks} with the tasks as held', async () => {
    const a = task({ state: 'running' });
    const b = task({ state: 'queued' });
    world.server.put(a, b);
    const { manager, log } = await world.liveManager(7);
    const names = log.events.map(([name]) => name);
    assert.ok(names.lastIndexOf('restored') < names.indexOf('snapshot'));
    const [snapshot] = log.of('snapshot');
    assert.equal(snapshot.seq, 7);
    assert.deepEqual(snapshot.tasks.map((t) => t.id), [a.id, b.id]);
    assert.equal(snapshot.tasks[0], manager.getTask(a.id));
  });

  test('on every connection that gets one; not for a replay with since', async () => {
    const t = task({ state: 'running' });
    world.server.put(t);
    const { manager, log, socket } = await world.liveManager(5);
    socket.serverClose();
    await world.clock.advance(500);
    const replay = world.FakeWebSocket.last;
    assert.equal(replay.since, '5');
    replay.open();
    replay.push(transition(6, later(t, 'collecting'), 'running'));
    assert.equal(log.of('snapshot').length, 1, 'a replay is no snapshot');

    // The server lost its database: back without since, for a new snapshot.
    replay.push({ type: 'error', error: 'validation_error', newest_seq: 0, detail: 'since is ahead' });
    replay.serverClose();
    await world.clock.advance(0);
    const fresh = world.FakeWebSocket.last;
    assert.equal(fresh.since, null);
    fresh.open();
    fresh.push({ type: 'snapshot', seq: 0, part: 1, parts: 1, tasks: [] });
    await settle();
    assert.deepEqual(log.of('snapshot').map((s) => [s.seq, s.tasks.length]), [[5, 1], [0, 0]]);
    assert.equal(log.of('restored').length, 1, 'restored only once');
    assert.equal(manager.lastSeq, 0);
  });
});
