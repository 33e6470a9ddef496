// The workflow part of the fake API (CONTRACT §6), added to a FakeServer with serveWorkflows():
// the history with its tree filters (newest first, in pages), the questions inbox, and the
// schedules kept in memory.

import { task } from './fakes.js';

/**
 * Adds the routes to `server` and answers the fake's own state: {schedules} (by id) and
 * `filtersIgnored` (set it to answer as a server that does not know the tree filters yet).
 */
export function serveWorkflows(server) {
  const state = { schedules: new Map(), filtersIgnored: false, nextSchedule: 1 };
  server.route((method, path, body) => {
    const url = new URL(path, 'http://x');
    if (method === 'GET' && url.pathname === '/api/v2/tasks') return history(server, url.searchParams, state);
    if (method === 'GET' && url.pathname === '/api/v2/questions') return { status: 200, body: { items: questions(server) } };
    if (url.pathname.startsWith('/api/v2/schedules')) return schedules(state, method, url.pathname, body);
    return undefined;
  });
  return state;
}

function history(server, query, state) {
  let items = [...server.tasks.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  if (!state.filtersIgnored) {
    for (const key of ['root_id', 'parent_id', 'trigger_source']) {
      const value = query.get(key);
      if (value) items = items.filter((t) => (key === 'root_id' ? t.root_id ?? t.id : t[key]) === value);
    }
  }
  const limit = Number(query.get('limit') ?? 50);
  const offset = Number(query.get('cursor') ?? 0);
  const page = items.slice(offset, offset + limit);
  const next = offset + limit < items.length ? String(offset + limit) : null;
  return { status: 200, body: { items: page, next_cursor: next, total: items.length } };
}

function questions(server) {
  return [...server.tasks.values()].flatMap((t) => (t.pending_questions ?? []).map((q) => ({
    ...q, task_id: t.id, task_name: t.name, task_type: t.type, status: 'pending',
  })));
}

const FIELDS = ['name', 'type', 'params', 'cron', 'interval_seconds', 'timezone', 'overlap', 'catch_up', 'paused'];

function schedules(state, method, pathname, body) {
  const match = /^\/api\/v2\/schedules(?:\/([^/]+))?(?:\/(pause|resume))?$/.exec(pathname);
  if (!match) return undefined;
  const [, id, call] = match;
  if (!id && method === 'GET') return { status: 200, body: { items: [...state.schedules.values()] } };
  if (!id && method === 'POST') {
    if (!body?.type || (body.cron == null) === (body.interval_seconds == null)) {
      return { status: 422, body: { error: 'validation_error', detail: 'give exactly one of cron and interval_seconds' } };
    }
    const made = {
      id: `sched-${state.nextSchedule++}`, name: body.name ?? body.type, params: {}, cron: null,
      interval_seconds: null, timezone: 'UTC', overlap: 'skip', catch_up: 'latest', paused: false,
      next_run_at: '2026-01-01T01:00:00Z', last_fired_at: null, last_task_id: null, owner: null,
      created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z',
      ...Object.fromEntries(FIELDS.filter((k) => k in body).map((k) => [k, body[k]])),
    };
    state.schedules.set(made.id, made);
    return { status: 201, body: made };
  }
  const found = state.schedules.get(decodeURIComponent(id ?? ''));
  if (!found) return { status: 404, body: { error: 'not_found', detail: `no schedule ${id}` } };
  let next = found;
  if (method === 'GET' && !call) return { status: 200, body: found };
  if (method === 'DELETE' && !call) {
    state.schedules.delete(found.id);
    return { status: 204, body: undefined };
  }
  if (method === 'PATCH' && !call) next = { ...found, ...body };
  else if (method === 'POST' && call) next = { ...found, paused: call === 'pause' };
  else return { status: 405, body: { error: 'method_not_allowed', detail: method } };
  state.schedules.set(found.id, next);
  return { status: 200, body: next };
}

/** A root with `n` children (each a running demo.sleep), created in that order. */
export function family(n = 3, rootOverrides = {}) {
  const root = task({ type: 'demo.fanout', ...rootOverrides });
  const withRoot = { ...root, root_id: root.id, parent_id: null, depends_on: [], waiting_for: [] };
  const children = Array.from({ length: n }, (_, i) => task({
    name: `child ${i + 1}`, parent_id: root.id, root_id: root.id, depends_on: [], waiting_for: [],
  }));
  return { root: withRoot, children };
}
