// Workflows (CONTRACT §6) in the manager and the views' pure helpers: trees read with root_id
// and parent_id, a waiting parent's waiting_for, the questions inbox, schedules, the DAG layout.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { layoutDag, longestPathLayers } from '../dag-layout.js';
import { describeCadence } from '../schedules.js';
import { ApiError } from '../task-state-manager.js';
import {
  buildTaskTree, countByState, dependencyEdges, describeBlockers, describeCounts, descendantsOf, whatBlocks,
} from '../workflow-model.js';
import { EVENTS, LIFECYCLE, fakeWorld, later, record, settle, task } from './fakes.js';
import { family, serveWorkflows } from './fakes-workflows.js';

let server;
let makeManager;
let liveManager;
let fake;

beforeEach(() => {
  ({ server, makeManager, liveManager } = fakeWorld());
  fake = serveWorkflows(server);
});

describe('the tasks of a tree', () => {
  test('getTaskTree reads ?root_id= page after page, oldest first, and applies what it read', async () => {
    const { root, children } = family(3);
    const done = later(children[0], 'completed', { progress: 100 });
    server.put(root, done, children[1], children[2], task({ name: 'a stranger' }));
    const manager = makeManager();
    const log = record(manager, EVENTS);

    const tree = await manager.getTaskTree(root.id);

    const reads = server.requested('GET', '/api/v2/tasks?');
    assert.ok(reads.every((r) => new URL(r.path, 'http://x').searchParams.get('root_id') === root.id));
    assert.equal(new URL(reads[0].path, 'http://x').searchParams.get('limit'), '500');
    assert.deepEqual(tree.map((t) => t.id), [root.id, done.id, children[1].id, children[2].id]);
    assert.equal(manager.getTask(done.id).state, 'completed');
    assert.ok(Object.isFrozen(manager.getTask(root.id)));
    // Read, not seen ending: no taskCompleted for a child that had finished before.
    assert.equal(log.of('taskCompleted').length, 0);
  });

  test('follows next_cursor until the last page', async () => {
    const { root, children } = family(2);
    server.put(root, ...children);
    server.handlers.unshift((method, path) => { // before the fake's history
      const url = new URL(path, 'http://x');
      if (url.pathname !== '/api/v2/tasks') return undefined;
      const first = !url.searchParams.get('cursor');
      return { status: 200, body: first
        ? { items: [children[1], children[0]], next_cursor: 'c2', total: 3 }
        : { items: [root], next_cursor: null, total: 3 } };
    });
    const tree = await makeManager().getTaskTree(root.id);
    assert.deepEqual(tree.map((t) => t.id), [root.id, children[0].id, children[1].id]);
    assert.equal(new URL(server.requested('GET', '/api/v2/tasks?')[1].path, 'http://x').searchParams.get('cursor'), 'c2');
  });

  test('a server that ignores the filter: the tasks of other trees are dropped', async () => {
    fake.filtersIgnored = true;
    const { root, children } = family(2);
    const other = family(1);
    server.put(root, ...children, other.root, ...other.children);
    const tree = await makeManager().getTaskTree(root.id);
    assert.deepEqual(tree.map((t) => t.id).sort(), [root.id, ...children.map((c) => c.id)].sort());
    const kids = await makeManager().getChildren(other.root.id);
    assert.deepEqual(kids.map((t) => t.id), [other.children[0].id]);
  });

  test('getChildren reads ?parent_id=', async () => {
    const { root, children } = family(2);
    const grandchild = task({ parent_id: children[0].id, root_id: root.id });
    server.put(root, ...children, grandchild);
    const kids = await makeManager().getChildren(root.id);
    assert.deepEqual(kids.map((t) => t.id), children.map((c) => c.id));
    assert.match(server.requested('GET', '/api/v2/tasks?')[0].path, new RegExp(`parent_id=${root.id}`));
  });

  test("a waiting parent's progress event updates its waiting_for", async () => {
    const { root, children } = family(2);
    server.put({ ...root, waiting_for: children.map((c) => c.id) }, ...children);
    const { manager, log, socket } = await liveManager(5);
    socket.push({ type: 'progress', task_id: root.id, progress: 50, waiting_for: [children[1].id] });
    await settle();
    assert.deepEqual(manager.getTask(root.id).waiting_for, [children[1].id]);
    assert.deepEqual(log.of('taskProgress').at(-1).waiting_for, [children[1].id]);
  });
});

describe('the questions inbox', () => {
  test('getQuestions answers every pending question with its task', async () => {
    const gate = { id: 'q1', question: 'Approve 1. gather?', choices: ['approve', 'reject'], context: { kind: 'approval' } };
    const t = task({ name: '1. gather', state: 'queued', pending_questions: [gate], blocked: true });
    server.put(t, task());
    const items = await makeManager().getQuestions();
    assert.deepEqual(items.map((q) => [q.id, q.task_id, q.task_name]), [['q1', t.id, '1. gather']]);
  });
});

