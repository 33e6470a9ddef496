// Seed 000's own usage examples (its "Frontend Integration", "Usage Examples" and
// "Troubleshooting" blocks), run against a live taskstate server through the packaged
// TaskStateManager, imported as a user's project imports it: `from 'taskstate-client'`.
//
// tests/test_task_state_manager_package.py installs the package into a fresh project, starts
// the server (SQLite, with an `agent` job that takes the seed's preferences) and runs this
// file with `node --test`, TASKSTATE_URL naming the server. Nothing here is faked.
//
// The seed's method and event names are the manager's own. Where the seed's examples differ
// from taskstate, the line is adapted and its seed wording kept beside it (`// seed: …`):
//   - startTask takes POST /api/v2/tasks's body, so the preferences go in `params` with a type;
//   - a task's id is `id` (seed: task_id), its state `state` (seed: status) in the contract's
//     words (`completed`, seed: Celery's SUCCESS), its name `name` (seed: human_readable_name);
//   - a history page is {items, next_cursor, total} of tasks (seed: {jobs: [{task}], total_count}).
// The seed's `window.taskStateManager` is kept: `window` is node's globalThis here.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TaskStateManager } from 'taskstate-client';

const baseUrl = process.env.TASKSTATE_URL;
assert.ok(baseUrl, 'TASKSTATE_URL must name the live server');
/** How many tasks the examples start at once. */
const AT_ONCE = Number(process.env.AT_ONCE ?? 6);
const WAIT_MS = 30_000;

globalThis.window = globalThis;

/** What the examples print, captured (console.log and console.error of this test only). */
function capture(t) {
  const lines = [];
  for (const method of ['log', 'error']) {
    t.mock.method(console, method, (...args) => lines.push(args.map(String).join(' ')));
  }
  return lines;
}

