// <ts-task-questions>: pending questions, each with a button per choice (or a text box when it
// offers none); an approval gate (context.kind "approval") with Approve and Reject. Set `task`
// for the questions of one task (its page), or `questions` for a list across tasks (each with
// task_id and task_name, as GET /api/v2/questions answers), which also names each one's task.
// Answers go through the manager.

import { announce, manager } from './context.js';
import { h, placeChildren, setText, uid } from './dom.js';
import { formatDateTime, formatTime, toJson } from './format.js';
import { isApprovalGate } from './workflow-model.js';

const GATE_BUTTONS = { approve: ['Approve', 'btn-primary'], reject: ['Reject', 'btn-danger-outline'] };

export class TaskQuestions extends HTMLElement {
  #questions = [];
  #withTask = false;
  #articles = new Map(); // what a question was drawn from (JSON) -> its <article>
  #busy = new Set();
  #error = h('p', { class: 'form-error', role: 'alert' });
  #list = h('div', { class: 'questions' });
  #onClick = (event) => this.#click(event);
  #onSubmit = (event) => this.#submit(event);

  connectedCallback() {
    if (!this.#list.isConnected) this.replaceChildren(this.#list, this.#error);
    this.addEventListener('click', this.#onClick);
    this.addEventListener('submit', this.#onSubmit);
    this.#render();
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
    this.removeEventListener('submit', this.#onSubmit);
  }

  /** One task's pending questions. */
  set task(task) {
    this.#withTask = false;
    this.#questions = (task?.pending_questions ?? []).map((q) => ({ ...q, task_id: task.id }));
    this.#render();
  }

  /** Questions of any tasks, each with its task_id (and task_name). */
  set questions(list) {
    this.#withTask = true;
    this.#questions = list;
    this.#render();
  }

  /**
   * A question already on the page keeps its <article> (and so what was typed into it and
   * the focus): a re-render while one answer is on its way once emptied the text box of
   * the next before its Answer was pressed. Busy or not only enables or disables controls.
   */
  #render() {
    const questions = this.#questions;
    this.hidden = questions.length === 0;
    const before = this.#articles;
    this.#articles = new Map();
    const nodes = questions.map((q) => {
      const drawnFrom = JSON.stringify([this.#withTask, q]);
      const article = before.get(drawnFrom) ?? this.#question(q);
      this.#articles.set(drawnFrom, article);
      const busy = this.#busy.has(q.id);
      for (const control of article.querySelectorAll('button, input')) control.disabled = busy;
      return article;
    });
    placeChildren(this.#list, nodes);
  }

  #question(q) {
    const textId = uid('question');
    const gate = isApprovalGate(q);
    const choices = Array.isArray(q.choices) && q.choices.length ? q.choices : null;
    const dataset = (choice) => ({ action: 'answer', task: q.task_id, question: q.id, choice: String(choice) });
    let answer;
    if (choices) {
      answer = h('div', { class: 'choices', role: 'group', 'aria-labelledby': textId },
        choices.map((choice) => {
          const [label, cls] = (gate && GATE_BUTTONS[choice]) || [String(choice), 'btn-primary'];
          return h('button', { type: 'button', class: ['btn', cls], dataset: dataset(choice) }, label);
        }));
    } else {
      const inputId = uid('answer');
      answer = h('form', { class: 'free-answer', dataset: { task: q.task_id, question: q.id } },
        h('label', { for: inputId }, 'Your answer'),
        h('input', { id: inputId, name: 'answer', type: 'text', required: true, autocomplete: 'off' }),
        h('button', { type: 'submit', class: 'btn btn-primary' }, 'Answer'));
    }
    // A gate's context is {kind, type}: the task line says both; anything more is shown.
    const { kind: _kind, type, ...context } = gate ? q.context : {};
    const shownContext = gate ? (Object.keys(context).length ? context : null) : q.context;
    return h('article', { class: ['question', gate && 'question-gate'], dataset: { questionId: q.id, taskId: q.task_id }, 'aria-labelledby': textId },
      this.#withTask ? h('p', { class: 'question-task' }, gate ? 'Approval gate of ' : 'Asked by ',
        h('a', { href: `#/tasks/${encodeURIComponent(q.task_id)}` }, q.task_name || q.task_type || q.task_id),
        (type ?? q.task_type) ? h('span', { class: 'mono' }, ` (${type ?? q.task_type})`) : null) : null,
      h('p', { class: 'question-text', id: textId }, q.question ?? ''),
      shownContext !== null && shownContext !== undefined ? h('pre', { class: 'question-context' }, toJson(shownContext)) : null,
      h('p', { class: 'hint' }, 'Asked ',
        h('time', { datetime: q.asked_at, title: formatDateTime(q.asked_at) }, formatTime(q.asked_at)),
        q.timeout_at ? ` · the default answer applies at ${formatTime(q.timeout_at)}` : ''),
      answer);
  }

  #click(event) {
    const button = event.target.closest('button[data-action="answer"]');
    if (!button || !this.contains(button)) return;
    const { task, question, choice: text } = button.dataset;
    const q = this.#questions.find((x) => x.id === question && x.task_id === task);
    const choice = q?.choices?.find((c) => String(c) === text) ?? text;
    this.#answer(task, question, choice);
  }

  #submit(event) {
    const form = event.target.closest('form.free-answer');
    if (!form) return;
    event.preventDefault();
    const value = form.elements.answer.value;
    if (value.trim() === '') return;
    this.#answer(form.dataset.task, form.dataset.question, value);
  }

  async #answer(taskId, questionId, answer) {
    if (!taskId || this.#busy.has(questionId)) return;
    this.#busy.add(questionId);
    setText(this.#error, '');
    this.#render();
    try {
      await manager().answerQuestion(taskId, questionId, answer);
      announce(`Answered “${answer}”`);
      this.dispatchEvent(new CustomEvent('ts-answered', { bubbles: true, detail: { taskId, questionId, answer } }));
    } catch (error) {
      setText(this.#error, `Could not answer: ${error.message}`);
    } finally {
      this.#busy.delete(questionId);
      this.#render();
    }
  }
}

export function registerTaskQuestions() {
  if (!customElements.get('ts-task-questions')) customElements.define('ts-task-questions', TaskQuestions);
}
