// What every view shares: the TaskStateManager, announcements and navigation.

let current = null;

export function setManager(instance) {
  current = instance;
}

/** The page's TaskStateManager (set by main.js before any view is defined). */
export function manager() {
  if (!current) throw new Error('taskstate: no TaskStateManager was set');
  return current;
}

/** Says something to screen readers and shows it as a toast (see announcer.js). */
export function announce(message, { tone = 'info' } = {}) {
  document.dispatchEvent(new CustomEvent('ts-announce', { detail: { message, tone } }));
}

export function navigate(hash) {
  if (location.hash !== hash) location.hash = hash;
}

/** The task's name, or its type when it has none. */
export function taskTitle(task) {
  return task?.name || task?.type || task?.id || 'task';
}