/** Resolves once `check()` answers true; rejects, saying `what`, after WAIT_MS. */
async function eventually(what, check) {
  const deadline = Date.now() + WAIT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still not ${what} after ${WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The ids an example printed after `prefix`. */
function idsAfter(lines, prefix) {
  return lines.filter((line) => line.startsWith(prefix)).map((line) => line.slice(prefix.length).trim());
}

/** What the page's listeners heard, by event, as task ids. */
const heard = { taskProgress: [], taskCompleted: [], taskError: [], taskCancelled: [] };
const managers = [];

after(() => {
  for (const manager of managers) manager.destroy();
});

test('page load on an idle server: noActiveTask (seed: Frontend Integration §1)', async (t) => {
  const printed = capture(t);
  window.taskStateManager = new TaskStateManager({ baseUrl });
  managers.push(window.taskStateManager);
  // seed: Frontend Configuration
  window.taskStateManager.pollingFrequency = 3000; // 3 seconds

  // On page load, automatically restore active task state
  window.taskStateManager.on('taskRestored', (task) => {
    console.log('Task state restored:', task.id); // seed: task.task_id
    // All UI components automatically updated
  });

  window.taskStateManager.on('noActiveTask', () => {
    console.log('No active task - showing idle state');
  });

  await window.taskStateManager.initialize();
  assert.deepEqual(printed, ['No active task - showing idle state']);
  assert.equal(window.taskStateManager.pollingFrequency, 3000);
  await eventually('live', () => window.taskStateManager.connectionState === 'live');
});

test(`${AT_ONCE} tasks started at once with full tracking, each seen to finish (seed: Usage Examples §1, Frontend Integration §2-3)`, async (t) => {
  const printed = capture(t);
  // Progress updates
  window.taskStateManager.on('taskProgress', (status) => {
    // Automatically updates progress bars, phase displays, etc.
    heard.taskProgress.push(status.id);
  });

  // Task completion
  window.taskStateManager.on('taskCompleted', (status) => {
    // Show completion notification
    // Update UI to completed state
    heard.taskCompleted.push(status.id);
  });

  // Task errors
  window.taskStateManager.on('taskError', (error) => {
    // Show error notification
    // Log error details
    heard.taskError.push(error.id);
    console.error('Task failed:', error.error);
  });

  window.taskStateManager.on('taskCancelled', (task) => heard.taskCancelled.push(task.id));

  async function startTaskWithFullTracking(run_mode = 'full') {
    const preferences = {
      run_mode, // seed: 'full'
      skip_fetch_bookmarks: false,
      force_recache_tweets: true,
    };

    try {
      const task = await window.taskStateManager.startTask({ type: 'agent', params: preferences }); // seed: startTask(preferences)
      console.log('Task started:', task.id); // seed: task.task_id
    } catch (error) {
      console.error('Failed to start task:', error);
    }
  }

  await Promise.all([
    ...Array.from({ length: AT_ONCE }, () => startTaskWithFullTracking()),
    startTaskWithFullTracking('broken'),
  ]);
  const started = idsAfter(printed, 'Task started:');
  assert.equal(new Set(started).size, AT_ONCE + 1, printed.join('\n'));

  await eventually(`all ${AT_ONCE + 1} finished`, () => heard.taskCompleted.length + heard.taskError.length >= AT_ONCE + 1);
  assert.equal(heard.taskCompleted.length, AT_ONCE, 'each full run completed, once');
  assert.equal(heard.taskError.length, 1, 'the broken run failed, once');
  assert.deepEqual(new Set([...heard.taskCompleted, ...heard.taskError]), new Set(started));
  for (const id of heard.taskCompleted) {
    const task = window.taskStateManager.getTask(id);
    assert.equal(task.state, 'completed');
    assert.equal(task.progress, 100);
    assert.equal(task.trigger, 'manual');
    assert.deepEqual(task.params, { run_mode: 'full', skip_fetch_bookmarks: false, force_recache_tweets: true });
    assert.ok(heard.taskProgress.includes(id), `no taskProgress for ${id}`);
  }
  const failed = window.taskStateManager.getTask(heard.taskError[0]);
  assert.equal(failed.state, 'failed');
  assert.ok(printed.includes(`Task failed: ${failed.error}`), printed.join('\n'));
  assert.match(failed.error, /bookmarks service/);
  assert.deepEqual(window.taskStateManager.activeTasks, []);
});

test('job history with limit, offset, job_type and status (seed: Usage Examples §2)', async (t) => {
  const printed = capture(t);
  const history = await window.taskStateManager.getJobHistory({
    limit: 20,
    offset: 0,
    job_type: 'manual',
    status: 'completed', // seed: 'SUCCESS'
  });

  console.log(`Found ${history.total} jobs`); // seed: history.total_count
  history.items.forEach((job) => { // seed: history.jobs
    console.log(`${job.name}: ${job.state}`); // seed: job.task.human_readable_name, job.task.status
  });

  assert.equal(printed[0], `Found ${AT_ONCE} jobs`);
  assert.equal(printed.length, 1 + AT_ONCE);
  for (const line of printed.slice(1)) assert.match(line, /^agent.*: completed$/);
  assert.deepEqual(new Set(history.items.map((job) => job.id)), new Set(heard.taskCompleted));

  const failures = await window.taskStateManager.getJobHistory({ limit: 20, offset: 0, job_type: 'manual', status: 'failed' });
  assert.deepEqual(failures.items.map((job) => job.id), heard.taskError);
  const scheduled = await window.taskStateManager.getJobHistory({ job_type: 'scheduled', status: 'completed' });
  assert.equal(scheduled.total, 0);
  const firstTwo = await window.taskStateManager.getJobHistory({ limit: 2, offset: 0, status: 'completed' });
  assert.equal(firstTwo.items.length, 2);
  const nextTwo = await window.taskStateManager.getJobHistory({ limit: 2, cursor: firstTwo.next_cursor, status: 'completed' });
  assert.equal(nextTwo.items.length, 2);
  assert.ok(!nextTwo.items.some((job) => firstTwo.items.some((seen) => seen.id === job.id)), 'pages overlap');
  // A later page by offset cannot be had from a cursor-paged API: said at once, not ignored.
  await assert.rejects(window.taskStateManager.getJobHistory({ limit: 20, offset: 20 }), RangeError);
  // Celery's status names are not taskstate's states: the server refuses them, in the contract's shape.
  await assert.rejects(window.taskStateManager.getJobHistory({ status: 'SUCCESS' }), (error) => {
    assert.equal(error.name, 'ApiError');
    assert.equal(error.status, 422);
    assert.equal(error.code, 'validation_error');
    return true;
  });
});

test('a returning user sees every running task restored (seed: State Recovery, Troubleshooting §2)', async (t) => {
  const printed = capture(t);
  const running = [];
  for (let i = 0; i < 3; i += 1) {
    running.push((await window.taskStateManager.startTask({ type: 'agent', params: { run_mode: 'endless' } })).id);
  }
  await eventually('running', () => running.every((id) => window.taskStateManager.getTask(id)?.state === 'running'));

  // The same page, loaded again: a new manager that knows nothing but the server.
  const returning = new TaskStateManager({ baseUrl });
  managers.push(returning);
  returning.on('taskRestored', (task) => {
    console.log('Task state restored:', task.id); // seed: task.task_id
  });
  returning.on('noActiveTask', () => {
    console.log('No active task - showing idle state');
  });
  returning.on('taskCancelled', (task) => heard.taskCancelled.push(`returning:${task.id}`));
  await returning.initialize();
  assert.deepEqual(idsAfter(printed, 'Task state restored:'), running);
  assert.deepEqual(returning.activeTasks.map((task) => task.state), ['running', 'running', 'running']);

  // Check if task state manager is initialized
  console.log('Task State Manager:', returning);
  // Manually trigger restoration
  await returning.restoreActiveTask();
  assert.deepEqual(idsAfter(printed, 'Task state restored:'), [...running, ...running]);
  await eventually('live', () => returning.connectionState === 'live');
});

test('emergency recovery ends every running task, seen by every page (seed: Usage Examples §3, Troubleshooting §1)', async (t) => {
  const printed = capture(t);
  const running = window.taskStateManager.activeTasks.map((task) => task.id);
  assert.equal(running.length, 3);
  const taskId = running[0];

  // Check actual task status
  const status = await window.taskStateManager.getTaskStatus(taskId);
  console.log('Actual status:', status.state); // seed: status (the whole object)
  assert.equal(printed.at(-1), 'Actual status: running');

  // If the UI gets stuck in a running state
  try {
    await window.taskStateManager.resetAgentState();
    console.log('Agent state reset successfully');
  } catch (error) {
    console.error('Failed to reset agent state:', error);
  }

  assert.equal(printed.at(-1), 'Agent state reset successfully');
  assert.deepEqual(window.taskStateManager.activeTasks, []);
  for (const id of running) assert.equal(window.taskStateManager.getTask(id).state, 'cancelled');
  // The other page hears of it over its own WebSocket.
  await eventually('cancelled on the returning page', () => running.every((id) => heard.taskCancelled.includes(`returning:${id}`)));
  const returning = managers[1];
  assert.deepEqual(returning.activeTasks, []);
  assert.equal(returning.getTask(taskId).reason, 'reset');
});
