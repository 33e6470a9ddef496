// EventStream: the WebSocket of /api/v2/events (CONTRACT §3).
//
// It reconnects after a growing, jittered delay, or at once when the server asks (`resync`, or
// a `since` ahead of the server's newest seq), with `since` = the newest seq it delivered, so
// that nothing is missed; it delivers each transition `seq` once; and it assembles a snapshot
// that the server sends in parts before delivering it. What the events mean is the caller's.

import { ApiError } from './api-client.js';

export class EventStream {
  #url;
  #WebSocket;
  #setTimeout;
  #clearTimeout;
  #random;
  #initialDelay;
  #maxDelay;
  #token;
  #ready;
  #on;
  #events;

  #running = false;
  #socket = null;
  #attempt = 0;
  #timer = null;
  #resyncRequested = false;
  #snapshotParts = null; // {seq, parts, next, tasks} while a snapshot arrives in parts
  #lastSeq = null;
  #duplicates = 0;

  /**
   * @param {object} options
   * @param {string} options.url
   * @param {Function} options.WebSocket
   * @param {Function} options.setTimeout
   * @param {Function} options.clearTimeout
   * @param {() => number} options.random  0 <= x < 1, for the jitter
   * @param {number} options.reconnectDelay  the first delay in ms (doubles up to maxReconnectDelay)
   * @param {number} options.maxReconnectDelay
   * @param {() => string|null} options.token  sent as the socket's first message, never in the URL
   * @param {() => boolean} options.ready  false while the socket must not open yet (it waits as if refused)
   * @param {object} options.on  the socket's state: open(), down(), error(error)
   * @param {object} options.events  where the events go: snapshot(tasks, seq) (whole),
   *   transition(event), duplicate(event) (a transition whose seq was delivered already),
   *   progress(event), log(event), question(event)
   */
  constructor(options) {
    this.#url = options.url;
    this.#WebSocket = options.WebSocket;
    this.#setTimeout = options.setTimeout;
    this.#clearTimeout = options.clearTimeout;
    this.#random = options.random;
    this.#initialDelay = options.reconnectDelay;
    this.#maxDelay = options.maxReconnectDelay;
    this.#token = options.token;
    this.#ready = options.ready;
    this.#on = options.on;
    this.#events = options.events;
  }

  /** The newest transition `seq` delivered (null before the first snapshot or replay). */
  get lastSeq() { return this.#lastSeq; }

  /** How many transitions were dropped because their `seq` had been delivered already. */
  get duplicates() { return this.#duplicates; }

  /** Reconnection attempts since the socket was last open. */
  get attempt() { return this.#attempt; }

  /** Follows on from `seq` (a list read elsewhere includes it), unless a seq is known already. */
  startFrom(seq) {
    if (typeof seq === 'number' && this.#lastSeq === null) this.#lastSeq = seq;
  }

  open() {
    this.#running = true;
    this.#connect();
  }

  /** Closes the socket and stops reconnecting. */
  close() {
    this.#running = false;
    this.#clearReconnect();
    const socket = this.#socket;
    this.#socket = null;
    this.#snapshotParts = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try { socket.close(); } catch { /* already closed */ }
    }
  }

  #connect() {
    if (!this.#running || this.#socket) return;
    this.#clearReconnect();
    if (!this.#ready()) {
      this.#down();
      return;
    }
    let url = this.#url;
    if (this.#lastSeq !== null) url += `${url.includes('?') ? '&' : '?'}since=${this.#lastSeq}`;
    let socket;
    try {
      socket = new this.#WebSocket(url);
    } catch (error) {
      this.#on.error(error);
      this.#down();
      return;
    }
    this.#socket = socket;
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      const token = this.#token();
      if (token) socket.send(JSON.stringify({ type: 'auth', token }));
      this.#attempt = 0;
      this.#resyncRequested = false;
      this.#on.open();
    };
    socket.onmessage = (message) => {
      if (this.#socket === socket) this.#onMessage(message.data);
    };
    socket.onerror = () => { /* onclose follows and does the work */ };
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#snapshotParts = null; // an unfinished snapshot is dropped: the next socket sends another
      this.#down();
    };
  }

  #down() {
    if (!this.#running) return;
    this.#on.down();
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    this.#clearReconnect();
    let delay;
    if (this.#resyncRequested) {
      delay = 0; // the server asked us to come back at once with `since`
      this.#resyncRequested = false;
    } else {
      const base = Math.min(this.#maxDelay, this.#initialDelay * 2 ** this.#attempt);
      delay = Math.round(base * (0.75 + 0.5 * this.#random()));
    }
    this.#attempt += 1;
    this.#timer = this.#setTimeout(() => {
      this.#timer = null;
      this.#connect();
    }, delay);
  }

  #clearReconnect() {
    if (this.#timer !== null) this.#clearTimeout(this.#timer);
    this.#timer = null;
  }

  #onMessage(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch (error) {
      this.#on.error(error);
      return;
    }
    switch (event?.type) {
      case 'snapshot': return this.#onSnapshot(event);
      case 'snapshot_part': return this.#onSnapshotPart(event);
      case 'transition': return this.#onTransition(event);
      case 'progress': return this.#events.progress(event);
      case 'log': return this.#events.log(event);
      case 'question': return this.#events.question(event);
      case 'resync':
        this.#resyncRequested = true; // the server closes the socket next
        return undefined;
      case 'error':
        if (typeof event.newest_seq === 'number') {
          // Our `since` is ahead of the server's newest seq (its database was reset or
          // replaced): nothing we saw can be followed on. Come back at once for a snapshot.
          this.#lastSeq = null;
          this.#resyncRequested = true;
        }
        return this.#on.error(new ApiError(400, event, 'event stream error'));
      default:
        return undefined;
    }
  }

  /**
   * A snapshot comes in parts when it is large: `snapshot` is part 1 of `parts`, then
   * `snapshot_part` messages 2..parts, all of the same `seq`, before any live event. Nothing is
   * delivered until the last part is in: a partial list would make every task of the missing
   * parts look finished, and `lastSeq` must not move before the whole snapshot is known.
   */
  #onSnapshot(event) {
    const parts = Number.isInteger(event.parts) && event.parts > 1 ? event.parts : 1;
    const tasks = Array.isArray(event.tasks) ? event.tasks : [];
    if (parts === 1) {
      this.#snapshotParts = null;
      this.#deliverSnapshot(event.seq, tasks);
      return;
    }
    this.#snapshotParts = { seq: event.seq, parts, next: 2, tasks: [...tasks] };
  }

  #onSnapshotPart(event) {
    const pending = this.#snapshotParts;
    if (!pending || event.seq !== pending.seq || event.part !== pending.next || event.parts !== pending.parts) {
      this.#snapshotParts = null;
      this.#on.error(new Error(`unexpected snapshot part ${event.part} of ${event.parts}`));
      return;
    }
    if (Array.isArray(event.tasks)) pending.tasks.push(...event.tasks);
    pending.next += 1;
    if (event.part === pending.parts) {
      this.#snapshotParts = null;
      this.#deliverSnapshot(pending.seq, pending.tasks);
    }
  }

  #deliverSnapshot(seq, tasks) {
    if (typeof seq === 'number') this.#lastSeq = seq;
    this.#events.snapshot(tasks, this.#lastSeq);
  }

  #onTransition(event) {
    if (typeof event.seq !== 'number') return;
    if (this.#lastSeq !== null && event.seq <= this.#lastSeq) {
      this.#duplicates += 1;
      this.#events.duplicate(event);
      return;
    }
    this.#lastSeq = event.seq;
    this.#events.transition(event);
  }
}
