// Emitter: named events and their listeners. A listener that throws does not stop the others
// from hearing the event (one broken view must not silence the rest of the page).

export class Emitter {
  #listeners = new Map();

  /** Adds a listener; answers a function that removes it. */
  on(event, callback) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(callback);
    return () => this.off(event, callback);
  }

  off(event, callback) {
    this.#listeners.get(event)?.delete(callback);
  }

  emit(event, data) {
    for (const callback of [...(this.#listeners.get(event) ?? [])]) {
      try {
        callback(data);
      } catch (error) {
        globalThis.console?.error?.(`taskstate: a '${event}' listener failed`, error);
      }
    }
  }
}