describe('schedules', () => {
  test('create, list, get, update, pause, resume, remove', async () => {
    const { schedules } = makeManager();
    const made = await schedules.create({ type: 'demo.noop', interval_seconds: 300, overlap: 'queue' });
    assert.deepEqual(server.requests.at(-1), {
      method: 'POST', path: '/api/v2/schedules', body: { type: 'demo.noop', interval_seconds: 300, overlap: 'queue' },
      headers: server.requests.at(-1).headers,
    });
    assert.equal(made.overlap, 'queue');
    assert.deepEqual((await schedules.list()).map((s) => s.id), [made.id]);
    assert.equal((await schedules.get(made.id)).interval_seconds, 300);
    assert.equal((await schedules.update(made.id, { name: 'every five' })).name, 'every five');
    assert.equal(server.requests.at(-1).method, 'PATCH');
    assert.equal((await schedules.pause(made.id)).paused, true);
    assert.equal(server.requests.at(-1).path, `/api/v2/schedules/${made.id}/pause`);
    assert.equal((await schedules.resume(made.id)).paused, false);
    assert.equal(await schedules.remove(made.id), undefined);
    assert.equal(server.requests.at(-1).method, 'DELETE');
    assert.deepEqual(await schedules.list(), []);
  });

  test("a refusal is an ApiError; a schedule's tasks are read by trigger_source", async () => {
    const { schedules } = makeManager();
    await assert.rejects(schedules.create({ type: 'demo.noop', cron: '* * * * *', interval_seconds: 5 }),
      (error) => error instanceof ApiError && error.status === 422 && error.code === 'validation_error');
    const fired = task({ trigger: 'scheduled', trigger_source: 'schedule:s/1' });
    server.put(fired, task());
    const page = await schedules.tasks('s/1');
    assert.deepEqual(page.items.map((t) => t.id), [fired.id]);
    assert.match(server.requests.at(-1).path, /trigger_source=schedule%3As%2F1/);
    await assert.rejects(schedules.pause('nope'), (error) => error.status === 404);
  });

  test('how often a schedule fires, for people', () => {
    assert.equal(describeCadence({ cron: '0 3 * * *', timezone: 'Europe/Paris' }), 'cron 0 3 * * * (Europe/Paris)');
    assert.equal(describeCadence({ cron: '0 3 * * *' }), 'cron 0 3 * * * (UTC)');
    assert.equal(describeCadence({ interval_seconds: 300 }), 'every 5 min');
    assert.equal(describeCadence({ interval_seconds: 7200 }), 'every 2 h');
    assert.equal(describeCadence({ interval_seconds: 90 }), 'every 90 s');
    assert.equal(describeCadence({}), '—');
  });
});

describe('the workflow model', () => {
  const states = LIFECYCLE.states.map((s) => s.name);

  test('a tree from a flat list: nested, oldest first, strays under the root', () => {
    const { root, children } = family(2);
    const grandchild = task({ parent_id: children[0].id, root_id: root.id });
    const stray = task({ parent_id: 'not-loaded', root_id: root.id });
    const tree = buildTaskTree([stray, grandchild, children[1], root, children[0]], root.id);
    assert.deepEqual(tree.children.map((n) => n.task.id), [children[0].id, children[1].id, stray.id]);
    assert.deepEqual(tree.children[0].children.map((n) => n.task.id), [grandchild.id]);
    assert.equal(descendantsOf(tree).length, 4);
    assert.equal(buildTaskTree([children[0]], root.id), null);
  });

  test('counts by state, in the lifecycle order', () => {
    const counts = countByState([task({ state: 'completed' }), task(), task({ state: 'completed' })], states);
    assert.deepEqual(Object.entries(counts), [['running', 1], ['completed', 2]]);
    assert.equal(describeCounts(counts), '1 running, 2 completed');
    assert.equal(describeCounts({}), '');
  });

  test('what a blocked task waits for', () => {
    const gather = task({ name: '1. gather', state: 'queued' });
    const done = task({ name: 'done', state: 'completed' });
    const gate = { id: 'q', context: { kind: 'approval' }, choices: ['approve', 'reject'] };
    const build = task({ state: 'queued', depends_on: [gather.id, done.id, 'unknown'], pending_questions: [gate] });
    const known = new Map([[gather.id, gather], [done.id, done]]);
    const blockers = whatBlocks(build, (id) => known.get(id));
    assert.equal(blockers.approval, gate);
    assert.deepEqual(blockers.dependencies.map((d) => d.id), [gather.id, 'unknown']);
    const title = (t) => t.name ?? t.id.slice(0, 8);
    assert.equal(describeBlockers(blockers, title), 'waits for approval and for “1. gather” (queued), “unknown”');
    assert.equal(describeBlockers(whatBlocks(done, () => undefined), title), '');
    assert.deepEqual(dependencyEdges([build]).map((e) => e.from), [gather.id, done.id, 'unknown']);
  });
});

describe('the DAG layout', () => {
  test('longest-path layers', () => {
    // a -> b -> d, a -> d, c -> d: d is in layer 2 (the longest path), not 1.
    const edges = [['a', 'b'], ['b', 'd'], ['a', 'd'], ['c', 'd']].map(([from, to]) => ({ from, to }));
    const layers = longestPathLayers(['a', 'b', 'c', 'd'], edges);
    assert.deepEqual(Object.fromEntries(layers), { a: 0, b: 1, c: 0, d: 2 });
  });

  test('positions: layers left to right, no overlap, edges from right side to left side', () => {
    const edges = [{ from: 'a', to: 'b' }, { from: 'a', to: 'c' }, { from: 'x', to: 'zzz-unknown' }];
    const layout = layoutDag(['a', 'b', 'c', 'x'], edges);
    const [a, b, c] = ['a', 'b', 'c'].map((id) => layout.nodes.get(id));
    assert.ok(b.x > a.x && c.x === b.x && b.y !== c.y);
    assert.equal(layout.edges.length, 2); // the edge to an unknown node is dropped
    const [start, end] = layout.edges[0].points;
    assert.ok(start[0] <= end[0]);
    for (const node of layout.nodes.values()) {
      assert.ok(node.x >= 0 && node.y >= 0 && node.x < layout.width && node.y < layout.height);
    }
  });

  test('a cycle does not hang it', () => {
    const layout = layoutDag(['a', 'b', 'c'], [{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'c', to: 'b' }]);
    assert.equal(layout.nodes.size, 3);
    assert.equal(layout.nodes.get('a').layer, 0);
  });
});
