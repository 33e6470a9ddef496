// TaskStateManager: the only code that talks to the taskstate API and its WebSocket.
//
// It holds no DOM code, so node's test runner can drive it with fakes of fetch and WebSocket.
// The server is the truth: on load it restores every active task from GET /api/v2/tasks/active
// (never from local storage), follows the event stream, reconnects with `since` so that it
// misses nothing and applies nothing twice (transitions are de-duplicated by `seq`), and polls
// every `pollingFrequency` ms while the socket is down. Views subscribe with `on(event, cb)`.
//
// Events:
//   taskRestored (task)        one per active task found on load
//   noActiveTask ()            the load found no active task
//   restored ({tasks})         the load is done (after the taskRestored events)
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

export const STATES = Object.freeze([
  'queued', 'preparing', 'running', 'collecting', 'completed',
  'failed', 'cancelled', 'orphaned', 'serving', 'stopping',
]);

export const TERMINAL_STATES = Object.freeze(['completed', 'failed', 'cancelled']);

export const TRIGGERS = Object.freeze(['manual', 'api', 'scheduled']);

export function isTerminal(state) {
  return TERMINAL_STATES.includes(state);
}

/** Which actions the transition table allows for a task (CONTRACT §1). */
export function allowedActions(task) {
  const state = task?.state;
  return {
    cancel: Boolean(state) && !isTerminal(state) && state !== 'stopping' && state !== 'orphaned',
    stop: state === 'serving',
    retry: state === 'failed' || state === 'cancelled',
  };
}

