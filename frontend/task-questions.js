// <ts-task-questions>: the questions a task's job waits on, each with a button per choice
// (or a text box when it offers none). Answers go through the manager.

import { announce, manager } from './context.js';
import { h, replaceChildren, setText, uid } from './dom.js';
import { formatDateTime, formatTime, toJson } from './format.js';

export class TaskQuestions extends HTMLElement {
  #task = null;
  #key = '';
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

  set task(task) {
    this.#task = task;
    this.#render();
  }

  #render() {
    const questions = this.#task?.pending_questions ?? [];
    this.hidden = questions.length === 0;
    const key = JSON.stringify([questions.map((q) => q.id), [...this.#busy]]);
    if (key === this.#key) return; // unchanged: keep focus where it is
    this.#key = key;
    replaceChildren(this.#list, questions.map((q) => this.#question(q)));
  }

  #question(q) {
    const textId = uid('question');
    const busy = this.#busy.has(q.id);
    const choices = Array.isArray(q.choices) && q.choices.length ? q.choices : null;
    let answer;
    if (choices) {
      answer = h('div', { class: 'choices', role: 'group', 'aria-labelledby': textId },
        choices.map((choice) => h('button', {
          type: 'button', class: 'btn btn-primary', disabled: busy,
          dataset: { action: 'answer', question: q.id, choice: String(choice) },
        }, String(choice))));
    } else {
      const inputId = uid('answer');
      answer = h('form', { class: 'free-answer', dataset: { question: q.id } },
        h('label', { for: inputId }, 'Your answer'),
        h('input', { id: inputId, name: 'answer', type: 'text', required: true, disabled: busy, autocomplete: 'off' }),
        h('button', { type: 'submit', class: 'btn btn-primary', disabled: busy }, 'Answer'));
    }
    return h('article', { class: 'question', dataset: { questionId: q.id }, 'aria-labelledby': textId },
      h('p', { class: 'question-text', id: textId }, q.question ?? ''),
      q.context !== null && q.context !== undefined ? h('pre', { class: 'question-context' }, toJson(q.context)) : null,
      h('p', { class: 'hint' }, 'Asked ',
        h('time', { datetime: q.asked_at, title: formatDateTime(q.asked_at) }, formatTime(q.asked_at)),
        q.timeout_at ? ` · the default answer applies at ${formatTime(q.timeout_at)}` : ''),
      answer);
  }

  #click(event) {
    const button = event.target.closest('button[data-action="answer"]');
    if (!button || !this.contains(button)) return;
    const q = (this.#task?.pending_questions ?? []).find((x) => x.id === button.dataset.question);
    const choice = q?.choices?.find((c) => String(c) === button.dataset.choice) ?? button.dataset.choice;
    this.#answer(button.dataset.question, choice);
  }

  #submit(event) {
    const form = event.target.closest('form.free-answer');
    if (!form) return;
    event.preventDefault();
    const value = form.elements.answer.value;
    if (value.trim() === '') return;
    this.#answer(form.dataset.question, value);
  }

  async #answer(questionId, answer) {
    if (!this.#task || this.#busy.has(questionId)) return;
    this.#busy.add(questionId);
    setText(this.#error, '');
    this.#render();
    try {
      await manager().answerQuestion(this.#task.id, questionId, answer);
      announce(`Answered “${answer}”`);
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
