// Lifecycle: the task lifecycle as the server publishes it at GET /api/v2/states (CONTRACT
// §1): the states in order, which are terminal, where each may go, and in which states each
// call (cancel, stop, retry) is allowed. The UI asks this instead of encoding the table again.

export class Lifecycle {
  #states;
  #terminal;
  #transitions;
  #calls;
  #repeats;

  /** Reads the lifecycle from the server (`api` is an ApiClient). */
  static async read(api) {
    return new Lifecycle(await api.states());
  }

  /** `body` is the answer of GET /api/v2/states: {states, transitions, calls, reset}. */
  constructor(body) {
    const states = Array.isArray(body?.states) ? body.states : [];
    if (!states.length || !states.every((s) => typeof s?.name === 'string')) {
      throw new TypeError('GET /api/v2/states answered no list of states');
    }
    this.#states = Object.freeze(states.map((s) => s.name));
    this.#terminal = Object.freeze(states.filter((s) => s.terminal === true).map((s) => s.name));
    this.#transitions = new Map(this.#states.map((s) => [s, listOf(body.transitions?.[s])]));
    this.#calls = new Map(Object.entries(body.calls ?? {}).map(([call, allowed]) => [call, listOf(allowed)]));
    this.#repeats = new Map([...this.#calls].map(([call, allowed]) => [call, this.#repeatState(allowed)]));
  }

  /** Every state, in the contract's order. */
  get states() { return this.#states; }

  get terminalStates() { return this.#terminal; }

  /** The states that are not terminal, in order. */
  get activeStates() { return this.#states.filter((s) => !this.#terminal.includes(s)); }

  isTerminal(state) {
    return this.#terminal.includes(state);
  }

  canTransition(from, to) {
    return this.#transitions.get(from)?.includes(to) ?? false;
  }

  /** Whether the server accepts `call` (cancel, stop, retry) for a task in `state`. */
  allows(call, state) {
    return this.#calls.get(call)?.includes(state) ?? false;
  }

  /**
   * Which calls to offer for a task: {cancel, stop, retry, …}, one boolean per call the server
   * names. A call is offered where it is allowed, except in the state it leads to, where it
   * would only answer the task again (a cancelled task is not offered "cancel").
   */
  actions(task) {
    const state = task?.state;
    const offered = {};
    for (const call of this.#calls.keys()) {
      offered[call] = Boolean(state) && this.allows(call, state) && this.#repeats.get(call) !== state;
    }
    return offered;
  }

  /**
   * The state a call leads to, as far as the table shows it: the one of its allowed states
   * that each of the others can move to (cancel: cancelled, stop: stopping). None for a call
   * that makes a new task instead (retry).
   */
  #repeatState(allowed) {
    if (allowed.length < 2) return undefined;
    return allowed.find((target) => allowed.every((s) => s === target || this.canTransition(s, target)));
  }
}

/** The lifecycle as read once from the server: a read in flight is shared; a failed one is
 * tried again by the next caller. */
export class LifecycleSource {
  #api;
  #read = null;

  /** The lifecycle once read, or null. */
  current = null;

  constructor(api) {
    this.#api = api;
  }

  load() {
    this.#read ??= Lifecycle.read(this.#api).then(
      (lifecycle) => { this.current = lifecycle; return lifecycle; },
      (error) => { this.#read = null; throw error; },
    );
    return this.#read;
  }
}

function listOf(value) {
  return Object.freeze(Array.isArray(value) ? value.filter((s) => typeof s === 'string') : []);
}
