// <ts-questions-page>: the inbox: every pending question of every task (GET /api/v2/questions),
// the approval gates (Approve / Reject) apart from the other questions (their choices or a free
// answer), oldest first. Live: a task's pending_questions, as the manager's events bring them,
// are the truth for that task; a question of a task the manager does not know yet, a
// reconnection or a poll read the whole list again.

import { lifecycle, manager, taskTitle } from './context.js';
import { h, setText } from './dom.js';
import { isApprovalGate } from './workflow-model.js';

export class QuestionsPage extends HTMLElement {
  #items = new Map(); // `${task_id} ${question id}` -> the question, with task_id and task_name
  #loaded = false;
  #off = [];
  #reading = null;
  #summary = h('p', { class: 'summary', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #gates = document.createElement('ts-task-questions');
  #others = document.createElement('ts-task-questions');
  #gatesPanel = null;
  #othersPanel = null;

  connectedCallback() {
    if (!this.childElementCount) {
      this.#gatesPanel = h('section', { class: 'panel panel-attention', 'aria-labelledby': 'gates-h' },
        h('h2', { id: 'gates-h' }, 'Approvals'), this.#gates);
      this.#othersPanel = h('section', { class: 'panel', 'aria-labelledby': 'others-h' },
        h('h2', { id: 'others-h' }, 'Questions'), this.#others);
      this.append(h('h1', { class: 'page-title', tabindex: '-1' }, 'Questions'),
        this.#summary, this.#error, this.#gatesPanel, this.#othersPanel);
    }
    const m = manager();
    this.#off.push(
      m.on('taskUpdated', (task) => this.#taskChanged(task)),
      m.on('question', ({ task_id: taskId }) => { if (!m.getTask(taskId)) this.#load(); }),
      m.on('connection', ({ state }) => { if (state === 'live') this.#load(); }),
      m.on('poll', () => this.#load()),
    );
    this.#render();
    this.#load();
  }

  disconnectedCallback() {
    for (const off of this.#off.splice(0)) off();
  }

  /** Reads the whole list (one read at a time; a read asked for meanwhile follows it). */
  async #load() {
    if (this.#reading) {
      this.#reading.again = true;
      return;
    }
    this.#reading = { again: false };
    try {
      const [items] = await Promise.all([manager().getQuestions(), manager().loadLifecycle()]);
      this.#items = new Map(items.map((q) => [keyOf(q.task_id, q.id), this.#richer(q)]));
      this.#loaded = true;
      setText(this.#error, '');
      this.#render();
    } catch (error) {
      setText(this.#error, `Could not load the questions: ${error.message}`);
    } finally {
      const { again } = this.#reading;
      this.#reading = null;
      if (again && this.isConnected) this.#load();
    }
  }

  #taskChanged(task) {
    if (!this.#loaded) return;
    const pending = lifecycle().isTerminal(task.state) ? [] : task.pending_questions ?? [];
    const ids = new Set(pending.map((q) => keyOf(task.id, q.id)));
    let changed = false;
    for (const [key, q] of this.#items) {
      if (q.task_id === task.id && !ids.has(key)) changed = this.#items.delete(key);
    }
    for (const q of pending) {
      const key = keyOf(task.id, q.id);
      if (this.#items.has(key)) continue;
      this.#items.set(key, this.#richer({ ...q, task_id: task.id, task_name: taskTitle(task), task_type: task.type }));
      changed = true;
    }
    if (changed) this.#render();
  }

  /** Keeps the copy that has the context: an event from another instance may carry less. */
  #richer(q) {
    const known = this.#items.get(keyOf(q.task_id, q.id));
    return known?.context && !q.context ? { ...q, context: known.context } : q;
  }

  #render() {
    const all = [...this.#items.values()].sort((a, b) => String(a.asked_at).localeCompare(String(b.asked_at)));
    const gates = all.filter(isApprovalGate);
    const others = all.filter((q) => !isApprovalGate(q));
    this.#gates.questions = gates;
    this.#others.questions = others;
    this.#gatesPanel.hidden = gates.length === 0;
    this.#othersPanel.hidden = others.length === 0;
    this.dataset.count = String(all.length);
    if (!this.#loaded) setText(this.#summary, 'Loading the questions…');
    else if (all.length === 0) setText(this.#summary, 'Nothing waits for an answer.');
    else {
      const parts = [gates.length && count(gates.length, 'approval', 'approvals'), others.length && count(others.length, 'question', 'questions')];
      setText(this.#summary, `${parts.filter(Boolean).join(' and ')} ${all.length === 1 ? 'waits' : 'wait'} for an answer.`);
    }
  }
}

function keyOf(taskId, questionId) {
  return `${taskId} ${questionId}`;
}

function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

export function registerQuestionsPage() {
  if (!customElements.get('ts-questions-page')) customElements.define('ts-questions-page', QuestionsPage);
}