/** An error answer of the API: `status`, the stable `code` and the human `detail`. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const detail = body && typeof body === 'object' ? body.detail : undefined;
    let text = typeof detail === 'string' ? detail : (detail ? JSON.stringify(detail) : fallback);
    const errors = Array.isArray(body?.errors) ? body.errors : [];
    const specifics = errors
      .map((e) => {
        const loc = (Array.isArray(e?.loc) ? e.loc : []).filter((part) => part !== 'body').join('.');
        return e?.msg ? (loc ? `${loc}: ${e.msg}` : e.msg) : '';
      })
      .filter((m) => m && !String(text).includes(m));
    if (specifics.length) text = `${text} (${specifics.join('; ')})`;
    super(text || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = body && typeof body === 'object' ? body.error : undefined;
    this.detail = detail;
    this.body = body;
  }
}

const KEEP_FINISHED = 500;

function timeOf(task) {
  const t = Date.parse(task?.updated_at ?? '');
  return Number.isNaN(t) ? -Infinity : t;
}

export class TaskStateManager {
  /** Milliseconds between polls while the WebSocket is down (TASK_POLLING_FREQUENCY). */
  pollingFrequency = 3000;

  /**
   * An API token (TASKSTATE_AUTH=tokens), or null: sent as `Authorization: Bearer` and as the
   * socket's first message `{"type": "auth", "token"}` (never in a URL, where logs keep it).
   */
  token = null;

  #baseUrl;
  #wsUrl;
  #fetch;
  #WebSocket;
  #setTimeout;
  #clearTimeout;
  #random;
  #initialDelay;
  #maxDelay;

  #listeners = new Map();
  #tasks = new Map();
  #lastSeq = null;
  #socket = null;
  #socketLive = false;
  #connection = 'closed';
  #attempt = 0;
  #reconnectTimer = null;
  #pollTimer = null;
  #polling = false;
  #resyncRequested = false;
  #snapshotParts = null; // {seq, parts, next, tasks} while a snapshot arrives in parts
  #started = false;
  #restored = false;
  #duplicates = 0;
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
    const origin = globalThis.location?.origin ?? 'http://localhost';
    this.#baseUrl = (options.baseUrl ?? origin).replace(/\/+$/, '');
    this.#wsUrl = options.wsUrl ?? `${this.#baseUrl.replace(/^http/, 'ws')}/api/v2/events`;
    this.#fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#setTimeout = options.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this.#clearTimeout = options.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);
    this.#random = options.random ?? Math.random;
    this.#initialDelay = options.reconnectDelay ?? 500;
    this.#maxDelay = options.maxReconnectDelay ?? 5000;
    if (options.pollingFrequency != null) {
      this.pollingFrequency = options.pollingFrequency;
      this.#pollingFromOptions = true;
    }
    if (options.token) this.token = options.token;
  }

  // -- state -------------------------------------------------------------------------------

  /** connecting | live | reconnecting | polling | closed */
  get connectionState() { return this.#connection; }

  /** The newest transition `seq` applied (null before the first snapshot or replay). */
  get lastSeq() { return this.#lastSeq; }

  /** How many transitions were dropped because their `seq` had been applied already. */
  get duplicatesDropped() { return this.#duplicates; }

  get isRestored() { return this.#restored; }

  /** Every task known to be active, oldest first. */
  get activeTasks() {
    return [...this.#tasks.values()]
      .filter((t) => !isTerminal(t.state))
      .sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
  }

  /** The latest known version of a task (active or recently finished), or undefined. */
  getTask(taskId) { return this.#tasks.get(taskId); }

  // -- events ------------------------------------------------------------------------------

  /** Adds a listener; answers a function that removes it. */
  on(event, callback) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(callback);
    return () => this.off(event, callback);
  }

  off(event, callback) {
    this.#listeners.get(event)?.delete(callback);
  }

  emit(event, data) {
    for (const callback of [...(this.#listeners.get(event) ?? [])]) {
      try {
        callback(data);
      } catch (error) {
        // One broken view must not stop the others from hearing the event.
        globalThis.console?.error?.(`taskstate: a '${event}' listener failed`, error);
      }
    }
  }

  // -- lifecycle ---------------------------------------------------------------------------

  /** Restores the active tasks from the server, then follows the event stream. */
  async initialize() {
    if (this.#started) return this.activeTasks;
    this.#started = true;
    this.#setConnection('connecting');
    if (!this.#pollingFromOptions) await this.#readServerConfig();
    let tasks = [];
    try {
      tasks = await this.restoreActiveTask();
    } catch (error) {
      this.emit('error', error);
    }
    if (this.#started) this.#connect();
    return tasks;
  }

  /** TASK_POLLING_FREQUENCY, as the server is configured (GET /api/v2/config). */
  async #readServerConfig() {
    try {
      const config = await this.#request('GET', '/api/v2/config');
      const value = Number(config?.task_polling_frequency);
      if (Number.isFinite(value) && value >= 100) this.pollingFrequency = value;
    } catch {
      // An older server, or a transient error: keep the default.
    }
  }

  /**
   * Reads every active task from the server and applies it; emits `taskRestored` for each (or
   * `noActiveTask`), then `restored`. A task that was known to be active but is no longer in the
   * answer has ended while we were not looking: it is read again, so that it shows its real state.
   */
  async restoreActiveTask() {
    const body = await this.#request('GET', '/api/v2/tasks/active');
    const items = Array.isArray(body?.items) ? body.items : [];
    // Should the server say which `seq` the list includes, the socket can start from there.
    if (typeof body?.seq === 'number' && this.#lastSeq === null) this.#lastSeq = body.seq;
    await this.#applyActiveList(items);
    for (const task of items) this.emit('taskRestored', this.#tasks.get(task.id) ?? task);
    if (items.length === 0) this.emit('noActiveTask');
    this.#restored = true;
    this.emit('restored', { tasks: this.activeTasks });
    return this.activeTasks;
  }

  /** Closes the socket and stops every timer. */
  destroy() {
    this.#started = false;
    this.#clearReconnect();
    this.#stopPolling();
    const socket = this.#socket;
    this.#socket = null;
    this.#socketLive = false;
    this.#snapshotParts = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try { socket.close(); } catch { /* already closed */ }
    }
    this.#setConnection('closed');
  }

  // -- the API -----------------------------------------------------------------------------

  /**
   * Starts a task. `request` is {type, params?, name?, priority?, run_at?, …} as in
   * POST /api/v2/tasks; `trigger` defaults to `manual`.
   */
  async startTask(request) {
    const body = { trigger: 'manual', ...request };
    const task = await this.#request('POST', '/api/v2/tasks', body);
    return this.#apply(task);
  }

  /**
   * Stops a task, as the seed's "stop" means: a serving service is asked to shut down
   * gracefully (POST …/stop); any other active task is cancelled (POST …/cancel).
   */
  async stopTask(taskId) {
    let task = this.#tasks.get(taskId);
    if (!task || !isTerminal(task.state)) task = await this.getTaskStatus(taskId);
    if (task.state === 'serving' || task.state === 'stopping') return this.stopService(taskId);
    return this.cancelTask(taskId);
  }

  /** POST /api/v2/tasks/{id}/cancel: any non-terminal task to `cancelled`. */
  async cancelTask(taskId) {
    return this.#apply(await this.#request('POST', `/api/v2/tasks/${enc(taskId)}/cancel`));
  }

  /** POST /api/v2/tasks/{id}/stop: a `serving` task to `stopping`, then `completed`. */
  async stopService(taskId) {
    return this.#apply(await this.#request('POST', `/api/v2/tasks/${enc(taskId)}/stop`));
  }

  /** POST /api/v2/tasks/{id}/retry: a new task like a failed or cancelled one. */
  async retryTask(taskId) {
    return this.#apply(await this.#request('POST', `/api/v2/tasks/${enc(taskId)}/retry`));
  }

  async answerQuestion(taskId, questionId, answer) {
    const path = `/api/v2/tasks/${enc(taskId)}/questions/${enc(questionId)}/answer`;
    return this.#apply(await this.#request('POST', path, { answer }));
  }

  /** The task as the server has it now (and applied to what this manager knows). */
  async getTaskStatus(taskId) {
    return this.#apply(await this.#request('GET', `/api/v2/tasks/${enc(taskId)}`));
  }

  async getTransitions(taskId) {
    const body = await this.#request('GET', `/api/v2/tasks/${enc(taskId)}/transitions`);
    return body.items ?? [];
  }

  /** {items, next_after}: the task's log lines after line `after`. */
  async getLogs(taskId, after = 0, limit = 1000) {
    const query = new URLSearchParams({ after: String(after), limit: String(limit) });
    return this.#request('GET', `/api/v2/tasks/${enc(taskId)}/logs?${query}`);
  }

  /**
   * History, newest first: {items, next_cursor, total}. Options: `state` (a state or a list),
   * `type`, `trigger`, `created_after`, `created_before` (ISO strings or Dates), `q` (name
   * search), `limit`, `cursor`. The seed's `status` and `job_type` are accepted as aliases.
   */
  async getJobHistory(options = {}) {
    const query = new URLSearchParams();
    const states = options.state ?? options.status;
    for (const state of [].concat(states ?? [])) if (state) query.append('state', state);
    const trigger = options.trigger ?? options.job_type;
    if (options.type) query.set('type', options.type);
    if (trigger) query.set('trigger', trigger);
    for (const key of ['created_after', 'created_before']) {
      const value = options[key];
      if (value) query.set(key, value instanceof Date ? value.toISOString() : String(value));
    }
    if (options.q) query.set('q', options.q);
    if (options.limit) query.set('limit', String(options.limit));
    if (options.cursor) query.set('cursor', options.cursor);
    const text = query.toString();
    return this.#request('GET', `/api/v2/tasks${text ? `?${text}` : ''}`);
  }

  async getTaskTypes() {
    return (await this.#request('GET', '/api/v2/task-types')).items ?? [];
  }

  async getWorkers() {
    return (await this.#request('GET', '/api/v2/workers')).items ?? [];
  }

  async getQuestions() {
    return (await this.#request('GET', '/api/v2/questions')).items ?? [];
  }

  /** Emergency reset: every active task ends and every job stops. Answers how many were reset. */
  async resetAgentState() {
    const body = await this.#request('POST', '/api/v2/admin/reset');
    // The transitions arrive over the socket; read the truth now as well, in case it is down.
    try {
      await this.#applyActiveList((await this.#request('GET', '/api/v2/tasks/active')).items ?? []);
    } catch (error) {
      this.emit('error', error);
    }
    return body.reset;
  }

  // -- HTTP --------------------------------------------------------------------------------

  async #request(method, path, body) {
    const init = { method, headers: { accept: 'application/json' } };
    if (this.token) init.headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await this.#fetch(`${this.#baseUrl}${path}`, init);
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data, response.statusText);
      if (response.status === 401) this.emit('authRequired', error);
      throw error;
    }
    return data;
  }

  // -- applying what the server says -------------------------------------------------------

  /**
   * Applies a full task object. Terminal states are final: an older, non-terminal copy never
   * replaces a terminal one, and a copy older than what we hold (by `updated_at`) is ignored.
   */
  #apply(task, { fromEvent = false } = {}) {
    if (!task || typeof task !== 'object' || !task.id) return task;
    const prev = this.#tasks.get(task.id);
    if (prev) {
      if (isTerminal(prev.state) && !isTerminal(task.state)) return prev;
      if (timeOf(task) < timeOf(prev)) return prev;
    }
    const next = { ...task };
    this.#tasks.delete(task.id); // re-insert: the map's order is the order of last change
    this.#tasks.set(task.id, next);
    // A task seen ending is announced; one merely read in its final state (a page of an old
    // task) is not.
    if (prev ? !isTerminal(prev.state) : fromEvent) this.#stateChanged(prev, next);
    this.emit('taskUpdated', next);
    this.#prune();
    return next;
  }

  #stateChanged(prev, next) {
    if (!isTerminal(next.state)) return;
    if (next.state === 'completed') this.emit('taskCompleted', next);
    else if (next.state === 'failed') this.emit('taskError', next);
    else if (next.state === 'cancelled') this.emit('taskCancelled', next);
  }

  #prune() {
    let finished = 0;
    for (const task of this.#tasks.values()) if (isTerminal(task.state)) finished += 1;
    if (finished <= KEEP_FINISHED) return;
    for (const [id, task] of this.#tasks) {
      if (finished <= KEEP_FINISHED) break;
      if (isTerminal(task.state)) {
        this.#tasks.delete(id);
        finished -= 1;
      }
    }
  }

  /**
   * Applies a complete list of the active tasks. Known tasks missing from it have ended (or
   * were deleted): each is read again so that it shows its real, final state.
   */
  async #applyActiveList(items) {
    const present = new Set();
    for (const task of items) {
      present.add(task.id);
      this.#apply(task);
    }
    const missing = [...this.#tasks.values()].filter((t) => !isTerminal(t.state) && !present.has(t.id));
    await Promise.all(missing.map((t) => this.#refresh(t.id)));
  }

  async #refresh(taskId) {
    try {
      return await this.getTaskStatus(taskId);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.#tasks.delete(taskId);
        this.emit('taskRemoved', { id: taskId });
        return undefined;
      }
      this.emit('error', error);
      return undefined;
    }
  }

  // -- the WebSocket -----------------------------------------------------------------------

  #connect() {
    if (!this.#started || this.#socket) return;
    this.#clearReconnect();
    let url = this.#wsUrl;
    if (this.#lastSeq !== null) url += `${url.includes('?') ? '&' : '?'}since=${this.#lastSeq}`;
    let socket;
    try {
      socket = new this.#WebSocket(url);
    } catch (error) {
      this.emit('error', error);
      this.#socketDown();
      return;
    }
    this.#socket = socket;
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      if (this.token) socket.send(JSON.stringify({ type: 'auth', token: this.token }));
      this.#socketLive = true;
      this.#attempt = 0;
      this.#resyncRequested = false;
      this.#stopPolling();
      this.#setConnection('live');
    };
    socket.onmessage = (message) => {
      if (this.#socket !== socket) return;
      this.#onMessage(message.data);
    };
    socket.onerror = () => { /* onclose follows and does the work */ };
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#snapshotParts = null; // an unfinished snapshot is dropped: the next socket sends another
      this.#socketLive = false;
      this.#socketDown();
    };
  }

  #socketDown() {
    if (!this.#started) return;
    if (this.#connection !== 'polling') this.#setConnection('reconnecting');
    this.#startPolling();
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    this.#clearReconnect();
    let delay;
    if (this.#resyncRequested) {
      delay = 0; // the server asked us to come back at once with `since`
      this.#resyncRequested = false;
    } else {
      const base = Math.min(this.#maxDelay, this.#initialDelay * 2 ** this.#attempt);
      delay = Math.round(base * (0.75 + 0.5 * this.#random()));
    }
    this.#attempt += 1;
    this.#reconnectTimer = this.#setTimeout(() => {
      this.#reconnectTimer = null;
      this.#connect();
    }, delay);
  }

  #clearReconnect() {
    if (this.#reconnectTimer !== null) this.#clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  #onMessage(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch (error) {
      this.emit('error', error);
      return;
    }
    switch (event?.type) {
      case 'snapshot': return this.#onSnapshot(event);
      case 'snapshot_part': return this.#onSnapshotPart(event);
      case 'transition': return this.#onTransition(event);
      case 'progress': return this.#onProgress(event);
      case 'log': return this.emit('log', event);
      case 'question': return this.#onQuestion(event);
      case 'resync':
        this.#resyncRequested = true; // the server closes the socket next
        return undefined;
      case 'error':
        if (typeof event.newest_seq === 'number') {
          // Our `since` is ahead of the server's newest seq (its database was reset or
          // replaced): nothing we saw can be followed on. Come back at once for a snapshot.
          this.#lastSeq = null;
          this.#resyncRequested = true;
        }
        this.emit('error', new ApiError(400, event, 'event stream error'));
        return undefined;
      default:
        return undefined;
    }
  }

  /**
   * A snapshot comes in parts when it is large: `snapshot` is part 1 of `parts`, then
   * `snapshot_part` messages 2..parts, all of the same `seq`, before any live event. Nothing is
   * applied until the last part is in: a partial list would make every task of the missing
   * parts look finished, and `lastSeq` must not move before the whole snapshot is known.
   */
  #onSnapshot(event) {
    const parts = Number.isInteger(event.parts) && event.parts > 1 ? event.parts : 1;
    const tasks = Array.isArray(event.tasks) ? event.tasks : [];
    if (parts === 1) {
      this.#snapshotParts = null;
      this.#applySnapshot(event.seq, tasks);
      return;
    }
    this.#snapshotParts = { seq: event.seq, parts, next: 2, tasks: [...tasks] };
  }

  #onSnapshotPart(event) {
    const pending = this.#snapshotParts;
    if (!pending || event.seq !== pending.seq || event.part !== pending.next || event.parts !== pending.parts) {
      this.#snapshotParts = null;
      this.emit('error', new Error(`unexpected snapshot part ${event.part} of ${event.parts}`));
      return;
    }
    if (Array.isArray(event.tasks)) pending.tasks.push(...event.tasks);
    pending.next += 1;
    if (event.part === pending.parts) {
      this.#snapshotParts = null;
      this.#applySnapshot(pending.seq, pending.tasks);
    }
  }

  #applySnapshot(seq, items) {
    if (typeof seq === 'number') this.#lastSeq = seq;
    this.#applyActiveList(items).catch((error) => this.emit('error', error));
    if (!this.#restored) {
      this.#restored = true;
      for (const task of items) this.emit('taskRestored', this.#tasks.get(task.id) ?? task);
      if (items.length === 0) this.emit('noActiveTask');
      this.emit('restored', { tasks: this.activeTasks });
    }
    this.emit('snapshot', { seq: this.#lastSeq, tasks: items });
  }

  #onTransition(event) {
    if (typeof event.seq !== 'number') return;
    if (this.#lastSeq !== null && event.seq <= this.#lastSeq) {
      // Seen already: no second `transition`. Its task copy is still offered to #apply, which
      // keeps whichever copy is newer, so even a server whose seq went backwards (a new
      // database) cannot leave a stale state on screen.
      this.#duplicates += 1;
      if (event.task) this.#apply(event.task);
      return;
    }
    this.#lastSeq = event.seq;
    const task = event.task ? this.#apply(event.task, { fromEvent: true }) : this.#tasks.get(event.task_id);
    this.emit('transition', { ...event, task });
  }

  #onProgress(event) {
    const task = this.#tasks.get(event.task_id);
    if (!task || isTerminal(task.state)) return;
    for (const key of ['progress', 'phase', 'message', 'items_processed', 'items_failed']) {
      if (key in event) task[key] = event[key];
    }
    this.emit('taskProgress', task);
    this.emit('taskUpdated', task);
  }

  #onQuestion(event) {
    const question = event.question ?? {};
    const task = this.#tasks.get(event.task_id);
    if (task) {
      const others = (task.pending_questions ?? []).filter((q) => q.id !== question.id);
      if (question.status === 'pending' && !isTerminal(task.state)) {
        const { status: _status, answer: _answer, ...pending } = question;
        others.push(pending);
      }
      task.pending_questions = others;
      task.waiting_for_input = others.length > 0;
      this.emit('taskUpdated', task);
    }
    this.emit('question', { task_id: event.task_id, question });
  }

  // -- polling while the socket is down ----------------------------------------------------

  #startPolling() {
    if (this.#polling) return;
    this.#polling = true;
    this.#schedulePoll();
  }

  #stopPolling() {
    this.#polling = false;
    if (this.#pollTimer !== null) this.#clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
  }

  #schedulePoll() {
    if (!this.#polling) return;
    this.#pollTimer = this.#setTimeout(() => {
      this.#pollTimer = null;
      this.#poll();
    }, this.pollingFrequency);
  }

  async #poll() {
    let ok = false;
    try {
      const body = await this.#request('GET', '/api/v2/tasks/active');
      const items = Array.isArray(body?.items) ? body.items : [];
      await this.#applyActiveList(items);
      ok = true;
      if (!this.#restored) {
        this.#restored = true;
        for (const task of items) this.emit('taskRestored', this.#tasks.get(task.id) ?? task);
        if (items.length === 0) this.emit('noActiveTask');
        this.emit('restored', { tasks: this.activeTasks });
      }
    } catch (error) {
      this.emit('error', error);
    }
    if (!this.#polling || this.#socketLive) return;
    this.#setConnection(ok ? 'polling' : 'reconnecting');
    this.emit('poll', { ok });
    this.#schedulePoll();
  }

  #setConnection(state) {
    if (this.#connection === state) return;
    this.#connection = state;
    this.emit('connection', {
      state,
      attempt: this.#attempt,
      lastSeq: this.#lastSeq,
      pollingFrequency: this.pollingFrequency,
    });
  }
}

function enc(value) {
  return encodeURIComponent(String(value));
}
