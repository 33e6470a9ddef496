// Schedules: the calls of /api/v2/schedules (CONTRACT §6), answering what the server said (an
// ApiError when it refused). A schedule is {id, name, type, params, cron, interval_seconds,
// timezone, overlap, catch_up, paused, next_run_at, last_fired_at, last_task_id, owner, …};
// each firing creates a task with trigger "scheduled" and trigger_source "schedule:<id>".

/** What a schedule does when a firing comes while the previous task still runs. */
export const OVERLAP_POLICIES = Object.freeze(['skip', 'queue', 'cancel_previous']);

/** Which firings missed while no instance ran are made up for. */
export const CATCH_UP_POLICIES = Object.freeze(['none', 'latest', 'all']);

export class Schedules {
  #api;

  /** @param {import('./api-client.js').ApiClient} api */
  constructor(api) {
    this.#api = api;
  }

  async list() { return (await this.#api.request('GET', '/api/v2/schedules'))?.items ?? []; }

  get(scheduleId) { return this.#api.request('GET', path(scheduleId)); }

  /**
   * `request` is {type, params?, name?, cron | interval_seconds, timezone?, overlap?,
   * catch_up?, paused?}: exactly one of cron and interval_seconds.
   */
  create(request) { return this.#api.request('POST', '/api/v2/schedules', request); }

  /** Changes any of the fields `create` takes. */
  update(scheduleId, changes) { return this.#api.request('PATCH', path(scheduleId), changes); }

  pause(scheduleId) { return this.#api.request('POST', path(scheduleId, 'pause')); }

  resume(scheduleId) { return this.#api.request('POST', path(scheduleId, 'resume')); }

  /** Deletes the schedule (the tasks it made stay). */
  async remove(scheduleId) { await this.#api.request('DELETE', path(scheduleId)); }

  /** The schedule's tasks, newest first: {items, next_cursor, total} (history's options). */
  tasks(scheduleId, options = {}) {
    return this.#api.history({ ...options, trigger_source: `schedule:${scheduleId}` });
  }
}

/** How often a schedule fires, for people: "every 5 min", "cron 0 3 * * * (Europe/Paris)". */
export function describeCadence(schedule) {
  if (schedule?.cron) return `cron ${schedule.cron} (${schedule.timezone || 'UTC'})`;
  const seconds = Number(schedule?.interval_seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) return '—';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (seconds >= size && seconds % size === 0) return `every ${seconds / size} ${unit}`;
  }
  return `every ${seconds} s`;
}

function path(scheduleId, call) {
  const base = `/api/v2/schedules/${encodeURIComponent(String(scheduleId))}`;
  return call ? `${base}/${call}` : base;
}
