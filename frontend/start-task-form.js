// <ts-start-task-form>: pick a job type, fill the form generated from its params_schema, start;
// an "Advanced" section sets priority, run_at, timeout and attempts (advanced-options.js).

import { ADVANCED_FIELDS, LIMITS, readAdvanced, serverFieldErrors } from './advanced-options.js';
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
  #advanced = buildAdvanced();
  #onSubmit = (event) => this.#start(event);
  #onChange = (event) => {
    if (event.target === this.#fields.select) setText(this.#error, '');
  };

  connectedCallback() {
    if (!this.#form) {
      this.#form = h('form', { class: 'panel start-form', 'aria-labelledby': 'start-heading', novalidate: true },
        h('h2', { id: 'start-heading' }, 'Start a task'),
        this.#fields.typeField,
        h('div', { class: 'field' }, h('label', { for: 'start-name' }, 'Name'), this.#name),
        this.#fields.params,
        this.#advanced.details,
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
    // The advanced options first: their errors are shown inline (and open the section),
    // where the browser's own bubble could not point into a closed <details>.
    const advanced = this.#advanced.read();
    if (!advanced) return;
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
    const request = { type: this.#fields.type, params, trigger: 'manual', trigger_source: 'web-ui', ...advanced };
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
      const shown = this.#advanced.show(serverFieldErrors(error?.body));
      setText(this.#error, shown ? 'The server refused an advanced option: see above.' : `Could not start the task: ${error.message}`);
    } finally {
      this.#submit.disabled = false;
    }
  }
}

const LABELS = { priority: 'Priority', run_at: 'Run at', timeout_seconds: 'Timeout', max_attempts: 'Max attempts' };
const HINTS = {
  priority: 'Higher runs first among queued tasks. Default 0.',
  run_at: 'Not before this time (your time zone). Default: now.',
  timeout_seconds: 'In seconds: fail the task after this long. Default: the server\'s.',
  max_attempts: 'How many times a task whose worker was lost is tried. Default 3.',
};

/** The <details> with the advanced inputs: read() answers the fields, or null after showing errors. */
function buildAdvanced() {
  const inputs = {};
  const errors = {};
  const rows = ADVANCED_FIELDS.map((name) => {
    const id = `start-${name.replace('_', '-')}`;
    const limit = LIMITS[name];
    inputs[name] = name === 'run_at'
      ? h('input', { id, name, type: 'datetime-local', step: '1' })
      : h('input', {
        id, name, type: 'number', inputmode: limit.integer ? 'numeric' : 'decimal', step: limit.integer ? '1' : 'any',
        min: String(limit.min ?? limit.exclusiveMin), max: String(limit.max),
        'aria-describedby': `${id}-hint ${id}-error`,
      });
    if (name === 'run_at') inputs[name].setAttribute('aria-describedby', `${id}-hint ${id}-error`);
    errors[name] = h('p', { class: 'field-error', id: `${id}-error`, dataset: { errorFor: name } });
    return h('div', { class: 'field', dataset: { option: name } },
      h('label', { for: id }, LABELS[name]), inputs[name], h('p', { class: 'hint', id: `${id}-hint` }, HINTS[name]), errors[name]);
  });
  const details = h('details', { class: 'advanced-options' }, h('summary', {}, 'Advanced'), h('div', { class: 'advanced-grid' }, rows));
  // An edited field's error goes away at once (the next start checks it again).
  details.addEventListener('input', (event) => {
    const name = event.target?.name;
    if (!(name in errors)) return;
    setText(errors[name], '');
    inputs[name].removeAttribute('aria-invalid');
  });
  const show = (found) => {
    let first = null;
    for (const name of ADVANCED_FIELDS) {
      setText(errors[name], found[name] ?? '');
      if (found[name]) {
        inputs[name].setAttribute('aria-invalid', 'true');
        first ??= inputs[name];
      } else {
        inputs[name].removeAttribute('aria-invalid');
      }
    }
    if (!first) return false;
    details.open = true;
    first.focus();
    return true;
  };
  const read = () => {
    const texts = Object.fromEntries(ADVANCED_FIELDS.map((name) => [name, inputs[name].value]));
    // A number input holding text it cannot parse reports '' as its value: say so, not "default".
    for (const name of ADVANCED_FIELDS) if (inputs[name].validity?.badInput) texts[name] = 'not a number';
    const { fields, errors: found } = readAdvanced(texts);
    return show(found) ? null : fields;
  };
  return { details, read, show };
}

export function registerStartTaskForm() {
  if (!customElements.get('ts-start-task-form')) customElements.define('ts-start-task-form', StartTaskForm);
}
