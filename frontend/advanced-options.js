// The start form's "Advanced" options: priority, run_at, timeout_seconds, max_attempts (the
// create-task fields of CONTRACT §2). Reading and checking them is pure (unit-tested in node);
// the same limits are checked again by the server, whose 422 is mapped back to the field.

/** The server's limits (TaskCreate in web/schemas.py), checked in the browser first. */
export const LIMITS = Object.freeze({
  priority: { min: -1_000_000, max: 1_000_000, integer: true },
  timeout_seconds: { exclusiveMin: 0, max: 30 * 24 * 3600, integer: false },
  max_attempts: { min: 1, max: 100, integer: true },
});

export const ADVANCED_FIELDS = Object.freeze(['priority', 'run_at', 'timeout_seconds', 'max_attempts']);

function number(name, text, errors) {
  const limit = LIMITS[name];
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) {
    errors[name] = 'Enter a number.';
  } else if (limit.integer && !Number.isInteger(n)) {
    errors[name] = 'Enter a whole number.';
  } else if (limit.min !== undefined && n < limit.min) {
    errors[name] = `At least ${limit.min}.`;
  } else if (limit.exclusiveMin !== undefined && n <= limit.exclusiveMin) {
    errors[name] = `More than ${limit.exclusiveMin}.`;
  } else if (n > limit.max) {
    errors[name] = `At most ${limit.max}.`;
  } else {
    return n;
  }
  return undefined;
}

/**
 * The request fields from the inputs' texts (`run_at` as a `datetime-local` value, in the
 * browser's time zone): {fields, errors}. An empty input is left out (the server's default).
 */
export function readAdvanced(texts) {
  const fields = {};
  const errors = {};
  for (const name of ['priority', 'timeout_seconds', 'max_attempts']) {
    const text = String(texts[name] ?? '');
    if (text.trim() === '') continue;
    const value = number(name, text, errors);
    if (value !== undefined) fields[name] = value;
  }
  const runAt = String(texts.run_at ?? '').trim();
  if (runAt) {
    const at = new Date(runAt); // a datetime-local value has no zone: the browser's own
    if (Number.isNaN(at.getTime())) errors.run_at = 'Enter a date and time.';
    else fields.run_at = at.toISOString();
  }
  return { fields, errors };
}

/**
 * The server's 422 as {field: message} for the fields of this form: from its `errors` list
 * (pydantic's `loc`, e.g. ["body", "max_attempts"]) and its `field` (our own checks).
 */
export function serverFieldErrors(body) {
  const out = {};
  for (const error of Array.isArray(body?.errors) ? body.errors : []) {
    const loc = (Array.isArray(error?.loc) ? error.loc : []).filter((part) => part !== 'body');
    const name = loc[0];
    if (typeof name === 'string' && !(name in out)) out[name] = String(error?.msg ?? 'Not valid.');
  }
  if (typeof body?.field === 'string' && !(body.field in out)) out[body.field] = String(body.detail ?? 'Not valid.');
  return out;
}
