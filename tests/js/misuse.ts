// Misuses of the packaged TaskStateManager: each line marked MISUSE must fail `tsc --strict`
// (tests/test_task_state_manager_package.py asserts an error on exactly those lines).
import { TaskStateManager } from 'taskstate-client';

const manager = new TaskStateManager({ baseUrl: 'http://127.0.0.1:8000' });

manager.on('taskFinished', () => undefined); // MISUSE: no such event
manager.on('taskCompleted', (task) => task.task_id); // MISUSE: the seed's task_id is `id` here
manager.on('connection', ({ state }) => state === 'open'); // MISUSE: not a connection state
void manager.startTask({ params: { run_mode: 'full' } }); // MISUSE: `type` is required
void manager.startTask({ type: 'agent', priority: 'high' }); // MISUSE: priority is a number
void manager.getJobHistory({ status: 'SUCCESS' }); // MISUSE: Celery's status; ours is `completed`
void manager.getJobHistory({ offset: 20 }); // MISUSE: later pages are reached by cursor
void manager.getJobHistory({ job_type: 'cron' }); // MISUSE: job_type is a trigger
manager.getTask('x').state; // MISUSE: possibly undefined
manager.getTaskStatus(42); // MISUSE: an id is a string
void manager.schedules.create({ type: 'demo.noop', cron: '* * * * *', interval_seconds: 60 }); // MISUSE: one of the two
manager.lifecycle.isTerminal('completed'); // MISUSE: null until read
