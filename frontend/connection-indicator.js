// <ts-connection-indicator>: live / reconnecting / polling, always visible, announced politely.

import { manager } from './context.js';
import { h, setText } from './dom.js';

const LABELS = {
  connecting: ['Connecting…', 'Opening the event stream'],
  live: ['Live', 'Changes arrive as they happen, over a WebSocket'],
  reconnecting: ['Reconnecting…', 'The event stream is down and the server does not answer; retrying'],
  polling: ['Polling', 'The event stream is down; reading the state over HTTP while it reconnects'],
  closed: ['Offline', 'Not connected'],
};

export class ConnectionIndicator extends HTMLElement {
  #label = h('span', { class: 'conn-label' });
  #dot = h('span', { class: 'conn-dot', 'aria-hidden': 'true' });
  #off = [];

  connectedCallback() {
    this.setAttribute('role', 'status');
    this.setAttribute('aria-live', 'polite');
    if (!this.#label.isConnected) this.replaceChildren(this.#dot, this.#label);
    const m = manager();
    this.#off.push(m.on('connection', (info) => this.#render(info.state, info)));
    this.#render(m.connectionState, { pollingFrequency: m.pollingFrequency });
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
  }

  #render(state, info = {}) {
    const [label, title] = LABELS[state] ?? [state, ''];
    this.dataset.state = state;
    document.documentElement.dataset.connection = state; // lets the page look stale while offline
    let text = label;
    if (state === 'polling' && info.pollingFrequency) {
      text = `Polling every ${Math.round(info.pollingFrequency / 100) / 10} s`;
    }
    setText(this.#label, text);
    this.title = title;
    this.setAttribute('aria-label', `Connection: ${text}`);
  }
}

export function registerConnectionIndicator() {
  if (!customElements.get('ts-connection-indicator')) {
    customElements.define('ts-connection-indicator', ConnectionIndicator);
  }
}
