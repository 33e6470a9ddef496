// <ts-insights-page>: charts of GET /api/v2/insights for a window (#/insights?window=6h&type=etl):
// throughput over time, outcomes by type, duration percentiles by type, and the queue (depth
// and wait). Drawn by uPlot (frontend/vendor/uplot/, loaded only by this page); the numbers
// come from insights-model.js. Refreshed every half minute while shown.

import { manager, navigate } from './context.js';
import { h, replaceChildren, setText } from './dom.js';
import { formatDuration, formatNumber, formatPercent } from './format.js';
import {
  OUTCOMES,
  PERCENTILES,
  WINDOWS,
  choicesQuery,
  durationBars,
  formatSeconds,
  outcomeBars,
  queueColumns,
  queuePeaks,
  readChoices,
  throughputColumns,
  totals,
} from './insights-model.js';

const REFRESH_MS = 30_000;
const HEIGHT = 220;
let uPlotModule = null;

function loadUPlot() {
  uPlotModule ??= import('./vendor/uplot/uPlot.esm.js').then((m) => m.default);
  return uPlotModule;
}

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

function palette() {
  return {
    completed: color('--c-completed'),
    failed: color('--c-failed'),
    cancelled: color('--c-cancelled'),
    queued: color('--c-queued'),
    running: color('--c-running'),
    accent: color('--accent'),
    collecting: color('--c-collecting'),
    muted: color('--muted'),
    border: color('--border'),
  };
}

function axis(c, extra = {}) {
  return { stroke: c.muted, grid: { stroke: c.border, width: 1 }, ticks: { stroke: c.border, width: 1 }, ...extra };
}

/** An x axis of categories (x = 0, 1, …) labelled with `names`. */
function categoryAxis(c, names) {
  return axis(c, {
    splits: () => names.map((_, i) => i),
    values: (_u, splits) => splits.map((i) => names[i] ?? ''),
    grid: { show: false },
  });
}

const count = (_u, v) => (v === null || v === undefined ? '—' : formatNumber(v));
const seconds = (v) => formatSeconds(v, formatDuration);
const secondsValue = (_u, v) => seconds(v);

