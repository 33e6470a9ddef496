// The geometry of a task's timeline drawn in time: each state it was in as a span from when
// it entered it to when it left (the current one grows until now), placed on one time axis.
// Pure (no DOM), so that node tests can check it; task-timeline.js draws it.

/**
 * The spans of `rows` (transitions, oldest first, each `{seq, to_state, at}`), with `nowMs` as
 * the end of a state the task is still in. A final state is a span of zero length at the end.
 * Answers {startMs, endMs, spans: [{seq, state, startMs, endMs, seconds, live, final}]}.
 */
export function timelineSpans(rows, nowMs, isTerminal) {
  const times = rows.map((row) => Date.parse(row.at));
  const spans = rows.map((row, index) => {
    const startMs = times[index];
    const final = index === rows.length - 1 && isTerminal(row.to_state);
    const live = index === rows.length - 1 && !final;
    const endMs = index + 1 < rows.length ? times[index + 1] : (live ? Math.max(startMs, nowMs) : startMs);
    return { seq: row.seq, state: row.to_state, startMs, endMs, seconds: (endMs - startMs) / 1000, live, final };
  });
  const startMs = spans.length ? spans[0].startMs : nowMs;
  const endMs = spans.length ? spans[spans.length - 1].endMs : nowMs;
  return { startMs, endMs, spans };
}

/** Where a span sits on the axis, in percent of its width: {left, width} (width 0 for a final state). */
export function placeSpan(span, startMs, endMs) {
  const total = Math.max(1, endMs - startMs);
  const left = (100 * (span.startMs - startMs)) / total;
  const width = (100 * (span.endMs - span.startMs)) / total;
  return { left: clamp(left), width: clamp(Math.min(width, 100 - clamp(left))) };
}

const STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400, 172800, 604800];

/** Round offsets (seconds from the start) for at most `count` axis ticks over `totalSeconds`. */
export function axisTicks(totalSeconds, count = 5) {
  if (!(totalSeconds > 0)) return [0];
  const step = STEPS.find((s) => totalSeconds / s <= count) ?? totalSeconds / count;
  const ticks = [];
  for (let t = 0; t <= totalSeconds + 1e-9; t += step) ticks.push(Math.round(t * 1000) / 1000);
  return ticks;
}

function clamp(value) {
  return Math.max(0, Math.min(100, value));
}
