// <ts-task-page task-id="…">: one task: its state (announced), progress, the actions the
// transition table allows (cancel / stop / retry), pending questions, its workflow (what it
// waits for, its tree, its dependencies), the transition timeline, the run report and the
// live log. Everything it shows comes from the manager.

import { announce, lifecycle, manager, navigate, taskTitle } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import {
  formatClock, formatDateTime, formatDuration, formatNumber, formatPercent, formatTime, stateLabel,
} from './format.js';
import { ApiError } from './task-state-manager.js';

export class TaskPage extends HTMLElement {
  #task = null;
  #off = [];
  #els = {};
  #built = false;
  #busy = false;
  #actionsKey = '';
  #baseSeconds = null;
  #baseAt = 0;
  #baseSource = undefined;
  #ticker = null;
  #lastState = null;
  // A failed job's traceback: only GET /tasks/{id} carries it (events and lists leave it out).
  #traceback = undefined;
  #fetchingTraceback = false;
  #onClick = (event) => this.#click(event);

  get taskId() {
    return this.getAttribute('task-id');
  }

  connectedCallback() {
    if (!this.#built) this.#build();
    this.addEventListener('click', this.#onClick);
    const m = manager();
    const mine = (fn) => (payload) => {
      const id = payload?.task_id ?? payload?.id;
      if (id === this.taskId) fn(payload);
    };
    this.#off.push(
      m.on('taskUpdated', mine((task) => this.#show(task))),
      m.on('transition', mine((event) => this.#els.timeline.add({
        seq: event.seq, task_id: event.task_id, from_state: event.from, to_state: event.to,
        at: event.at, reason: event.reason, actor: event.actor,
      }))),
      m.on('taskRemoved', mine(() => this.#gone())),
      // After the socket was down, read again what may have been missed.
      m.on('connection', ({ state }) => { if (state === 'live') this.#refresh(); }),
      m.on('poll', () => this.#refresh()),
    );
    this.#ticker = setInterval(() => this.#tick(), 1000);
    this.#load();
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
    for (const off of this.#off.splice(0)) off();
    clearInterval(this.#ticker);
  }

  #build() {
    const e = this.#els;
    e.title = h('h1', { class: 'page-title task-title', tabindex: '-1' }, 'Task');
    e.state = h('span', { class: 'badge badge-large' });
    e.stateLine = h('p', { class: 'state-line', role: 'status', 'aria-live': 'polite' });
    e.meta = h('p', { class: 'card-meta' });
    e.actions = h('div', { class: 'actions' });
    e.actionError = h('p', { class: 'form-error', role: 'alert' });
    e.progress = h('progress', { max: 100, value: 0, 'aria-label': 'Progress' });
    e.percent = h('span', { class: 'percent' });
    e.phase = h('span', { class: 'phase' });
    e.message = h('span', { class: 'message' });
    e.facts = h('dl', { class: 'facts facts-grid' });
    e.questions = document.createElement('ts-task-questions');
    e.workflow = document.createElement('ts-task-workflow');
    e.timeline = document.createElement('ts-task-timeline');
    e.report = document.createElement('ts-task-report');
    e.log = document.createElement('ts-task-log');
    e.notFound = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const section = (id, title, ...content) =>
      h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), ...content);
    this.replaceChildren(
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Dashboard'), ' · ', h('a', { href: '#/history' }, 'History')),
      e.notFound,
      h('header', { class: 'task-head panel' },
        h('div', { class: 'task-head-top' }, e.title, e.state),
        e.meta, e.stateLine,
        h('div', { class: 'progress-row' }, e.progress, e.percent),
        h('p', { class: 'phase-line' }, e.phase, e.message),
        e.facts, e.actions, e.actionError),
      h('section', { class: 'panel panel-attention questions-panel', 'aria-labelledby': 'q-h' },
        h('h2', { id: 'q-h' }, 'Waiting for an answer'), e.questions),
      e.workflow,
      h('div', { class: 'task-grid' },
        section('timeline-h', 'Timeline', e.timeline),
        section('report-h', 'Run report', e.report)),
      section('log-h', 'Log', e.log),
    );
    e.questionsPanel = this.querySelector('.questions-panel');
    this.#built = true;
  }

  async #load() {
    const id = this.taskId;
    const m = manager();
    const known = m.getTask(id);
    if (known) this.#show(known);
    try {
      const task = await m.getTaskStatus(id);
      this.#show(task);
      await Promise.all([this.#loadTransitions(), this.#els.log.load(id, task.log_lines)]);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) this.#gone();
      else setText(this.#els.actionError, `Could not load the task: ${error.message}`);
    }
  }

  async #loadTransitions() {
    try {
      this.#els.timeline.transitions = await manager().getTransitions(this.taskId);
    } catch (error) {
      setText(this.#els.actionError, `Could not load the timeline: ${error.message}`);
    }
  }

  async #refresh() {
    if (!this.#task) return;
    try {
      await manager().getTaskStatus(this.taskId);
      await Promise.all([this.#loadTransitions(), this.#els.log.catchUp()]);
    } catch {
      // The connection indicator says what is wrong; the next round tries again.
    }
  }

  #gone() {
    const e = this.#els;
    e.notFound.hidden = false;
    setText(e.notFound, 'This task does not exist (any more): it may have been cleaned up.');
    setText(e.title, 'Task not found');
    document.title = 'Task not found · taskstate';
  }

  #show(task) {
    if (!task || task.id !== this.taskId) return;
    const previous = this.#task;
    this.#task = task;
    if (!previous || task.duration_seconds !== this.#baseSource) {
      this.#baseSource = task.duration_seconds;
      this.#baseSeconds = task.duration_seconds ?? null;
      this.#baseAt = Date.now();
    }
    const e = this.#els;
    const title = taskTitle(task);
    this.dataset.state = task.state;
    setText(e.title, title);
    document.title = `${title} · taskstate`;
    e.state.className = `badge badge-large state-${task.state}`;
    setText(e.state, stateLabel(task.state));
    if (this.#lastState !== task.state) {
      // Said once per change, politely, by the live region.
      setText(e.stateLine, `State: ${stateLabel(task.state)}${task.reason ? ` (${task.reason})` : ''}`);
      this.#lastState = task.state;
    }
    replaceChildren(e.meta,
      h('span', { class: 'mono' }, task.type), ' · ', `trigger ${task.trigger}`,
      task.trigger_source ? ` (${task.trigger_source})` : '',
      ' · ', `attempt ${task.attempt} of ${task.max_attempts}`,
      task.retry_of ? [' · retry of ', h('a', { href: `#/tasks/${encodeURIComponent(task.retry_of)}` }, 'the earlier task')] : '');
    const progress = Math.max(0, Math.min(100, Number(task.progress) || 0));
    if (e.progress.value !== progress) e.progress.value = progress;
    setText(e.percent, formatPercent(progress));
    setText(e.phase, task.phase ?? '');
    setText(e.message, task.message ?? '');
    this.#renderFacts();
    this.#renderActions();
    e.questions.task = task;
    e.workflow.task = task;
    e.questionsPanel.hidden = !(task.pending_questions ?? []).length;
    if ('traceback' in task) this.#traceback = task.traceback;
    else if (task.state === 'failed' && this.#traceback == null) this.#readTraceback();
    e.report.task = { ...task, traceback: this.#traceback ?? null };
  }

  /** The failure arrived by an event, without its traceback: read the task once for it. */
  async #readTraceback() {
    if (this.#fetchingTraceback) return;
    this.#fetchingTraceback = true;
    try {
      await manager().getTaskStatus(this.taskId); // its answer comes back through #show
    } catch {
      // The next refresh reads it again.
    } finally {
      this.#fetchingTraceback = false;
    }
  }

  #renderFacts() {
    const t = this.#task;
    const fact = (label, value, cls) => h('div', { class: cls }, h('dt', {}, label), h('dd', {}, value));
    const time = (iso) => (iso ? h('time', { datetime: iso, title: formatDateTime(iso) }, formatTime(iso)) : '—');
    this.#els.elapsed = h('span', { class: 'elapsed' });
    replaceChildren(this.#els.facts,
      fact('Processed', formatNumber(t.items_processed ?? 0)),
      fact('Failed', formatNumber(t.items_failed ?? 0), (t.items_failed ?? 0) > 0 ? 'nonzero' : undefined),
      fact(lifecycle().isTerminal(t.state) ? 'Took' : 'Elapsed', this.#els.elapsed),
      fact('Created', time(t.created_at)),
      fact('Started', time(t.started_at)),
      fact('Finished', time(t.finished_at)),
      fact('Worker', t.worker_id ?? '—', 'mono-dd'),
      fact('Id', t.id, 'mono-dd'));
    this.#tick();
  }

  #tick() {
    const t = this.#task;
    const el = this.#els.elapsed;
    if (!t || !el) return;
    if (lifecycle().isTerminal(t.state)) setText(el, formatDuration(t.duration_seconds));
    else if (t.started_at && this.#baseSeconds !== null) {
      setText(el, formatClock(this.#baseSeconds + (Date.now() - this.#baseAt) / 1000));
    } else setText(el, t.started_at ? '…' : 'not started');
  }

  #renderActions() {
    const t = this.#task;
    const allowed = lifecycle().actions(t);
    const key = `${allowed.cancel}|${allowed.stop}|${allowed.retry}|${this.#busy}`;
    if (key === this.#actionsKey) return;
    this.#actionsKey = key;
    const button = (action, label, cls) => h('button', {
      type: 'button', class: ['btn', cls], dataset: { action }, disabled: this.#busy,
    }, label);
    const buttons = [
      allowed.stop && button('stop', 'Stop service', 'btn-primary'),
      allowed.cancel && button('cancel', 'Cancel task', 'btn-danger'),
      allowed.retry && button('retry', 'Retry', 'btn-primary'),
    ].filter(Boolean);
    const hadFocus = this.#els.actions.contains(document.activeElement);
    replaceChildren(this.#els.actions, buttons);
    this.#els.actions.hidden = buttons.length === 0;
    if (hadFocus) (this.#els.actions.querySelector('button') ?? this.#els.title).focus();
  }

  async #click(event) {
    const button = event.target.closest('button[data-action]');
    if (!button || !this.#els.actions.contains(button) || this.#busy) return;
    const action = button.dataset.action;
    const m = manager();
    const title = taskTitle(this.#task);
    this.#busy = true;
    setText(this.#els.actionError, '');
    this.#renderActions();
    try {
      if (action === 'cancel') {
        await m.cancelTask(this.taskId);
        announce(`Cancelled “${title}”`);
      } else if (action === 'stop') {
        await m.stopService(this.taskId);
        announce(`Stopping “${title}”`);
      } else if (action === 'retry') {
        const retry = await m.retryTask(this.taskId);
        announce(`Retrying “${title}”`);
        navigate(`#/tasks/${encodeURIComponent(retry.id)}`);
      }
    } catch (error) {
      setText(this.#els.actionError, `Could not ${action}: ${error.message}`);
      m.getTaskStatus(this.taskId).catch(() => {});
    } finally {
      this.#busy = false;
      this.#actionsKey = '';
      if (this.isConnected && this.#task) this.#renderActions();
    }
  }
}

export function registerTaskPage() {
  if (!customElements.get('ts-task-page')) customElements.define('ts-task-page', TaskPage);
}
