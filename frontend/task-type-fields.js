// TaskTypeFields: a job type picker and the fields of the chosen type's params (generated from
// its params_schema by schema-form.js), for the forms that make tasks: the start form and the
// schedule form. Not an element: a form places `typeField` and `params` where it wants them.

import { manager } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { buildParamFields } from './schema-form.js';

export class TaskTypeFields {
  #types = [];
  #prefix;
  #reader = null;
  #onChange = () => this.#showParams();

  /** @param {string} prefix  the ids: `${prefix}-type`, `${prefix}-type-hint`, `${prefix}-param-…` */
  constructor(prefix) {
    this.#prefix = prefix;
    this.select = h('select', { id: `${prefix}-type`, name: 'type', required: true, 'aria-describedby': `${prefix}-type-hint` });
    this.description = h('p', { class: 'hint', id: `${prefix}-type-hint` });
    this.params = h('fieldset', { class: 'params' });
    this.typeField = h('div', { class: 'field' },
      h('label', { for: this.select.id }, 'Type'), this.select, this.description);
    this.select.addEventListener('change', this.#onChange);
  }

  /** The chosen type's name. */
  get type() { return this.select.value; }

  /** Whether the job types have been read. */
  get loaded() { return this.#types.length > 0; }

  /** Reads the job types (GET /api/v2/task-types) and shows the preferred one's fields; throws on failure. */
  async load(preferred = 'demo.sleep') {
    setText(this.description, 'Loading job types…');
    try {
      this.#types = await manager().getTaskTypes();
    } catch (error) {
      setText(this.description, '');
      throw error;
    }
    replaceChildren(this.select, this.#types.map((t) => h('option', { value: t.name }, t.name)));
    const first = this.#types.find((t) => t.name === preferred) ?? this.#types[0];
    if (first) this.select.value = first.name;
    this.#showParams();
    return this.#types;
  }

  /** The params as the fields say; throws a FieldError (with the input to focus) when one cannot be read. */
  read() {
    return this.#reader ? this.#reader() : {};
  }

  #showParams() {
    const type = this.#types.find((t) => t.name === this.select.value);
    if (!type) {
      setText(this.description, 'No job types are registered.');
      this.params.replaceChildren();
      this.#reader = null;
      return;
    }
    const kind = type.kind === 'service' ? 'Service: stays up until stopped. ' : '';
    setText(this.description, `${kind}${type.description ?? ''}`);
    const { fields, read } = buildParamFields(type.params_schema, `${this.#prefix}-param`);
    this.#reader = read;
    replaceChildren(this.params, h('legend', {}, 'Parameters'),
      fields.length ? fields : h('p', { class: 'hint' }, 'This type takes no parameters.'));
  }
}
