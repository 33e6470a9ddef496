// TaskStore: the tasks this page knows, by id, each the latest version it has seen.
//
// A task held here is never changed: every change puts a new, frozen object in its place, so
// a view that holds a task (or compares it with the one it showed) sees a consistent version.
// Its map's order is the order of last change; it keeps at most KEEP_FINISHED finished tasks.

const KEEP_FINISHED = 500;

function timeOf(task) {
  const t = Date.parse(task?.updated_at ?? '');
  return Number.isNaN(t) ? -Infinity : t;
}

export class TaskStore {
  #tasks = new Map();
  #isTerminal;

  /** @param {(state: string) => boolean} isTerminal  the lifecycle's answer */
  constructor(isTerminal) {
    this.#isTerminal = isTerminal;
  }

  get(taskId) {
    return this.#tasks.get(taskId);
  }

  delete(taskId) {
    return this.#tasks.delete(taskId);
  }

  /** Every task not in a terminal state, oldest first. */
  active() {
    return [...this.#tasks.values()]
      .filter((t) => !this.#isTerminal(t.state))
      .sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
  }

  /**
   * Offers a full copy of a task, as the server answered it. Terminal states are final: an
   * older, non-terminal copy never replaces a terminal one, and a copy older than the one held
   * (by `updated_at`) is refused. Answers {previous, task, refused}: `task` is the one held now.
   */
  offer(copy) {
    const previous = this.#tasks.get(copy.id);
    if (previous && (
      (this.#isTerminal(previous.state) && !this.#isTerminal(copy.state)) || timeOf(copy) < timeOf(previous)
    )) {
      return { previous, task: previous, refused: true };
    }
    return { previous, task: this.#replace(copy.id, copy), refused: false };
  }

  /** A live change of some fields (progress, questions): answers the new version, or undefined. */
  patch(taskId, fields) {
    const previous = this.#tasks.get(taskId);
    return previous ? this.#replace(taskId, { ...previous, ...fields }) : undefined;
  }

  /** The one way a task changes here: a new frozen object takes the old one's place. */
  #replace(taskId, fields) {
    const next = Object.freeze({ ...fields });
    this.#tasks.delete(taskId); // re-insert: the map's order is the order of last change
    this.#tasks.set(taskId, next);
    this.#prune();
    return next;
  }

  #prune() {
    let finished = 0;
    for (const task of this.#tasks.values()) if (this.#isTerminal(task.state)) finished += 1;
    for (const [id, task] of this.#tasks) {
      if (finished <= KEEP_FINISHED) break;
      if (this.#isTerminal(task.state)) {
        this.#tasks.delete(id);
        finished -= 1;
      }
    }
  }
}
