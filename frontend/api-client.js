// ApiClient: the HTTP calls of the taskstate API (CONTRACT §2), as JSON in and out. It applies
// nothing: it answers what the server said, or throws an ApiError.

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

export class ApiClient {
  #baseUrl;
  #fetch;
  #token;
  #onUnauthorized;

  /**
   * @param {object} options
   * @param {string} options.baseUrl  where the API is, without a trailing slash
   * @param {Function} options.fetch
   * @param {() => string|null} options.token  the API token to send, read at each request
   * @param {(error: ApiError) => void} options.onUnauthorized  called on a 401, before the throw
   */
  constructor({ baseUrl, fetch, token, onUnauthorized }) {
    this.#baseUrl = baseUrl;
    this.#fetch = fetch;
    this.#token = token;
    this.#onUnauthorized = onUnauthorized;
  }

  async request(method, path, body) {
    const init = { method, headers: { accept: 'application/json' } };
    const token = this.#token();
    if (token) init.headers.authorization = `Bearer ${token}`;
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
      if (response.status === 401) this.#onUnauthorized(error);
      throw error;
    }
    return data;
  }

  /** TASK_POLLING_FREQUENCY in ms as the server is configured (GET /api/v2/config), or undefined. */
  async pollingFrequency() {
    try {
      const value = Number((await this.request('GET', '/api/v2/config'))?.task_polling_frequency);
      return Number.isFinite(value) && value >= 100 ? value : undefined;
    } catch {
      return undefined; // an older server, or a transient error: the caller keeps its default
    }
  }

  /** The transition table and its rules (see lifecycle.js). */
  states() { return this.request('GET', '/api/v2/states'); }

  /** {items, seq?}: every task not in a terminal state. */
  activeTasks() { return this.request('GET', '/api/v2/tasks/active'); }

  task(taskId) { return this.request('GET', `/api/v2/tasks/${enc(taskId)}`); }

  createTask(body) { return this.request('POST', '/api/v2/tasks', body); }

  /** `call` is cancel, stop or retry: POST /api/v2/tasks/{id}/{call}. */
  call(taskId, call) { return this.request('POST', `/api/v2/tasks/${enc(taskId)}/${call}`); }

  answer(taskId, questionId, answer) {
    return this.request('POST', `/api/v2/tasks/${enc(taskId)}/questions/${enc(questionId)}/answer`, { answer });
  }

  async transitions(taskId) {
    return (await this.request('GET', `/api/v2/tasks/${enc(taskId)}/transitions`)).items ?? [];
  }

  logs(taskId, after, limit) {
    const query = new URLSearchParams({ after: String(after), limit: String(limit) });
    return this.request('GET', `/api/v2/tasks/${enc(taskId)}/logs?${query}`);
  }

  /** {items, next_cursor, total}; the options are TaskStateManager.getJobHistory's. */
  async history(options = {}) {
    // The seed's `offset`: pages are reached by cursor, so a later page by offset cannot be had.
    if (options.offset) throw new RangeError('getJobHistory: `offset` must be 0; read further pages with `cursor` (next_cursor)');
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
    for (const key of ['parent_id', 'root_id', 'trigger_source']) if (options[key]) query.set(key, options[key]);
    if (options.limit) query.set('limit', String(options.limit));
    if (options.cursor) query.set('cursor', options.cursor);
    const text = query.toString();
    return this.request('GET', `/api/v2/tasks${text ? `?${text}` : ''}`);
  }

  /** Every task of the tree whose top is `rootId`, oldest first. */
  taskTree(rootId) {
    return this.#everyTask({ root_id: rootId }, (task) => (task.root_id ?? task.id) === rootId);
  }

  /** The tasks the job of `parentId` spawned, oldest first. */
  childrenOf(parentId) {
    return this.#everyTask({ parent_id: parentId }, (task) => task.parent_id === parentId);
  }

  /**
   * Every page of the history with `filters`, oldest first. `belongs` drops what the filter
   * should have: a server that does not know a filter ignores it and answers every task.
   */
  async #everyTask(filters, belongs) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const body = await this.history({ ...filters, limit: PAGE_SIZE, cursor });
      items.push(...(body?.items ?? []).filter(belongs));
      cursor = body?.next_cursor;
      if (!cursor) break;
    }
    return items.reverse();
  }

  async taskTypes() { return (await this.request('GET', '/api/v2/task-types')).items ?? []; }

  /** GET /api/v2/insights: aggregates of a window, for charts (since, until, window, interval, type). */
  insights(query = {}) {
    const params = new URLSearchParams();
    for (const key of ['since', 'until', 'window', 'interval', 'type']) {
      if (query[key] !== undefined && query[key] !== null && query[key] !== '') params.set(key, String(query[key]));
    }
    const text = params.toString();
    return this.request('GET', `/api/v2/insights${text ? `?${text}` : ''}`);
  }

  async workers() { return (await this.request('GET', '/api/v2/workers')).items ?? []; }

  async questions() { return (await this.request('GET', '/api/v2/questions')).items ?? []; }

  /** {reset}: how many tasks the emergency reset ended. */
  reset() { return this.request('POST', '/api/v2/admin/reset'); }
}

/** The server's largest page, and how many of them a tree may take (20,000 tasks). */
const PAGE_SIZE = 500;
const MAX_PAGES = 40;

function enc(value) {
  return encodeURIComponent(String(value));
}
