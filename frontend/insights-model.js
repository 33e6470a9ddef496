// The insights page's data logic, apart from the DOM and the chart library (so that node
// tests it): the page's address ⇄ the API's query, and GET /api/v2/insights' answer → the
// columns uPlot draws and the numbers the page shows.

export const WINDOWS = Object.freeze(['1h', '6h', '24h', '7d']);
export const DEFAULT_WINDOW = '24h';
export const OUTCOMES = Object.freeze(['completed', 'failed', 'cancelled']);
export const PERCENTILES = Object.freeze(['p50', 'p95', 'p99']);

/** The page's choices from its address (#/insights?window=6h&type=etl); unknown values fall back. */
export function readChoices(query) {
  const window = query.get('window');
  const type = query.get('type');
  return {
    window: WINDOWS.includes(window) ? window : DEFAULT_WINDOW,
    type: type ? type.slice(0, 200) : '',
  };
}

/** The address's query for these choices (defaults left out). */
export function choicesQuery({ window, type }) {
  const query = new URLSearchParams();
  if (window && window !== DEFAULT_WINDOW) query.set('window', window);
  if (type) query.set('type', type);
  return query.toString();
}

const seconds = (iso) => Date.parse(iso) / 1000;

/** Finished tasks per bucket: x (Unix seconds of each bucket's start) and one column per outcome. */
export function throughputColumns(insights) {
  const buckets = insights.throughput ?? [];
  return [buckets.map((b) => seconds(b.start)), ...OUTCOMES.map((o) => buckets.map((b) => b[o]))];
}

/** Totals over the window, and the share of finished tasks that completed (null when none did finish). */
export function totals(insights) {
  const out = Object.fromEntries(OUTCOMES.map((o) => [o, 0]));
  for (const row of insights.by_type ?? []) for (const o of OUTCOMES) out[o] += row[o];
  const finished = OUTCOMES.reduce((sum, o) => sum + out[o], 0);
  return { ...out, finished, successRate: finished ? (100 * out.completed) / finished : null };
}

/**
 * Outcomes by type as stacked bars: `types` (the x axis's labels, x = 0, 1, …), the raw
 * counts per outcome, and the tops of the stacks (completed, + failed, + cancelled) that the
 * bars are drawn to, the tallest first so that the shorter ones are drawn over it.
 */
export function outcomeBars(insights) {
  const rows = insights.by_type ?? [];
  const raw = Object.fromEntries(OUTCOMES.map((o) => [o, rows.map((r) => r[o])]));
  let running = rows.map(() => 0);
  const tops = {};
  for (const o of OUTCOMES) {
    running = running.map((sum, i) => sum + raw[o][i]);
    tops[o] = running;
  }
  return { types: rows.map((r) => r.type), x: rows.map((_, i) => i), raw, tops };
}

/** Duration percentiles per type, in seconds: x = 0, 1, … and one column per percentile. */
export function durationBars(insights) {
  const rows = insights.durations ?? [];
  return {
    types: rows.map((r) => r.type),
    counts: rows.map((r) => r.count),
    x: rows.map((_, i) => i),
    ...Object.fromEntries(PERCENTILES.map((p) => [p, rows.map((r) => r[`${p}_seconds`])])),
  };
}

/** The queue per bucket: x, the depth at each bucket's end, and the mean and longest wait (null: nobody started). */
export function queueColumns(insights) {
  const buckets = insights.queue ?? [];
  return [
    buckets.map((b) => seconds(b.start)),
    buckets.map((b) => b.depth),
    buckets.map((b) => b.wait_avg_seconds),
    buckets.map((b) => b.wait_max_seconds),
  ];
}

/** The longest wait in the window and the deepest the queue was (for the summary). */
export function queuePeaks(insights) {
  let depth = 0;
  let wait = null;
  for (const b of insights.queue ?? []) {
    depth = Math.max(depth, b.depth);
    if (b.wait_max_seconds !== null && (wait === null || b.wait_max_seconds > wait)) wait = b.wait_max_seconds;
  }
  return { depth, wait };
}

/** A duration for the charts: milliseconds under a second (a job's durations often are), else as elsewhere. */
export function formatSeconds(seconds, formatDuration) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  if (seconds < 1) return `${Number((seconds * 1000).toPrecision(3))} ms`;
  return formatDuration(seconds);
}
