// The transition table and its rules come from the server (GET /api/v2/states), read once by
// initialize() before anything is applied; the frontend holds no copy of its own.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { Lifecycle } from '../lifecycle.js';
import { EVENTS, LIFECYCLE, fakeWorld, later, record, settle, task, transition } from './fakes.js';

let world;

beforeEach(() => {
  world = fakeWorld();
});

/** The real table, but `orphaned` is terminal, `stop` is allowed in `running` and `cancel` only while queued. */
const OTHER = {
  ...LIFECYCLE,
  states: LIFECYCLE.states.map((s) => (s.name === 'orphaned' ? { ...s, terminal: true } : s)),
  transitions: { ...LIFECYCLE.transitions, orphaned: [] },
  calls: { cancel: ['cancelled', 'queued'], stop: ['running'], retry: ['failed', 'cancelled', 'orphaned'] },
};

function offered(lifecycle, state) {
  const actions = lifecycle.actions({ state });
  return Object.keys(actions).filter((call) => actions[call]).sort();
}

describe('Lifecycle', () => {
  test('a call is not offered in the state it leads to (it would only answer the task again)', () => {
    const lifecycle = new Lifecycle(LIFECYCLE);
    assert.equal(lifecycle.allows('cancel', 'cancelled'), true, 'the server accepts it');
    assert.deepEqual(offered(lifecycle, 'cancelled'), ['retry']);
    assert.equal(lifecycle.allows('stop', 'stopping'), true);
    assert.deepEqual(offered(lifecycle, 'stopping'), []);
    assert.deepEqual(offered(lifecycle, 'serving'), ['cancel', 'stop']);
  });

  test('a call allowed in a single state is offered there', () => {
    const lifecycle = new Lifecycle(OTHER);
    assert.deepEqual(offered(lifecycle, 'running'), ['stop']);
    assert.deepEqual(offered(lifecycle, 'orphaned'), ['retry']);
    assert.deepEqual(offered(lifecycle, 'queued'), ['cancel']);
    assert.deepEqual(offered(lifecycle, undefined), []);
  });

  test('states, terminal and active states, in the order the server gives', () => {
    const lifecycle = new Lifecycle(OTHER);
    assert.deepEqual(lifecycle.terminalStates, ['completed', 'failed', 'cancelled', 'orphaned']);
    assert.deepEqual(lifecycle.activeStates, ['queued', 'preparing', 'running', 'collecting', 'serving', 'stopping']);
    assert.equal(lifecycle.isTerminal('orphaned'), true);
    assert.equal(lifecycle.isTerminal(undefined), false);
    assert.equal(lifecycle.canTransition('queued', 'preparing'), true);
    assert.equal(lifecycle.canTransition('completed', 'queued'), false);
  });

  test('an answer without states is refused', () => {
    assert.throws(() => new Lifecycle({}), TypeError);
    assert.throws(() => new Lifecycle({ states: [{ terminal: true }] }), TypeError);
  });
});

describe('the manager reads the table from the server', () => {
  test('once, before the active tasks, however often it reconnects, polls or reads', async () => {
    const t = task({ state: 'running' });
    world.server.put(t);
    const { manager, socket } = await world.liveManager(1);
    assert.deepEqual(world.server.requests.slice(0, 2).map((r) => r.path), ['/api/v2/states', '/api/v2/tasks/active']);
    world.FakeWebSocket.refuse = true;
    socket.serverClose();
    await world.clock.advance(10_000); // polls and reconnects
    await manager.getTaskStatus(t.id);
    await manager.resetAgentState().catch(() => {});
    assert.equal(world.server.requested('GET', '/api/v2/states').length, 1);
  });

  test('a server with another table changes what is terminal, active and allowed', async () => {
    world.server.lifecycle = OTHER;
    const running = task({ state: 'running' });
    const orphan = task({ state: 'orphaned' });
    world.server.put(running, orphan);
    world.server.route((method, path) => {
      const m = /^\/api\/v2\/tasks\/([^/]+)\/(stop|cancel)$/.exec(path);
      return method === 'POST' && m ? { status: 200, body: later(world.server.tasks.get(m[1]), 'stopping') } : undefined;
    });
    const { manager, log, socket } = await world.liveManager(1);

    assert.equal(manager.lifecycle.isTerminal('orphaned'), true);
    assert.deepEqual(manager.activeTasks.map((t) => t.id), [running.id], 'an orphan is finished here');
    assert.deepEqual(offered(manager.lifecycle, 'running'), ['stop']);
    socket.push({ type: 'progress', task_id: orphan.id, progress: 50 });
    assert.equal(log.of('taskProgress').length, 0, 'no progress for a finished task');

    await manager.stopTask(running.id);
    assert.equal(world.server.requested('POST', `/api/v2/tasks/${running.id}/stop`).length, 1, 'stop is allowed in running');

    const lost = task({ state: 'preparing' });
    socket.push(transition(2, lost, null));
    socket.push(transition(3, later(lost, 'orphaned'), 'preparing'));
    assert.equal(manager.activeTasks.some((t) => t.id === lost.id), false);
    socket.push(transition(4, later(later(lost, 'orphaned'), 'queued'), 'orphaned'));
    assert.equal(manager.getTask(lost.id).state, 'orphaned', 'a terminal state is final');
  });

  test('the real table: the same answers the contract gives', async () => {
    const { manager } = await world.liveManager(1);
    assert.deepEqual(manager.lifecycle.activeStates,
      ['queued', 'preparing', 'running', 'collecting', 'orphaned', 'serving', 'stopping']);
    assert.deepEqual(offered(manager.lifecycle, 'running'), ['cancel']);
  });

  for (const [what, answer] of [
    ['unreachable', null],
    ['answering 500', { status: 500, body: { error: 'internal', detail: 'boom' } }],
    ['answering no table', { status: 200, body: { items: [] } }],
  ]) {
    test(`a server ${what} at start: an error and retries, as when the API is down; no table of our own`, async () => {
      world.server.route((method, path) => (path === '/api/v2/states' && answer ? answer : undefined));
      if (!answer) world.server.down = true;
      const manager = world.makeManager();
      const log = record(manager, EVENTS);
      const restored = await manager.initialize();
      await settle();

      assert.deepEqual(restored, []);
      assert.ok(log.of('error').length >= 1);
      assert.equal(manager.lifecycle, null);
      assert.equal(manager.isRestored, false);
      assert.equal(manager.connectionState, 'reconnecting');
      assert.equal(world.FakeWebSocket.instances.length, 0, 'the socket waits for the table');
      assert.equal(world.server.requested('GET', '/api/v2/tasks/active').length, 0);
      await assert.rejects(manager.getTaskStatus('x'));

      // The server comes back: a poll reads the table and restores; the socket follows.
      world.server.handlers = [];
      world.server.down = false;
      const t = task({ state: 'running' });
      world.server.put(t);
      await world.clock.advance(3000);
      assert.equal(manager.lifecycle.isTerminal('completed'), true);
      assert.equal(manager.isRestored, true);
      assert.deepEqual(log.of('taskRestored').map((x) => x.id), [t.id]);
      await world.clock.advance(2000);
      assert.equal(world.FakeWebSocket.instances.length, 1);
      world.FakeWebSocket.last.open();
      assert.equal(manager.connectionState, 'live');
      manager.destroy();
    });
  }
});
