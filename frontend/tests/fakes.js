// Fakes of what TaskStateManager talks to: a server behind fetch, a WebSocket, and timers
// that only move when a test says so; and `fakeWorld()`, which wires a manager to them.

import { TaskStateManager } from '../task-state-manager.js';

/** Every event the manager documents (authRequired aside). */
export const EVENTS = [
  'taskRestored', 'noActiveTask', 'restored', 'taskUpdated', 'taskProgress', 'transition',
  'taskCompleted', 'taskError', 'taskCancelled', 'taskRemoved', 'log', 'question', 'connection',
  'poll', 'error', 'snapshot',
];

/** GET /api/v2/states as the real server answers it (CONTRACT §1 and its rules). */
export const LIFECYCLE = Object.freeze({
  states: [
    { name: 'queued', description: 'waiting for a worker', terminal: false },
    { name: 'preparing', description: 'claimed by a worker, being set up', terminal: false },
    { name: 'running', description: "the job's code runs", terminal: false },
    { name: 'collecting', description: 'the job returned; its result is being stored', terminal: false },
    { name: 'completed', description: 'finished successfully', terminal: true },
    { name: 'failed', description: 'finished with an error', terminal: true },
    { name: 'cancelled', description: 'stopped on request', terminal: true },
    { name: 'orphaned', description: 'its worker was lost; about to be re-queued or failed', terminal: false },
    { name: 'serving', description: 'a service job that is up and ready', terminal: false },
    { name: 'stopping', description: 'a service job shutting down gracefully', terminal: false },
  ],
  transitions: {
    queued: ['cancelled', 'failed', 'preparing'],
    preparing: ['cancelled', 'failed', 'orphaned', 'running'],
    running: ['cancelled', 'collecting', 'failed', 'orphaned', 'serving'],
    collecting: ['cancelled', 'completed', 'failed', 'orphaned'],
    completed: [],
    failed: [],
    cancelled: [],
    orphaned: ['failed', 'queued'],
    serving: ['cancelled', 'failed', 'orphaned', 'stopping'],
    stopping: ['completed', 'failed'],
  },
  calls: {
    cancel: ['cancelled', 'collecting', 'preparing', 'queued', 'running', 'serving'],
    stop: ['serving', 'stopping'],
    retry: ['cancelled', 'failed'],
  },
  reset: {
    queued: 'cancelled', preparing: 'cancelled', running: 'cancelled', collecting: 'cancelled',
    orphaned: 'failed', serving: 'cancelled', stopping: 'failed',
  },
});

/**
 * The API, in memory: tasks by id; every request recorded; can be "down". It publishes
 * `lifecycle` at GET /api/v2/states (a test may give it another table).
 */
export class FakeServer {
  tasks = new Map();
  requests = [];
  down = false;
  handlers = [];
  lifecycle = LIFECYCLE;

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
    if (method === 'GET' && url.pathname === '/api/v2/states') return { status: 200, body: this.lifecycle };
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

/** A transition event of the stream, for task `t` (in its new state) coming from `from`. */
export function transition(seq, t, from, to = t.state) {
  return { type: 'transition', seq, task_id: t.id, from, to, at: t.updated_at, reason: null, actor: 'test', task: t };
}

/**
 * A fresh server, clock and WebSocket class, and two makers of managers wired to them:
 * `makeManager(options)`, and `liveManager(seq, options)`, which has restored and is live after
 * a snapshot at `seq` and answers {manager, log, socket}.
 */
export function fakeWorld() {
  const server = new FakeServer();
  const clock = new FakeClock();
  const FakeWebSocket = makeFakeWebSocket();

  function makeManager(options = {}) {
    return new TaskStateManager({
      baseUrl: 'http://ui.test',
      fetch: server.fetch,
      WebSocket: FakeWebSocket,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      random: () => 0.5, // no jitter: delays are exactly 500, 1000, 2000, …
      pollingFrequency: 3000, // given: no GET /api/v2/config (its own test)
      ...options,
    });
  }

  async function liveManager(seq = 10, options = {}) {
    const manager = makeManager(options);
    const log = record(manager, EVENTS);
    await manager.initialize();
    const socket = FakeWebSocket.last;
    socket.open();
    socket.push({ type: 'snapshot', seq, tasks: [...server.tasks.values()].filter((t) => !t.is_terminal) });
    await settle();
    return { manager, log, socket };
  }

  return { server, clock, FakeWebSocket, makeManager, liveManager };
}
