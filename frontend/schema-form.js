// Form fields generated from a job type's params JSON Schema (what pydantic produces):
// strings, numbers, integers, booleans, enums, optional values (anyOf with null), lists of
// strings or numbers; anything else is edited as JSON. An empty field means "the default":
// its key is left out and the server applies the schema's default.

import { h, uid } from './dom.js';

function resolve(schema, root) {
  let node = schema ?? {};
  for (let depth = 0; depth < 10 && node.$ref; depth += 1) {
    const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(node.$ref);
    const target = match ? root?.[match[1]]?.[match[2]] : undefined;
    if (!target) break;
    node = { ...target, ...Object.fromEntries(Object.entries(node).filter(([k]) => k !== '$ref')) };
  }
  if (Array.isArray(node.allOf) && node.allOf.length === 1) {
    node = { ...resolve(node.allOf[0], root), ...node, allOf: undefined };
  }
  return node;
}

/** {base, nullable}: the schema of the value, and whether null is allowed. */
export function describeProperty(schema, root) {
  const node = resolve(schema, root);
  if (Array.isArray(node.anyOf) || Array.isArray(node.oneOf)) {
    const variants = (node.anyOf ?? node.oneOf).map((v) => resolve(v, root));
    const nonNull = variants.filter((v) => v.type !== 'null');
    const nullable = nonNull.length < variants.length;
    if (nonNull.length === 1) {
      return { base: { ...nonNull[0], title: node.title, description: node.description, default: node.default }, nullable };
    }
    return { base: { ...node, type: undefined }, nullable };
  }
  return { base: node, nullable: Array.isArray(node.type) && node.type.includes('null') };
}

function kindOf(base) {
  const type = Array.isArray(base.type) ? base.type.find((t) => t !== 'null') : base.type;
  if (Array.isArray(base.enum)) return 'enum';
  if (type === 'boolean') return 'boolean';
  if (type === 'integer' || type === 'number') return type;
  if (type === 'string') return 'string';
  if (type === 'array') {
    const items = base.items ?? {};
    if (items.type === 'string') return 'string-list';
    if (items.type === 'integer' || items.type === 'number') return 'number-list';
  }
  return 'json';
}

export class FieldError extends Error {
  constructor(input, message) {
    super(message);
    this.input = input;
  }
}

/**
 * Builds the fields for `schema`. Answers {fields: [Element], read(): params}; read() throws a
 * FieldError (with the input to focus) when a field cannot be parsed.
 */
export function buildParamFields(schema, idPrefix = uid('param')) {
  const root = schema ?? {};
  const properties = root.properties ?? {};
  const required = new Set(root.required ?? []);
  const readers = [];
  const fields = [];
  for (const [key, propSchema] of Object.entries(properties)) {
    const { base, nullable } = describeProperty(propSchema, root);
    const kind = kindOf(base);
    const id = `${idPrefix}-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const hintId = `${id}-hint`;
    const label = base.title || key;
    const hints = [];
    if (base.description) hints.push(base.description);
    if (kind === 'string-list' || kind === 'number-list') hints.push('One value per line.');
    if (kind === 'json') hints.push('JSON.');
    const hasDefault = 'default' in base && base.default !== null;
    if (!hasDefault && !required.has(key)) hints.push('Optional.');
    const common = { id, name: key, 'aria-describedby': hints.length ? hintId : undefined };
    let input;
    let read;
    switch (kind) {
      case 'enum': {
        const options = base.enum.map((value) => h('option', { value: String(value) }, String(value)));
        const blank = !required.has(key) || nullable ? [h('option', { value: '' }, hasDefault ? '(default)' : '—')] : [];
        input = h('select', common, blank, options);
        if (hasDefault) input.value = String(base.default);
        read = () => {
          if (input.value === '') return undefined;
          return base.enum.find((v) => String(v) === input.value);
        };
        break;
      }
      case 'boolean':
        input = h('input', { ...common, type: 'checkbox' });
        input.checked = Boolean(base.default);
        read = () => input.checked;
        break;
      case 'integer':
      case 'number': {
        const min = base.minimum ?? base.exclusiveMinimum;
        const max = base.maximum ?? base.exclusiveMaximum;
        input = h('input', {
          ...common, type: 'number', inputmode: kind === 'integer' ? 'numeric' : 'decimal',
          step: kind === 'integer' ? '1' : 'any',
          min: min !== undefined ? String(min) : undefined,
          max: max !== undefined ? String(max) : undefined,
          required: required.has(key) && !hasDefault,
        });
        if (hasDefault) input.value = String(base.default);
        read = () => {
          if (input.value.trim() === '') return undefined;
          const n = Number(input.value);
          if (Number.isNaN(n) || (kind === 'integer' && !Number.isInteger(n))) {
            throw new FieldError(input, `${label}: enter ${kind === 'integer' ? 'a whole number' : 'a number'}`);
          }
          return n;
        };
        break;
      }
      case 'string': {
        const long = !base.maxLength || base.maxLength > 300;
        input = long
          ? h('textarea', { ...common, rows: 2, maxlength: base.maxLength ? String(base.maxLength) : undefined })
          : h('input', { ...common, type: 'text', maxlength: base.maxLength ? String(base.maxLength) : undefined });
        input.required = required.has(key) && !hasDefault;
        if (hasDefault) input.value = String(base.default);
        read = () => (input.value === '' ? undefined : input.value);
        break;
      }
      case 'string-list':
      case 'number-list': {
        input = h('textarea', { ...common, rows: 3 });
        if (Array.isArray(base.default)) input.value = base.default.join('\n');
        read = () => {
          const lines = input.value.split('\n').map((s) => s.trim()).filter(Boolean);
          if (lines.length === 0) return undefined;
          if (kind === 'string-list') return lines;
          return lines.map((line) => {
            const n = Number(line);
            if (Number.isNaN(n)) throw new FieldError(input, `${label}: “${line}” is not a number`);
            return n;
          });
        };
        break;
      }
      default: {
        input = h('textarea', { ...common, rows: 3, class: 'mono', spellcheck: 'false' });
        if ('default' in base) input.value = JSON.stringify(base.default, null, 2);
        read = () => {
          if (input.value.trim() === '') return undefined;
          try {
            return JSON.parse(input.value);
          } catch {
            throw new FieldError(input, `${label}: not valid JSON`);
          }
        };
      }
    }
    const labelEl = h('label', { for: id }, label, required.has(key) && !hasDefault ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null);
    const hint = hints.length ? h('p', { class: 'hint', id: hintId }, hints.join(' ')) : null;
    fields.push(h('div', { class: kind === 'boolean' ? 'field field-check' : 'field', dataset: { param: key } },
      kind === 'boolean' ? [input, labelEl] : [labelEl, input], hint));
    readers.push([key, read, input]);
  }
  return {
    fields,
    read() {
      const params = {};
      for (const [key, read, input] of readers) {
        input.removeAttribute('aria-invalid');
        let value;
        try {
          value = read();
        } catch (error) {
          input.setAttribute('aria-invalid', 'true');
          throw error;
        }
        if (value !== undefined) params[key] = value;
      }
      return params;
    },
  };
}
