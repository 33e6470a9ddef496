// <ts-task-log>: a task's log, read from GET …/logs?after=N and followed live through the
// manager's `log` events. Lines are shown by seq, once each; a gap (lines missed while the
// socket was down) is filled from the server.

import { manager } from './context.js';
import { h, setText } from './dom.js';
import { formatDateTime, formatTime } from './format.js';

const PAGE = 1000;
const MAX_SHOWN = 3000;

export class TaskLog extends HTMLElement {
  #taskId = null;
  #last = 0;
  #list = h('ol', { class: 'log', tabindex: '0', 'aria-label': 'Log lines' });
  #status = h('p', { class: 'hint' });
  #off = [];
  #loading = null;
  #queued = [];

  connectedCallback() {
    if (!this.#list.isConnected) this.replaceChildren(this.#status, this.#list);
    const m = manager();
    this.#off.push(
      m.on('log', (line) => {
        if (line.task_id === this.#taskId) this.#live(line);
      }),
    );
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
  }

  /** Shows the log of `taskId`, starting with its last PAGE lines. */
  async load(taskId, totalLines = 0) {
    this.#taskId = taskId;
    this.#last = Math.max(0, (Number(totalLines) || 0) - PAGE);
    this.#list.replaceChildren();
    await this.catchUp();
  }

  /** Reads the lines after the last one shown. */
  async catchUp() {
    if (!this.#taskId) return;
    if (this.#loading) return this.#loading;
    this.#loading = (async () => {
      try {
        for (let round = 0; round < 20; round += 1) {
          const page = await manager().getLogs(this.#taskId, this.#last, PAGE);
          const items = page.items ?? [];
          this.#append(items);
          if (items.length < PAGE) break;
        }
      } catch (error) {
        setText(this.#status, `Could not read the log: ${error.message}`);
      } finally {
        this.#loading = null;
      }
      const queued = this.#queued.splice(0);
      this.#append(queued);
      this.#updateStatus();
    })();
    return this.#loading;
  }

  #live(line) {
    if (this.#loading) {
      this.#queued.push(line);
    } else if (line.seq > this.#last + 1) {
      this.#queued.push(line); // a gap: read the missing lines first
      this.catchUp();
    } else {
      this.#append([line]);
      this.#updateStatus();
    }
  }

  #append(lines) {
    const fresh = lines.filter((l) => l.seq > this.#last).sort((a, b) => a.seq - b.seq);
    if (fresh.length === 0) return;
    const box = this.#list;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const fragment = document.createDocumentFragment();
    for (const line of fresh) {
      if (line.seq <= this.#last) continue;
      this.#last = line.seq;
      const level = ['debug', 'info', 'warning', 'error', 'critical'].includes(line.level) ? line.level : 'info';
      fragment.append(h('li', { class: ['log-line', `log-${level}`], dataset: { seq: String(line.seq) } },
        h('time', { datetime: line.at, title: formatDateTime(line.at) }, formatTime(line.at)),
        h('span', { class: 'log-level' }, level),
        h('span', { class: 'log-message' }, line.message ?? '')));
    }
    box.append(fragment);
    while (box.childElementCount > MAX_SHOWN) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  #updateStatus() {
    const count = this.#list.childElementCount;
    setText(this.#status, count ? '' : 'No log lines yet.');
    this.#status.hidden = count > 0;
  }
}

export function registerTaskLog() {
  if (!customElements.get('ts-task-log')) customElements.define('ts-task-log', TaskLog);
}
