// <ts-task-card>: one active task, live: state, progress bar, phase, message, items, elapsed
// time, a flag when it waits for an answer, and the actions the transition table allows.
// Built once, then updated in place, so that focus and screen readers are not disturbed.

import { announce, lifecycle, manager, taskTitle } from './context.js';
import { h, replaceChildren, setText, uid } from './dom.js';
import { formatClock, formatDuration, formatNumber, formatPercent, formatTime, parseTime, stateLabel } from './format.js';

export class TaskCard extends HTMLElement {
  #task = null;
  #nameId = uid('task-name');
  #built = false;
  #baseSeconds = null;
  #baseAt = 0;
  #baseSource = undefined;
  #actionsKey = '';
  #busy = false;
  #els = {};
  #onClick = (event) => this.#click(event);

  set task(task) {
    const sameTask = this.#task?.id === task?.id;
    this.#task = task;
    if (!sameTask || task.duration_seconds !== this.#baseSource) {
      this.#baseSource = task.duration_seconds;
      this.#baseSeconds = task.duration_seconds ?? null;
      this.#baseAt = Date.now();
    }
    if (this.isConnected) this.#render();
  }

  get task() {
    return this.#task;
  }

  connectedCallback() {
    this.addEventListener('click', this.#onClick);
    if (this.#task) this.#render();
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
  }

  #build() {
    const e = this.#els;
    e.name = h('a', { class: 'task-name', id: this.#nameId });
    e.state = h('span', { class: 'badge' });
    e.type = h('span', { class: 'task-type' });
    e.attempt = h('span', { class: 'task-attempt' });
    e.progress = h('progress', { max: 100, value: 0, 'aria-labelledby': this.#nameId });
    e.percent = h('span', { class: 'percent' });
    e.phase = h('span', { class: 'phase' });
    e.message = h('span', { class: 'message' });
    e.processed = h('dd', { class: 'items-processed' });
    e.failed = h('dd', { class: 'items-failed' });
    e.elapsedLabel = h('dt', {}, 'Elapsed');
    e.elapsed = h('dd', { class: 'elapsed' });
    e.question = h('p', { class: 'question-flag', hidden: true });
    e.actions = h('div', { class: 'actions' });
    const article = h(
      'article',
      { class: 'task-card', 'aria-labelledby': this.#nameId },
      h('header', { class: 'card-head' }, h('h3', { class: 'card-title' }, e.name), e.state),
      h('p', { class: 'card-meta' }, e.type, e.attempt),
      e.progressRow = h('div', { class: 'progress-row' }, e.progress, e.percent),
      h('p', { class: 'phase-line' }, e.phase, e.message),
      h(
        'dl',
        { class: 'stats' },
        h('div', {}, h('dt', {}, 'Processed'), e.processed),
        h('div', {}, h('dt', {}, 'Failed'), e.failed),
        h('div', {}, e.elapsedLabel, e.elapsed),
      ),
      e.question,
      e.actions,
    );
    this.replaceChildren(article);
    this.#built = true;
  }

  #render() {
    const task = this.#task;
    if (!task) return;
    if (!this.#built) this.#build();
    const e = this.#els;
    this.dataset.taskId = task.id;
    this.dataset.state = task.state;
    e.name.href = `#/tasks/${encodeURIComponent(task.id)}`;
    setText(e.name, taskTitle(task));
    e.state.className = `badge state-${task.state}`;
    setText(e.state, stateLabel(task.state));
    setText(e.type, task.type);
    setText(e.attempt, task.attempt > 1 ? `attempt ${task.attempt} of ${task.max_attempts}` : '');
    const progress = Math.max(0, Math.min(100, Number(task.progress) || 0));
    if (e.progress.value !== progress) e.progress.value = progress;
    setText(e.percent, formatPercent(progress));
    // A service that serves, or a task still waiting, has no progress to show.
    e.progressRow.hidden = ['serving', 'stopping', 'queued'].includes(task.state) && progress === 0;
    setText(e.phase, task.phase ?? '');
    setText(e.message, task.message ?? this.#fallbackMessage(task));
    setText(e.processed, formatNumber(task.items_processed ?? 0));
    setText(e.failed, formatNumber(task.items_failed ?? 0));
    e.failed.classList.toggle('nonzero', (task.items_failed ?? 0) > 0);
    const questions = task.pending_questions ?? [];
    e.question.hidden = questions.length === 0;
    if (questions.length) {
      replaceChildren(
        e.question,
        h('a', { href: `#/tasks/${encodeURIComponent(task.id)}` },
          questions.length === 1 ? 'Waiting for your answer →' : `${questions.length} questions wait for an answer →`),
      );
    }
    this.#renderActions();
    this.tick();
  }

  #fallbackMessage(task) {
    const question = task.pending_questions?.[0]?.question;
    if (question) return `asks: “${question}”`;
    if (task.state === 'serving') return task.endpoint ? `serving at ${task.endpoint}` : 'serving';
    if (task.state === 'queued') return 'waiting for a worker';
    if (task.state === 'orphaned') return 'its worker was lost; being restored';
    return '';
  }

  #renderActions() {
    const task = this.#task;
    const allowed = lifecycle().actions(task);
    const key = `${allowed.cancel}|${allowed.stop}|${this.#busy}`;
    if (key === this.#actionsKey) return;
    this.#actionsKey = key;
    const title = taskTitle(task);
    replaceChildren(
      this.#els.actions,
      allowed.stop && h('button', {
        type: 'button', class: 'btn btn-small', dataset: { action: 'stop' },
        disabled: this.#busy, 'aria-label': `Stop ${title}`,
      }, 'Stop'),
      allowed.cancel && h('button', {
        type: 'button', class: 'btn btn-small btn-quiet', dataset: { action: 'cancel' },
        disabled: this.#busy, 'aria-label': `Cancel ${title}`,
      }, 'Cancel'),
    );
  }

  /** Updates the elapsed time; called every second by the list. */
  tick() {
    const task = this.#task;
    if (!task || !this.#built) return;
    const e = this.#els;
    if (lifecycle().isTerminal(task.state)) {
      setText(e.elapsedLabel, 'Took');
      setText(e.elapsed, formatDuration(task.duration_seconds));
    } else if (task.started_at) {
      setText(e.elapsedLabel, 'Elapsed');
      const base = this.#baseSeconds ?? (Date.now() - (parseTime(task.started_at) ?? Date.now())) / 1000;
      setText(e.elapsed, formatClock(base + (Date.now() - this.#baseAt) / 1000));
    } else {
      const runAt = parseTime(task.run_at);
      if (runAt && runAt > Date.now() + 1000) {
        setText(e.elapsedLabel, 'Starts');
        setText(e.elapsed, formatTime(task.run_at));
      } else {
        setText(e.elapsedLabel, 'Waiting');
        setText(e.elapsed, formatClock((Date.now() - (parseTime(task.created_at) ?? Date.now())) / 1000));
      }
    }
  }

  async #click(event) {
    const button = event.target.closest('button[data-action]');
    if (!button || !this.contains(button) || this.#busy) return;
    const task = this.#task;
    const action = button.dataset.action;
    this.#busy = true;
    this.#renderActions();
    try {
      if (action === 'cancel') await manager().cancelTask(task.id);
      else if (action === 'stop') await manager().stopService(task.id);
    } catch (error) {
      announce(`Could not ${action} “${taskTitle(task)}”: ${error.message}`, { tone: 'bad' });
    } finally {
      this.#busy = false;
      this.#actionsKey = '';
      this.#render();
    }
  }
}

export function registerTaskCard() {
  if (!customElements.get('ts-task-card')) customElements.define('ts-task-card', TaskCard);
}
