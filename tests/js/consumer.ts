// A typed consumer of the packaged TaskStateManager, as a team's own front end would write it.
// tests/test_task_state_manager_package.py compiles it with `tsc --strict`: it must type-check.
import {
  ApiError,
  TRIGGERS,
  TaskStateManager,
  type HistoryOptions,
  type Task,
  type TaskPage,
  type TaskState,
  type TaskStateEvents,
  type Trigger,
} from 'taskstate-client';

const manager = new TaskStateManager({
  baseUrl: 'http://127.0.0.1:8000',
  pollingFrequency: 3000,
  fetch: globalThis.fetch.bind(globalThis), // the DOM's own types fit the options
  WebSocket: globalThis.WebSocket,
});
manager.pollingFrequency = 5000;
manager.token = null;

const shown = new Map<string, { state: TaskState; progress: number }>();
function show(task: Task): void {
  shown.set(task.id, { state: task.state, progress: task.progress });
}

const stop: () => void = manager.on('taskRestored', show);
manager.on('taskProgress', (task) => show(task));
manager.on('taskCompleted', (task) => console.log(`${task.name} done in ${task.duration_seconds ?? 0}s`));
manager.on('taskError', (task) => console.error(task.error ?? 'failed', task.error_type));
manager.on('noActiveTask', () => shown.clear());
manager.on('restored', ({ tasks }) => tasks.forEach(show));
manager.on('transition', (event) => {
  const from: TaskState | null = event.from;
  console.log(event.seq, from, '->', event.to, event.task?.progress);
});
manager.on('connection', ({ state, lastSeq }) => console.log(state, lastSeq ?? 'no seq yet'));
manager.on('question', ({ task_id, question }) => console.log(task_id, question.question, question.choices?.length));
manager.on('authRequired', (error) => console.log(error.status, error.code));
stop();

const onError = (error: TaskStateEvents['error']): void => console.error(error.message);
manager.on('error', onError);
manager.off('error', onError);

async function run(): Promise<void> {
  const active: Task[] = await manager.initialize();
  const task = await manager.startTask({ type: 'demo.sleep', params: { seconds: 1, steps: 2 }, priority: 5 });
  const again: Task | undefined = manager.getTask(task.id);
  const trigger: Trigger = TRIGGERS[0];
  const options: HistoryOptions = { limit: 20, offset: 0, job_type: trigger, status: ['completed', 'failed'] };
  const page: TaskPage = await manager.getJobHistory(options);
  const names: string[] = page.items.map((job) => `${job.name}: ${job.state}`);
  const next = page.next_cursor ? await manager.getJobHistory({ ...options, cursor: page.next_cursor }) : page;
  const reset: number = await manager.resetAgentState();
  const lifecycle = await manager.loadLifecycle();
  const offered = lifecycle.actions(task).cancel;
  const terminal: boolean = lifecycle.isTerminal(task.state) && lifecycle.allows('retry', 'failed');
  const logs = await manager.getLogs(task.id, 0, 100);
  const levels = logs.items.map((line) => line.level);
  const schedule = await manager.schedules.create({ type: 'demo.noop', interval_seconds: 60, overlap: 'skip' });
  await manager.schedules.pause(schedule.id);
  console.log(active.length, again?.state, names, next.total, reset, offered, terminal, levels, manager.connectionState);
  try {
    await manager.cancelTask(task.id);
  } catch (error) {
    if (error instanceof ApiError && error.code === 'invalid_transition') console.log(error.status, error.detail);
  }
  manager.destroy();
}

void run();
