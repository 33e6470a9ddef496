// <ts-start-task-form>: pick a job type, fill the form generated from its params_schema, start.

import { announce, manager, taskTitle } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { FieldError } from './schema-form.js';
import { TaskTypeFields } from './task-type-fields.js';

export class StartTaskForm extends HTMLElement {
  #form = null;
  #fields = new TaskTypeFields('start');
  #name = h('input', { id: 'start-name', name: 'name', type: 'text', maxlength: '200', autocomplete: 'off', placeholder: 'defaults to the type' });
  #submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Start task');
  #status = h('p', { class: 'form-status', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #onSubmit = (event) => this.#start(event);
  #onChange = (event) => {
    if (event.target === this.#fields.select) setText(this.#error, '');
  };

  connectedCallback() {
    if (!this.#form) {
      this.#form = h('form', { class: 'panel start-form', 'aria-labelledby': 'start-heading', novalidate: false },
        h('h2', { id: 'start-heading' }, 'Start a task'),
        this.#fields.typeField,
        h('div', { class: 'field' }, h('label', { for: 'start-name' }, 'Name'), this.#name),
        this.#fields.params,
        h('div', { class: 'form-actions' }, this.#submit),
        this.#error,
        this.#status,
      );
      this.replaceChildren(this.#form);
    }
    this.#form.addEventListener('submit', this.#onSubmit);
    this.#form.addEventListener('change', this.#onChange);
    if (!this.#fields.loaded) this.#load();
  }

  disconnectedCallback() {
    this.#form.removeEventListener('submit', this.#onSubmit);
    this.#form.removeEventListener('change', this.#onChange);
  }

  async #load() {
    this.#submit.disabled = true;
    try {
      const types = await this.#fields.load();
      this.#submit.disabled = types.length === 0;
    } catch (error) {
      setText(this.#error, `Could not load the job types: ${error.message}`);
    }
  }

  async #start(event) {
    event.preventDefault();
    setText(this.#error, '');
    setText(this.#status, '');
    if (!this.#form.reportValidity()) return;
    let params;
    try {
      params = this.#fields.read();
    } catch (error) {
      if (error instanceof FieldError) {
        setText(this.#error, error.message);
        error.input.focus();
        return;
      }
      throw error;
    }
    const request = { type: this.#fields.type, params, trigger: 'manual', trigger_source: 'web-ui' };
    const name = this.#name.value.trim();
    if (name) request.name = name;
    this.#submit.disabled = true;
    try {
      const task = await manager().startTask(request);
      replaceChildren(this.#status, 'Started ',
        h('a', { href: `#/tasks/${encodeURIComponent(task.id)}` }, `“${taskTitle(task)}”`), '.');
      announce(`Started “${taskTitle(task)}”`);
      this.#name.value = '';
    } catch (error) {
      setText(this.#error, `Could not start the task: ${error.message}`);
    } finally {
      this.#submit.disabled = false;
    }
  }
}

export function registerStartTaskForm() {
  if (!customElements.get('ts-start-task-form')) customElements.define('ts-start-task-form', StartTaskForm);
}
