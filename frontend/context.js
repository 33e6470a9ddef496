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

/**
 * The task lifecycle (which states are terminal, which actions a state allows), as the manager
 * read it from the server. A view has it once a task has reached it through the manager; one
 * that needs it before (a list read from the history) awaits `manager().loadLifecycle()` first.
 */
export function lifecycle() {
  const current = manager().lifecycle;
  if (!current) throw new Error('taskstate: the task lifecycle has not been read from the server yet');
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
