// TaskStateManager: the only code that talks to the taskstate API and its WebSocket.
//
// It holds no DOM code, so node's test runner can drive it with fakes of fetch and WebSocket.
// The server is the truth: `initialize()` first reads the transition table and its rules from
// GET /api/v2/states (`lifecycle`: which states are terminal, which calls a state allows), then
// restores every active task from GET /api/v2/tasks/active (never from local storage), follows
// the event stream, reconnects with `since` so that it misses nothing and applies nothing twice
// (transitions are de-duplicated by `seq`), and polls every `pollingFrequency` ms while the
// socket is down. A server that cannot be reached at start is an `error`, and the manager keeps
// trying (polling, reading the table first, and reconnecting) until it answers. A task handed
// out is never changed afterwards: every change makes a new object. Views subscribe with `on`.
//
// Other front ends use it too: it is packaged as `taskstate-client` (package.json, with its
// types in task-state-manager.d.ts, which must follow any change here) and served at the stable
// path /task-state-manager.js. So this file and what it imports hold no UI code.
//
// Events:
//   taskRestored (task)        one per active task found on load
//   noActiveTask ()            the load found no active task
//   restored ({tasks})         the load is done (after the taskRestored events)
//   snapshot ({seq, tasks})    the stream's snapshot (all its parts) was applied: the active
//                              tasks as of `seq`, sent on every connection without `since`
//   taskUpdated (task)         anything about a task changed (state, progress, questions, …)
//   taskProgress (task)        a live progress report was applied
//   transition (event)         a transition {seq, task_id, from, to, at, reason, actor, task}
//   taskCompleted (task)       a task reached `completed`
//   taskError (task)           a task reached `failed`
//   taskCancelled (task)       a task reached `cancelled`
//   taskRemoved ({id})         a tracked task no longer exists (deleted by clean-up)
//   log (line)                 a live log line {task_id, seq, at, level, message}
//   question ({task_id, question})  a question was asked, answered or expired
//   connection ({state, attempt, lastSeq, pollingFrequency})
//                              state: connecting | live | reconnecting | polling | closed
//   poll ({ok})                a polling round finished (views may refresh what they show)
//   error (error)              something went wrong in the background (a failed poll, a bad message)
//   authRequired (error)       the API answered 401: a token is needed (see `token`)

import { ApiClient, ApiError } from './api-client.js';
import { Emitter } from './emitter.js';
import { LifecycleSource } from './lifecycle.js';
import { LiveFeed } from './live-feed.js';
import { Schedules } from './schedules.js';
import { TaskStore } from './task-store.js';
import { TaskUpdates } from './task-updates.js';

export { ApiError };

export const TRIGGERS = Object.freeze(['manual', 'api', 'scheduled']);

export class TaskStateManager extends Emitter {
  /** Milliseconds between polls while the WebSocket is down (TASK_POLLING_FREQUENCY). */
  pollingFrequency = 3000;

  /**
   * An API token (TASKSTATE_AUTH=tokens), or null: sent as `Authorization: Bearer` and as the
   * socket's first message `{"type": "auth", "token"}` (never in a URL, where logs keep it).
   */
  token = null;

