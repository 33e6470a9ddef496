// LiveFeed: how the manager hears of changes: the event stream while it is up and, while it is
// down, a poll every `every()` ms until it comes back; and the connection's state as it goes
// connecting -> live -> reconnecting -> polling -> live … -> closed.

import { EventStream } from './event-stream.js';
import { Poller } from './poller.js';

export class LiveFeed {
  #stream;
  #poller;
  #state = 'closed';
  #onState;

  /**
   * @param {object} options
   * @param {object} options.stream  EventStream's options, but `on`
   * @param {() => number} options.every  ms between polls
   * @param {() => Promise<boolean>} options.poll  one polling round; answers whether it reached the server
   * @param {(ok: boolean) => void} options.polled  after a round that still counts (the socket is still down)
   * @param {(state: string) => void} options.onState  the connection's state changed
   * @param {(error: Error) => void} options.onError
   */
  constructor({ stream, every, poll, polled, onState, onError }) {
    this.#onState = onState;
    this.#stream = new EventStream({
      ...stream,
      on: {
        open: () => {
          this.#poller.stop();
          this.#set('live');
        },
        down: () => {
          if (this.#state !== 'polling') this.#set('reconnecting');
          this.#poller.start();
        },
        error: onError,
      },
    });
    this.#poller = new Poller({
      every,
      setTimeout: stream.setTimeout,
      clearTimeout: stream.clearTimeout,
      round: async () => {
        const ok = await poll();
        if (!this.#poller.running) return; // the socket came back meanwhile
        this.#set(ok ? 'polling' : 'reconnecting');
        polled(ok);
      },
    });
  }

  /** connecting | live | reconnecting | polling | closed */
  get state() { return this.#state; }

  get lastSeq() { return this.#stream.lastSeq; }

  get duplicates() { return this.#stream.duplicates; }

  get attempt() { return this.#stream.attempt; }

  /** Follows on from `seq` (see EventStream.startFrom). */
  startFrom(seq) { this.#stream.startFrom(seq); }

  connecting() { this.#set('connecting'); }

  open() { this.#stream.open(); }

  close() {
    this.#stream.close();
    this.#poller.stop();
    this.#set('closed');
  }

  #set(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.#onState(state);
  }
}