export class InsightsPage extends HTMLElement {
  #query = new URLSearchParams();
  #form = null;
  #window = h('select', { name: 'window', 'aria-label': 'Window' }, WINDOWS.map((w) => h('option', { value: w }, `Last ${w}`)));
  #type = h('select', { name: 'type', 'aria-label': 'Task type' }, h('option', { value: '' }, 'All types'));
  #summary = h('dl', { class: 'insights-summary', role: 'status' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #table = h('tbody');
  #figures = {};
  #plots = new Map();
  #timer = null;
  #request = 0;
  #resize = new ResizeObserver(() => this.#fit());
  #onChange = () => navigate(`#/insights${this.#queryText()}`);
  #onClick = (event) => {
    if (event.target.closest('button[data-action="refresh"]')) this.#load();
  };

  /** Called by the router with the address's query. */
  set query(query) {
    this.#query = new URLSearchParams(query);
    if (this.#form) {
      this.#fillForm();
      this.#load();
    }
  }

  connectedCallback() {
    if (!this.#form) this.#build();
    this.#form.addEventListener('change', this.#onChange);
    this.addEventListener('click', this.#onClick);
    this.#fillForm();
    this.#loadTypes();
    this.#load();
    this.#timer = setInterval(() => this.#load(), REFRESH_MS);
    this.#resize.observe(this.#figures.throughput); // a block: the charts take its width
  }

  disconnectedCallback() {
    this.#form.removeEventListener('change', this.#onChange);
    this.removeEventListener('click', this.#onClick);
    clearInterval(this.#timer);
    this.#resize.disconnect();
    for (const plot of this.#plots.values()) plot.destroy();
    this.#plots.clear();
  }

  #build() {
    const figure = (key, title, note) => {
      const body = h('div', { class: 'chart', dataset: { chart: key } });
      this.#figures[key] = body;
      return h('figure', { class: 'panel chart-panel', dataset: { figure: key } },
        h('figcaption', {}, h('h2', {}, title), h('p', {}, note)), body);
    };
    this.#form = h('form', { class: 'filters insights-filters', role: 'search', 'aria-label': 'Insights window' },
      h('label', {}, 'Window ', this.#window),
      h('label', {}, 'Type ', this.#type),
      h('button', { type: 'button', class: 'btn btn-small btn-quiet', dataset: { action: 'refresh' } }, 'Refresh'));
    this.append(
      h('h1', { class: 'page-title', tabindex: '-1' }, 'Insights'),
      this.#form,
      this.#error,
      this.#summary,
      h('div', { class: 'insights-grid' },
        figure('throughput', 'Throughput', 'Tasks finished per interval, by outcome.'),
        figure('outcomes', 'Outcomes by type', 'Completed, failed and cancelled tasks of each type.'),
        figure('durations', 'Duration percentiles', 'p50, p95 and p99 of finished − started, per type.'),
        figure('queue', 'Queue', 'Tasks waiting at the end of each interval, and how long those that started had waited.')),
      h('section', { class: 'panel' },
        h('h2', {}, 'By type'),
        h('div', { class: 'table-wrap' }, h('table', { class: 'task-table insights-table' },
          h('caption', { class: 'visually-hidden' }, 'Outcomes and durations by type'),
          h('thead', {}, h('tr', {}, ['Type', 'Completed', 'Failed', 'Cancelled', 'Success', 'p50', 'p95', 'p99']
            .map((c) => h('th', { scope: 'col' }, c)))),
          this.#table))));
  }

  #fillForm() {
    const choices = readChoices(this.#query);
    this.#window.value = choices.window;
    if (choices.type && ![...this.#type.options].some((o) => o.value === choices.type)) {
      this.#type.append(h('option', { value: choices.type }, choices.type));
    }
    this.#type.value = choices.type;
  }

  #queryText() {
    const text = choicesQuery({ window: this.#window.value, type: this.#type.value });
    return text ? `?${text}` : '';
  }

  async #loadTypes() {
    try {
      const types = await manager().getTaskTypes();
      const chosen = this.#type.value;
      replaceChildren(this.#type, h('option', { value: '' }, 'All types'),
        types.map((t) => h('option', { value: t.name }, t.name)));
      if (chosen && !types.some((t) => t.name === chosen)) this.#type.append(h('option', { value: chosen }, chosen));
      this.#type.value = chosen;
    } catch {
      // The list of types is a convenience; the charts do not need it.
    }
  }

  async #load() {
    const request = ++this.#request;
    const choices = readChoices(this.#query);
    try {
      const [insights, uPlot] = await Promise.all([manager().getInsights({ window: choices.window, type: choices.type }), loadUPlot()]);
      if (request !== this.#request || !this.isConnected) return;
      setText(this.#error, '');
      this.#render(insights, uPlot);
    } catch (error) {
      if (request === this.#request) setText(this.#error, `Could not load the insights: ${error.message}`);
    }
  }

  #render(insights, uPlot) {
    this.dataset.since = insights.since;
    this.dataset.until = insights.until;
    const sum = totals(insights);
    const peaks = queuePeaks(insights);
    const tile = (key, label, value) => h('div', {}, h('dt', {}, label), h('dd', { dataset: { total: key } }, value));
    replaceChildren(this.#summary,
      tile('finished', 'Finished', formatNumber(sum.finished)),
      OUTCOMES.map((o) => tile(o, o[0].toUpperCase() + o.slice(1), formatNumber(sum[o]))),
      tile('success', 'Success rate', sum.successRate === null ? '—' : formatPercent(sum.successRate)),
      tile('depth', 'Deepest queue', formatNumber(peaks.depth)),
      tile('wait', 'Longest wait', seconds(peaks.wait)));
    this.#renderTable(insights);
    const c = palette();
    const width = this.#width();
    const outcomes = outcomeBars(insights);
    const durations = durationBars(insights);
    const bars = uPlot.paths.bars({ size: [0.6, 64] });
    this.#plot('throughput', uPlot, {
      width,
      height: HEIGHT,
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [axis(c), axis(c)],
      series: [
        {},
        ...OUTCOMES.map((o) => ({ label: o, stroke: c[o], fill: `${c[o]}22`, width: 2, value: count, paths: uPlot.paths.stepped({ align: 1 }) })),
      ],
    }, throughputColumns(insights));
    // Stacked: each outcome's bar reaches the sum so far; the tallest is drawn first.
    this.#plot('outcomes', uPlot, {
      width,
      height: HEIGHT,
      scales: { x: { time: false, range: [-0.5, Math.max(outcomes.types.length, 1) - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [categoryAxis(c, outcomes.types), axis(c)],
      cursor: { points: { show: false } },
      series: [
        { value: (_u, v) => outcomes.types[v] ?? '' },
        ...[...OUTCOMES].reverse().map((o) => ({
          label: o, stroke: c[o], fill: c[o], paths: bars, points: { show: false },
          value: (_u, _v, _s, i) => (i === null || i === undefined ? '—' : formatNumber(outcomes.raw[o][i])),
        })),
      ],
    }, [outcomes.x, ...[...OUTCOMES].reverse().map((o) => outcomes.tops[o])]);
    // p99 ≥ p95 ≥ p50: each percentile's bar drawn over the longer one.
    const shades = { p99: c.collecting, p95: c.running, p50: c.accent };
    this.#plot('durations', uPlot, {
      width,
      height: HEIGHT,
      scales: { x: { time: false, range: [-0.5, Math.max(durations.types.length, 1) - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(0.001, max)] } },
      axes: [categoryAxis(c, durations.types), axis(c, { values: (_u, splits) => splits.map(seconds), size: 70 })],
      cursor: { points: { show: false } },
      series: [
        { value: (_u, v) => durations.types[v] ?? '' },
        ...[...PERCENTILES].reverse().map((p) => ({ label: p, stroke: shades[p], fill: shades[p], paths: bars, points: { show: false }, value: secondsValue })),
      ],
    }, [durations.x, ...[...PERCENTILES].reverse().map((p) => durations[p])]);
    this.#plot('queue', uPlot, {
      width,
      height: HEIGHT,
      scales: { depth: { range: (_u, _min, max) => [0, Math.max(1, max)] }, wait: { range: (_u, _min, max) => [0, Math.max(1, max ?? 0)] } },
      axes: [
        axis(c),
        axis(c, { scale: 'depth' }),
        axis(c, { scale: 'wait', side: 1, grid: { show: false }, values: (_u, splits) => splits.map(seconds), size: 70 }),
      ],
      series: [
        {},
        { label: 'queue depth', scale: 'depth', stroke: c.queued, fill: `${c.queued}22`, width: 2, value: count, paths: uPlot.paths.stepped({ align: 1 }) },
        { label: 'mean wait', scale: 'wait', stroke: c.running, width: 2, value: secondsValue, spanGaps: false },
        { label: 'longest wait', scale: 'wait', stroke: c.failed, width: 1, dash: [4, 4], value: secondsValue, spanGaps: false },
      ],
    }, queueColumns(insights));
  }

  #renderTable(insights) {
    const durations = new Map((insights.durations ?? []).map((d) => [d.type, d]));
    if (!(insights.by_type ?? []).length) {
      replaceChildren(this.#table, h('tr', { class: 'empty-row' }, h('td', { colspan: '8' }, 'No task finished in this window.')));
      return;
    }
    replaceChildren(this.#table, insights.by_type.map((row) => {
      const d = durations.get(row.type);
      const finished = row.completed + row.failed + row.cancelled;
      const cell = (label, value, key) => h('td', { class: 'num', 'data-label': label, dataset: key ? { cell: key } : {} }, value);
      return h('tr', { dataset: { type: row.type } },
        h('th', { scope: 'row', 'data-label': 'Type' }, row.type),
        ...OUTCOMES.map((o) => cell(o, formatNumber(row[o]), o)),
        cell('Success', formatPercent((100 * row.completed) / finished), 'success'),
        ...PERCENTILES.map((p) => cell(p, d ? seconds(d[`${p}_seconds`]) : '—', p)));
    }));
  }

  #plot(key, uPlot, options, data) {
    this.#plots.get(key)?.destroy();
    const target = this.#figures[key];
    target.replaceChildren();
    this.#plots.set(key, new uPlot(options, data, target));
  }

  #width() {
    const first = Object.values(this.#figures)[0];
    return Math.max(240, Math.floor(first?.clientWidth || 480));
  }

  #fit() {
    const width = this.#width();
    for (const plot of this.#plots.values()) {
      if (Math.abs(plot.width - width) > 2) plot.setSize({ width, height: HEIGHT });
    }
  }
}

export function registerInsightsPage() {
  if (!customElements.get('ts-insights-page')) customElements.define('ts-insights-page', InsightsPage);
}