  #api;
  #feed;
  #store;
  #updates;
  #lifecycle;
  #schedules;
  #started = false;
  #pollingFromOptions = false;

  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl]  where the API is (default: the page's origin)
   * @param {string} [options.wsUrl]    the event stream's URL (default: derived from baseUrl)
   * @param {number} [options.pollingFrequency]  ms between polls while the socket is down
   * @param {number} [options.reconnectDelay]    first reconnect delay in ms (doubles up to maxReconnectDelay)
   * @param {number} [options.maxReconnectDelay]
   * @param {Function} [options.fetch]
   * @param {Function} [options.WebSocket]
   * @param {Function} [options.setTimeout]
   * @param {Function} [options.clearTimeout]
   * @param {Function} [options.random]  0 <= x < 1, for the reconnect jitter
   */
  constructor(options = {}) {
    super();
    const origin = globalThis.location?.origin ?? 'http://localhost';
    const baseUrl = (options.baseUrl ?? origin).replace(/\/+$/, '');
    const setTimeout = options.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    const clearTimeout = options.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);
    const token = () => this.token;
    const isTerminal = (state) => this.#lifecycle.current.isTerminal(state);
    this.#api = new ApiClient({
      baseUrl, token,
      fetch: options.fetch ?? globalThis.fetch?.bind(globalThis),
      onUnauthorized: (error) => this.emit('authRequired', error),
    });
    this.#lifecycle = new LifecycleSource(this.#api);
    this.#schedules = new Schedules(this.#api);
    this.#store = new TaskStore(isTerminal);
    this.#updates = new TaskUpdates({
      store: this.#store, isTerminal,
      emit: (event, data) => this.emit(event, data),
      readTask: (taskId) => this.#api.task(taskId),
    });
    this.#feed = new LiveFeed({
      stream: {
        url: options.wsUrl ?? `${baseUrl.replace(/^http/, 'ws')}/api/v2/events`,
        WebSocket: options.WebSocket ?? globalThis.WebSocket,
        setTimeout, clearTimeout, token,
        random: options.random ?? Math.random,
        reconnectDelay: options.reconnectDelay ?? 500,
        maxReconnectDelay: options.maxReconnectDelay ?? 5000,
        ready: () => this.#lifecycle.current !== null, // nothing is applied before the table is known
        events: this.#updates,
      },
      every: () => this.pollingFrequency,
      poll: () => this.#poll(),
      polled: (ok) => this.emit('poll', { ok }),
      onState: (state) => this.emit('connection', {
        state, attempt: this.#feed.attempt, lastSeq: this.lastSeq, pollingFrequency: this.pollingFrequency,
      }),
      onError: (error) => this.emit('error', error),
    });
    if (options.pollingFrequency != null) {
      this.pollingFrequency = options.pollingFrequency;
      this.#pollingFromOptions = true;
    }
    if (options.token) this.token = options.token;
  }

  // -- state -------------------------------------------------------------------------------

  /** connecting | live | reconnecting | polling | closed */
  get connectionState() { return this.#feed.state; }

  /** The newest transition `seq` applied (null before the first snapshot or replay). */
  get lastSeq() { return this.#feed.lastSeq; }

  /** How many transitions were dropped because their `seq` had been applied already. */
  get duplicatesDropped() { return this.#feed.duplicates; }

  get isRestored() { return this.#updates.restored; }

  /** The transition table and its rules as the server publishes them (null until read). */
  get lifecycle() { return this.#lifecycle.current; }

  /** Every task known to be active, oldest first. */
  get activeTasks() { return this.lifecycle ? this.#store.active() : []; }

  /** The latest known version of a task (active or recently finished), or undefined. */
  getTask(taskId) { return this.#store.get(taskId); }

  // -- lifecycle ---------------------------------------------------------------------------

  /** Restores the active tasks from the server, then follows the event stream. */
  async initialize() {
    if (this.#started) return this.activeTasks;
    this.#started = true;
    this.#feed.connecting();
    if (!this.#pollingFromOptions) this.pollingFrequency = (await this.#api.pollingFrequency()) ?? this.pollingFrequency;
    let tasks = [];
    try {
      tasks = await this.restoreActiveTask();
    } catch (error) {
      this.emit('error', error);
    }
    if (this.#started) this.#feed.open();
    return tasks;
  }

  /**
   * The lifecycle, read from GET /api/v2/states the first time (see LifecycleSource). Views that
   * need it before a task reaches them wait for this.
   */
  loadLifecycle() { return this.#lifecycle.load(); }

  /**
   * Reads every active task from the server and applies it; emits `taskRestored` for each (or
   * `noActiveTask`), then `restored`. A task that was known to be active but is no longer in the
   * answer has ended while we were not looking: it is read again, so that it shows its real state.
   */
  async restoreActiveTask() {
    const items = await this.#syncActive();
    this.#updates.announceRestored(items);
    return this.activeTasks;
  }

  /** Closes the socket and stops every timer. */
  destroy() {
    this.#started = false;
    this.#feed.close();
  }

  // -- the API -----------------------------------------------------------------------------

  /**
   * Starts a task. `request` is {type, params?, name?, priority?, run_at?, …} as in
   * POST /api/v2/tasks; `trigger` defaults to `manual`.
   */
  startTask(request) {
    return this.#applyAnswer(this.#api.createTask({ trigger: 'manual', ...request }));
  }

  /**
   * Stops a task, as the seed's "stop" means: a task the `stop` call allows (a serving service)
   * is asked to shut down gracefully (POST …/stop); any other is cancelled (POST …/cancel).
   */
  async stopTask(taskId) {
    let task = this.#store.get(taskId);
    if (!task || !this.lifecycle.isTerminal(task.state)) task = await this.getTaskStatus(taskId);
    return this.lifecycle.allows('stop', task.state) ? this.stopService(taskId) : this.cancelTask(taskId);
  }

  /** POST /api/v2/tasks/{id}/cancel: an active task to `cancelled`. */
  cancelTask(taskId) { return this.#applyAnswer(this.#api.call(taskId, 'cancel')); }

  /** POST /api/v2/tasks/{id}/stop: a `serving` task to `stopping`, then `completed`. */
  stopService(taskId) { return this.#applyAnswer(this.#api.call(taskId, 'stop')); }

  /** POST /api/v2/tasks/{id}/retry: a new task like a failed or cancelled one. */
  retryTask(taskId) { return this.#applyAnswer(this.#api.call(taskId, 'retry')); }

  answerQuestion(taskId, questionId, answer) {
    return this.#applyAnswer(this.#api.answer(taskId, questionId, answer));
  }

  /** The task as the server has it now (and applied to what this manager knows). */
  getTaskStatus(taskId) { return this.#applyAnswer(this.#api.task(taskId)); }

  getTransitions(taskId) { return this.#api.transitions(taskId); }

  /** {items, next_after}: the task's log lines after line `after`. */
  getLogs(taskId, after = 0, limit = 1000) { return this.#api.logs(taskId, after, limit); }

  /**
   * History, newest first: {items, next_cursor, total}. Options: `state` (a state or a list),
   * `type`, `trigger`, `created_after`, `created_before` (ISO strings or Dates), `q` (name
   * search), `limit`, `cursor`. The seed's `status` and `job_type` are accepted as aliases.
   */
  getJobHistory(options = {}) { return this.#api.history(options); }

  getTaskTypes() { return this.#api.taskTypes(); }

  getWorkers() { return this.#api.workers(); }

  /** GET /api/v2/insights: `{ window: '6h', interval: '5m', type }` or `{ since, until, … }`. */
  getInsights(query = {}) { return this.#api.insights(query); }

  /** Every pending question of every task (GET /api/v2/questions), with task_id and task_name. */
  getQuestions() { return this.#api.questions(); }

  /** The tree whose top is `rootId` (GET /api/v2/tasks?root_id=), applied, oldest first. */
  getTaskTree(rootId) { return this.#applyAnswer(this.#api.taskTree(rootId)); }

  /** The tasks the job of `parentId` spawned (GET /api/v2/tasks?parent_id=), applied. */
  getChildren(parentId) { return this.#applyAnswer(this.#api.childrenOf(parentId)); }

  /** The schedules (CONTRACT §6): list, get, create, update, pause, resume, remove. */
  get schedules() { return this.#schedules; }

  /** Emergency reset: every active task ends and every job stops. Answers how many were reset. */
  async resetAgentState() {
    const body = await this.#api.reset();
    // The transitions arrive over the socket; read the truth now as well, in case it is down.
    try {
      await this.#syncActive();
    } catch (error) {
      this.emit('error', error);
    }
    return body.reset;
  }

  // -- applying what the server says -------------------------------------------------------

  /** Applies the task (or the tasks) an API call answered, once the table is known. */
  async #applyAnswer(answer) {
    const [body] = await Promise.all([answer, this.loadLifecycle()]);
    return Array.isArray(body) ? body.map((task) => this.#updates.apply(task)) : this.#updates.apply(body);
  }

  /** GET /api/v2/tasks/active, applied (the table is read first if it is not known yet). */
  async #syncActive() {
    await this.loadLifecycle();
    const body = await this.#api.activeTasks();
    // Should the server say which `seq` the list includes, the socket can start from there.
    this.#feed.startFrom(body?.seq);
    const items = Array.isArray(body?.items) ? body.items : [];
    await this.#updates.applyActiveList(items);
    return items;
  }

  // -- polling while the event stream is down ----------------------------------------------

  /** One round: answers whether the server was reached. */
  async #poll() {
    try {
      const items = await this.#syncActive();
      if (!this.#updates.restored) this.#updates.announceRestored(items);
      return true;
    } catch (error) {
      this.emit('error', error);
      return false;
    }
  }
}
