// Formatting of times, durations and states, shared by the views. Pure: no DOM.

const STATE_LABELS = {
  queued: 'queued',
  preparing: 'preparing',
  running: 'running',
  collecting: 'collecting',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
  orphaned: 'orphaned',
  serving: 'serving',
  stopping: 'stopping',
};

export function stateLabel(state) {
  return STATE_LABELS[state] ?? String(state ?? 'unknown');
}

/** 0.4 s, 12 s, 3 min 05 s, 2 h 07 min, 3 d 4 h */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '—';
  const s = Math.max(0, Number(seconds));
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** A clock-like elapsed time: 0:07, 3:05, 1:02:09 */
export function formatClock(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '—';
  const s = Math.max(0, Math.floor(Number(seconds)));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = String(s % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** Local time: "14:03:07" today, "21 Nov 14:03" this year, else with the year. */
export function formatTime(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (t === null) return '—';
  const date = new Date(t);
  const today = new Date(now);
  if (date.toDateString() === today.toDateString()) {
    return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  const options = { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  if (date.getFullYear() !== today.getFullYear()) options.year = 'numeric';
  return date.toLocaleString(undefined, options);
}

/** Full local date and time, for title attributes and <time>. */
export function formatDateTime(iso) {
  const t = parseTime(iso);
  return t === null ? '' : new Date(t).toLocaleString();
}

export function formatPercent(value) {
  const n = Number(value);
  if (Number.isNaN(n)) return '0%';
  return `${n >= 10 || n === 0 ? Math.round(n) : n.toFixed(1)}%`;
}

export function formatNumber(value) {
  const n = Number(value);
  return Number.isNaN(n) ? '—' : n.toLocaleString();
}

export function humanize(key) {
  const text = String(key).replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Pretty JSON for <pre> (as text). */
export function toJson(value) {
  try {
    return JSON.stringify(value, null, 2) ?? 'null';
  } catch {
    return String(value);
  }
}
