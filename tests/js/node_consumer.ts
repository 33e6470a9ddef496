// A consumer without the DOM's types (a node script, or a library with `lib: ["es2022"]`):
// the declarations must not need them. Compiled by tsc --strict with `--lib es2022` only.
import { TaskStateManager, type Task } from 'taskstate-client';

const manager = new TaskStateManager({ baseUrl: 'http://127.0.0.1:8000', reconnectDelay: 200 });
const finished: Task[] = [];
manager.on('taskCompleted', (task) => finished.push(task));
manager.on('error', (error) => finished.length === 0 && error.message.length > 0);

export async function runOne(type: string): Promise<Task> {
  await manager.initialize();
  const task = await manager.startTask({ type, params: { seconds: 1 } });
  return manager.getTask(task.id) ?? task;
}
