// TaskUpdates: what the server says about tasks (an API answer, a list of the active tasks, a
// snapshot, a live event), applied to the TaskStore and announced as the manager's events.
// Every change goes one way: a full copy is offered to the store, or live fields are patched;
// either makes a new task object.

import { ApiError } from './api-client.js';

// A waiting parent's progress also says which children it still waits for (CONTRACT §6).
const PROGRESS_FIELDS = ['progress', 'phase', 'message', 'items_processed', 'items_failed', 'waiting_for'];
const ENDINGS = { completed: 'taskCompleted', failed: 'taskError', cancelled: 'taskCancelled' };

export class TaskUpdates {
  #store;
  #isTerminal;
  #emit;
  #readTask;
  #restored = false;

  /**
   * @param {object} options
   * @param {import('./task-store.js').TaskStore} options.store
   * @param {(state: string) => boolean} options.isTerminal  the lifecycle's answer
   * @param {(event: string, data?: unknown) => void} options.emit
   * @param {(taskId: string) => Promise<object>} options.readTask  GET the task (an ApiError when it is gone)
   */
  constructor({ store, isTerminal, emit, readTask }) {
    this.#store = store;
    this.#isTerminal = isTerminal;
    this.#emit = emit;
    this.#readTask = readTask;
  }

  /** Whether a first complete list of the active tasks has been applied and announced. */
  get restored() { return this.#restored; }

  /**
   * Applies a full task object (see TaskStore.offer) and answers the version held. A task seen
   * ending is announced; one merely read in its final state (a page of an old task) is not.
   */
  apply(task, { fromEvent = false } = {}) {
    if (!task || typeof task !== 'object' || !task.id) return task;
    const { previous, task: next, refused } = this.#store.offer(task);
    if (refused) return next;
    const ending = ENDINGS[next.state];
    if (ending && this.#isTerminal(next.state) && (previous ? !this.#isTerminal(previous.state) : fromEvent)) {
      this.#emit(ending, next);
    }
    this.#emit('taskUpdated', next);
    return next;
  }

  /**
   * Applies a complete list of the active tasks. Known tasks missing from it have ended (or
   * were deleted): each is read again so that it shows its real, final state.
   */
  async applyActiveList(items) {
    for (const task of items) this.apply(task);
    const present = new Set(items.map((task) => task.id));
    const missing = this.#store.active().filter((t) => !present.has(t.id));
    await Promise.all(missing.map((t) => this.#refresh(t.id)));
  }

  /** Emits `taskRestored` for each task of the list (or `noActiveTask`), then `restored`. */
  announceRestored(items) {
    this.#restored = true;
    for (const task of items) this.#emit('taskRestored', this.#store.get(task.id) ?? task);
    if (items.length === 0) this.#emit('noActiveTask');
    this.#emit('restored', { tasks: this.#store.active() });
  }

  /** The stream's snapshot, whole: the active tasks as of `seq`. */
  snapshot(items, seq) {
    this.applyActiveList(items).catch((error) => this.#emit('error', error));
    if (!this.#restored) this.announceRestored(items);
    this.#emit('snapshot', { seq, tasks: items.map((task) => this.#store.get(task.id) ?? task) });
  }

  transition(event) {
    const task = event.task ? this.apply(event.task, { fromEvent: true }) : this.#store.get(event.task_id);
    this.#emit('transition', { ...event, task });
  }

  /**
   * A transition seen already: no second `transition`. Its task copy is still offered, and the
   * store keeps whichever copy is newer, so even a server whose seq went backwards (a new
   * database) cannot leave a stale state on screen.
   */
  duplicate(event) {
    if (event.task) this.apply(event.task);
  }

  log(event) {
    this.#emit('log', event);
  }

  progress(event) {
    const task = this.#store.get(event.task_id);
    if (!task || this.#isTerminal(task.state)) return;
    const fields = Object.fromEntries(PROGRESS_FIELDS.filter((key) => key in event).map((key) => [key, event[key]]));
    const next = this.#store.patch(task.id, fields);
    this.#emit('taskProgress', next);
    this.#emit('taskUpdated', next);
  }

  question(event) {
    const question = event.question ?? {};
    const task = this.#store.get(event.task_id);
    if (task) {
      const others = (task.pending_questions ?? []).filter((q) => q.id !== question.id);
      if (question.status === 'pending' && !this.#isTerminal(task.state)) {
        const { status: _status, answer: _answer, ...pending } = question;
        others.push(pending);
      }
      this.#emit('taskUpdated', this.#store.patch(task.id, {
        pending_questions: Object.freeze(others), waiting_for_input: others.length > 0,
      }));
    }
    this.#emit('question', { task_id: event.task_id, question });
  }

  async #refresh(taskId) {
    try {
      return this.apply(await this.#readTask(taskId));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.#store.delete(taskId);
        this.#emit('taskRemoved', { id: taskId });
      } else {
        this.#emit('error', error);
      }
      return undefined;
    }
  }
}
