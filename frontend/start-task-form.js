// <ts-start-task-form>: pick a job type, fill the form generated from its params_schema, start.

import { announce, manager, taskTitle } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { FieldError, buildParamFields } from './schema-form.js';

export class StartTaskForm extends HTMLElement {
  #types = [];
  #form = null;
  #select = h('select', { id: 'start-type', name: 'type', required: true });
  #name = h('input', { id: 'start-name', name: 'name', type: 'text', maxlength: '200', autocomplete: 'off', placeholder: 'defaults to the type' });
  #description = h('p', { class: 'hint', id: 'start-type-hint' });
  #params = h('fieldset', { class: 'params' });
  #submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Start task');
  #status = h('p', { class: 'form-status', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #reader = null;
  #onSubmit = (event) => this.#start(event);
  #onChange = (event) => {
    if (event.target === this.#select) this.#showParams();
  };

  connectedCallback() {
    if (!this.#form) {
      this.#select.setAttribute('aria-describedby', 'start-type-hint');
      this.#form = h('form', { class: 'panel start-form', 'aria-labelledby': 'start-heading', novalidate: false },
        h('h2', { id: 'start-heading' }, 'Start a task'),
        h('div', { class: 'field' }, h('label', { for: 'start-type' }, 'Type'), this.#select, this.#description),
        h('div', { class: 'field' }, h('label', { for: 'start-name' }, 'Name'), this.#name),
        this.#params,
        h('div', { class: 'form-actions' }, this.#submit),
        this.#error,
        this.#status,
      );
      this.replaceChildren(this.#form);
    }
    this.#form.addEventListener('submit', this.#onSubmit);
    this.#form.addEventListener('change', this.#onChange);
    if (this.#types.length === 0) this.#load();
  }

  disconnectedCallback() {
    this.#form.removeEventListener('submit', this.#onSubmit);
    this.#form.removeEventListener('change', this.#onChange);
  }

  async #load() {
    this.#submit.disabled = true;
    setText(this.#description, 'Loading job types…');
    try {
      this.#types = await manager().getTaskTypes();
    } catch (error) {
      setText(this.#description, '');
      setText(this.#error, `Could not load the job types: ${error.message}`);
      return;
    }
    replaceChildren(this.#select, this.#types.map((t) => h('option', { value: t.name }, t.name)));
    const preferred = this.#types.find((t) => t.name === 'demo.sleep') ?? this.#types[0];
    if (preferred) this.#select.value = preferred.name;
    this.#submit.disabled = this.#types.length === 0;
    this.#showParams();
  }

  #showParams() {
    const type = this.#types.find((t) => t.name === this.#select.value);
    setText(this.#error, '');
    if (!type) {
      setText(this.#description, 'No job types are registered.');
      this.#params.replaceChildren();
      this.#reader = null;
      return;
    }
    const kind = type.kind === 'service' ? 'Service: stays up until stopped. ' : '';
    setText(this.#description, `${kind}${type.description ?? ''}`);
    const { fields, read } = buildParamFields(type.params_schema, 'start-param');
    this.#reader = read;
    replaceChildren(this.#params, h('legend', {}, 'Parameters'),
      fields.length ? fields : h('p', { class: 'hint' }, 'This type takes no parameters.'));
  }

  async #start(event) {
    event.preventDefault();
    setText(this.#error, '');
    setText(this.#status, '');
    if (!this.#form.reportValidity()) return;
    let params;
    try {
      params = this.#reader ? this.#reader() : {};
    } catch (error) {
      if (error instanceof FieldError) {
        setText(this.#error, error.message);
        error.input.focus();
        return;
      }
      throw error;
    }
    const request = { type: this.#select.value, params, trigger: 'manual', trigger_source: 'web-ui' };
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
