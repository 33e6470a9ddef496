// Fakes of what TaskStateManager talks to: a server behind fetch, a WebSocket, and timers
// that only move when a test says so.

/** The API, in memory: tasks by id; every request recorded; can be "down". */
export class FakeServer {
  tasks = new Map();
  requests = [];
  down = false;
  handlers = [];

  put(...tasks) {
    for (const task of tasks) this.tasks.set(task.id, task);
  }

  /** Adds a handler (method, path, body) => {status, body} | undefined, tried before the defaults. */
  route(handler) {
    this.handlers.push(handler);
  }

  requested(method, prefix) {
    return this.requests.filter((r) => r.method === method && r.path.startsWith(prefix));
  }

  handle(method, path, body) {
    for (const handler of this.handlers) {
      const answer = handler(method, path, body);
      if (answer) return answer;
    }
    const url = new URL(path, 'http://x');
    if (method === 'GET' && url.pathname === '/api/v2/tasks/active') {
      return { status: 200, body: { items: [...this.tasks.values()].filter((t) => !t.is_terminal) } };
    }
    const one = /^\/api\/v2\/tasks\/([^/]+)$/.exec(url.pathname);
    if (method === 'GET' && one) {
      const task = this.tasks.get(decodeURIComponent(one[1]));
      return task ? { status: 200, body: task } : { status: 404, body: { error: 'not_found', detail: 'no task' } };
    }
    return { status: 404, body: { error: 'not_found', detail: `no route ${method} ${path}` } };
  }

  fetch = async (url, init = {}) => {
    const parsed = new URL(url);
    const method = init.method ?? 'GET';
    const body = init.body ? JSON.parse(init.body) : undefined;
    this.requests.push({ method, path: parsed.pathname + parsed.search, body, headers: init.headers ?? {} });
    await null;
    if (this.down) throw new TypeError('fetch failed');
    const answer = this.handle(method, parsed.pathname + parsed.search, body);
    return {
      ok: answer.status < 400,
      status: answer.status,
      statusText: '',
      text: async () => (answer.body === undefined ? '' : JSON.stringify(answer.body)),
    };
  };
}

/** A WebSocket whose other end is the test. `refuse` makes new sockets fail as they open. */
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static instances = [];
    static refuse = false;

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      FakeWebSocket.instances.push(this);
      if (FakeWebSocket.refuse) {
        queueMicrotask(() => this.#drop());
      }
    }

    static get last() {
      return FakeWebSocket.instances.at(-1);
    }

    get since() {
      return new URL(this.url).searchParams.get('since');
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    /** What the client sent. */
    sent = [];

    /** The server sends a message. */
    push(message) {
      this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) });
    }

    /** The client sends a message. */
    send(text) {
      this.sent.push(JSON.parse(text));
    }

    /** The server (or the network) closes the socket. */
    serverClose() {
      this.#drop();
    }

    /** The client closes it. */
    close() {
      this.closed = true;
      this.readyState = 3;
    }

    #drop() {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006 });
    }
  }
  return FakeWebSocket;
}

/** setTimeout/clearTimeout on a clock that moves only in advance(). */
export class FakeClock {
  now = 0;
  #timers = new Map();
  #next = 1;
  delays = [];

  setTimeout = (fn, ms = 0) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    this.delays.push(ms);
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  get pending() {
    return this.#timers.size;
  }

  /** Runs every timer due within `ms`, in order, letting promises settle after each. */
  async advance(ms) {
    const end = this.now + ms;
    await settle();
    for (;;) {
      let due = null;
      for (const [id, timer] of this.#timers) {
        if (timer.at <= end && (!due || timer.at < due[1].at)) due = [id, timer];
      }
      if (!due) break;
      this.#timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

/** Lets every pending promise chain run. */
export async function settle() {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

let counter = 0;

export function task(overrides = {}) {
  counter += 1;
  const state = overrides.state ?? 'running';
  return {
    id: `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`,
    type: 'demo.sleep',
    name: `task ${counter}`,
    progress: 0,
    phase: null,
    message: null,
    items_processed: 0,
    items_failed: 0,
    created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, counter)).toISOString(),
    updated_at: new Date(Date.UTC(2026, 0, 1, 0, 0, counter)).toISOString(),
    pending_questions: [],
    waiting_for_input: false,
    ...overrides,
    state,
    is_terminal: ['completed', 'failed', 'cancelled'].includes(state),
  };
}

/** The same task, later, in another state. */
export function later(t, state, extra = {}) {
  const updated = new Date(Date.parse(t.updated_at) + 1000).toISOString();
  return task({ ...t, ...extra, state, updated_at: updated });
}

/** Records every event a manager emits, in order. */
export function record(manager, names) {
  const events = [];
  for (const name of names) manager.on(name, (data) => events.push([name, data]));
  return {
    events,
    of: (name) => events.filter(([n]) => n === name).map(([, d]) => d),
  };
}
