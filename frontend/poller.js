// Poller: the fallback while the event stream is down: one round every `every()` ms, each
// starting a period after the last one ended, until stopped. What a round does is the caller's.

export class Poller {
  #every;
  #round;
  #setTimeout;
  #clearTimeout;
  #running = false;
  #timer = null;

  /**
   * @param {object} options
   * @param {() => number} options.every  ms between rounds, read before each wait
   * @param {() => Promise<void>} options.round  one round; it must not throw
   * @param {Function} options.setTimeout
   * @param {Function} options.clearTimeout
   */
  constructor({ every, round, setTimeout, clearTimeout }) {
    this.#every = every;
    this.#round = round;
    this.#setTimeout = setTimeout;
    this.#clearTimeout = clearTimeout;
  }

  /** Whether rounds are being run (a round that ends after stop() sees false). */
  get running() { return this.#running; }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  stop() {
    this.#running = false;
    if (this.#timer !== null) this.#clearTimeout(this.#timer);
    this.#timer = null;
  }

  #schedule() {
    if (!this.#running || this.#timer !== null) return; // stopped, or restarted during a round
    this.#timer = this.#setTimeout(async () => {
      this.#timer = null;
      await this.#round();
      this.#schedule();
    }, this.#every());
  }
}
