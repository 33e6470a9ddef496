// <ts-dashboard-page>: active tasks (live), the start form, the latest finished tasks.
// Marks `taskstate:dashboard-restored` (performance.mark) the first time both the restored
// active tasks and the history are on screen: the figure the restore-time measurement reads.

import { h } from './dom.js';

let markedOnce = false;

export class DashboardPage extends HTMLElement {
  #pending = new Set(['ts-active-tasks', 'ts-recent-tasks']);
  #onReady = (event) => {
    this.#pending.delete(event.target.localName);
    if (this.#pending.size === 0 && !markedOnce) {
      markedOnce = true;
      performance.mark('taskstate:dashboard-restored');
      document.documentElement.dataset.dashboardRestored = 'true';
    }
  };

  connectedCallback() {
    this.addEventListener('ts-ready', this.#onReady);
    if (this.childElementCount) return;
    this.append(
      h('h1', { class: 'page-title visually-hidden', tabindex: '-1' }, 'Dashboard'),
      h('div', { class: 'dashboard-grid' },
        h('ts-active-tasks', { class: 'dashboard-active' }),
        h('div', { class: 'dashboard-side' }, h('ts-start-task-form'))),
      h('ts-recent-tasks'),
    );
  }

  disconnectedCallback() {
    this.removeEventListener('ts-ready', this.#onReady);
  }
}

export function registerDashboardPage() {
  if (!customElements.get('ts-dashboard-page')) customElements.define('ts-dashboard-page', DashboardPage);
}
