// <ts-schedule-form>: makes a schedule (CONTRACT §6): a job type and its params (the fields
// generated from its schema), a name, when it fires (a cron expression or every N seconds,
// minutes, hours or days, in a timezone), what happens when a firing finds the previous task
// still running (overlap) and which missed firings are made up for (catch_up). Fires
// `ts-schedule-created` (detail: the schedule) when the server has made it.

import { announce, manager } from './context.js';
import { h, setText } from './dom.js';
import { CATCH_UP_POLICIES, OVERLAP_POLICIES } from './schedules.js';
import { FieldError } from './schema-form.js';
import { TaskTypeFields } from './task-type-fields.js';

const UNITS = [['seconds', 1], ['minutes', 60], ['hours', 3600], ['days', 86400]];
const OVERLAP_TEXT = {
  skip: 'skip the firing', queue: 'queue another task', cancel_previous: 'cancel the previous task',
};
const CATCH_UP_TEXT = { none: 'none', latest: 'the latest one', all: 'every one' };

export class ScheduleForm extends HTMLElement {
  #form = null;
  #fields = new TaskTypeFields('schedule');
  #els = {};
  #onSubmit = (event) => this.#create(event);
  #onChange = (event) => {
    if (event.target.name === 'cadence') this.#showCadence();
  };

  connectedCallback() {
    if (!this.#form) this.#build();
    this.#form.addEventListener('submit', this.#onSubmit);
    this.#form.addEventListener('change', this.#onChange);
    if (!this.#fields.loaded) this.#load();
  }

  disconnectedCallback() {
    this.#form.removeEventListener('submit', this.#onSubmit);
    this.#form.removeEventListener('change', this.#onChange);
  }

  #build() {
    const e = this.#els;
    const field = (id, label, input, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), input,
      hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null);
    const select = (id, name, options, texts, value) => {
      const el = h('select', { id, name }, options.map((o) => h('option', { value: o }, `${o} — ${texts[o]}`)));
      el.value = value;
      return el;
    };
    const radio = (value, label, checked) => h('label', {},
      h('input', { type: 'radio', name: 'cadence', value, checked }), label);
    e.name = h('input', { id: 'schedule-name', name: 'name', type: 'text', maxlength: '200', autocomplete: 'off', placeholder: 'defaults to the type' });
    e.cron = h('input', { id: 'schedule-cron', name: 'cron', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '0 3 * * *', 'aria-describedby': 'schedule-cron-hint', class: 'mono' });
    e.every = h('input', { id: 'schedule-every', name: 'every', type: 'number', min: '1', step: '1', value: '1', inputmode: 'numeric' });
    e.unit = h('select', { id: 'schedule-unit', name: 'unit', 'aria-label': 'Unit' }, UNITS.map(([u]) => h('option', { value: u }, u)));
    e.unit.value = 'hours';
    e.timezone = h('input', { id: 'schedule-timezone', name: 'timezone', type: 'text', value: 'UTC', list: 'schedule-zones', autocomplete: 'off' });
    const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    e.overlap = select('schedule-overlap', 'overlap', OVERLAP_POLICIES, OVERLAP_TEXT, 'skip');
    e.catchUp = select('schedule-catch-up', 'catch_up', CATCH_UP_POLICIES, CATCH_UP_TEXT, 'latest');
    e.paused = h('input', { id: 'schedule-paused', name: 'paused', type: 'checkbox' });
    e.cronField = field('schedule-cron', 'Cron expression', e.cron, 'minute hour day-of-month month day-of-week');
    e.everyField = h('div', { class: 'field' }, h('label', { for: 'schedule-every' }, 'Every'),
      h('div', { class: 'every-row' }, e.every, e.unit));
    e.submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create schedule');
    e.error = h('p', { class: 'form-error', role: 'alert' });
    e.status = h('p', { class: 'form-status', role: 'status' });
    this.#form = h('form', { class: 'panel schedule-form', 'aria-labelledby': 'schedule-form-h' },
      h('h2', { id: 'schedule-form-h' }, 'New schedule'),
      this.#fields.typeField,
      field('schedule-name', 'Name', e.name),
      this.#fields.params,
      h('fieldset', {}, h('legend', {}, 'When'),
        h('div', { class: 'cadence-choice' }, radio('every', 'At an interval', true), radio('cron', 'On a cron schedule', false)),
        e.everyField, e.cronField,
        field('schedule-timezone', 'Timezone', e.timezone),
        h('datalist', { id: 'schedule-zones' }, zones.map((z) => h('option', { value: z })))),
      field('schedule-overlap', 'When the previous task still runs', e.overlap),
      field('schedule-catch-up', 'Firings missed while no instance ran', e.catchUp),
      h('div', { class: 'field field-check' }, e.paused, h('label', { for: 'schedule-paused' }, 'Create it paused')),
      h('div', { class: 'form-actions' }, e.submit),
      e.error, e.status);
    this.replaceChildren(this.#form);
    this.#showCadence();
  }

  #showCadence() {
    const cron = this.#form.elements.cadence.value === 'cron';
    this.#els.cronField.hidden = !cron;
    this.#els.cron.required = cron;
    this.#els.everyField.hidden = cron;
    this.#els.every.required = !cron;
  }

  async #load() {
    this.#els.submit.disabled = true;
    try {
      const types = await this.#fields.load();
      this.#els.submit.disabled = types.length === 0;
    } catch (error) {
      setText(this.#els.error, `Could not load the job types: ${error.message}`);
    }
  }

  /** The request for POST /api/v2/schedules, or null (the problem shown) when a field is wrong. */
  #request() {
    const e = this.#els;
    let params;
    try {
      params = this.#fields.read();
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      setText(e.error, error.message);
      error.input.focus();
      return null;
    }
    const request = {
      type: this.#fields.type, params, timezone: e.timezone.value.trim() || 'UTC',
      overlap: e.overlap.value, catch_up: e.catchUp.value, paused: e.paused.checked,
    };
    const name = e.name.value.trim();
    if (name) request.name = name;
    if (this.#form.elements.cadence.value === 'cron') request.cron = e.cron.value.trim();
    else request.interval_seconds = Number(e.every.value) * UNITS.find(([u]) => u === e.unit.value)[1];
    return request;
  }

  async #create(event) {
    event.preventDefault();
    const e = this.#els;
    setText(e.error, '');
    setText(e.status, '');
    if (!this.#form.reportValidity()) return;
    const request = this.#request();
    if (!request) return;
    e.submit.disabled = true;
    try {
      const schedule = await manager().schedules.create(request);
      setText(e.status, `Created “${schedule.name ?? schedule.type}”.`);
      announce(`Created the schedule “${schedule.name ?? schedule.type}”`);
      e.name.value = '';
      this.dispatchEvent(new CustomEvent('ts-schedule-created', { bubbles: true, detail: schedule }));
    } catch (error) {
      setText(e.error, `Could not create the schedule: ${error.message}`);
    } finally {
      e.submit.disabled = false;
    }
  }
}

export function registerScheduleForm() {
  if (!customElements.get('ts-schedule-form')) customElements.define('ts-schedule-form', ScheduleForm);
}
