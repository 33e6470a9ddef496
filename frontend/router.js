// Hash routing: #/ (dashboard), #/history?filters, #/tasks/<id>, #/questions, #/schedules,
// #/insights?window, #/workers. A hash that does
// not start with "#/" (a skip link's #main) leaves the current view alone.

const ROUTES = [
  { name: 'dashboard', pattern: /^\/?$/, tag: 'ts-dashboard-page', title: 'Dashboard', nav: '#/' },
  { name: 'history', pattern: /^\/history\/?$/, tag: 'ts-history-page', title: 'History', nav: '#/history' },
  { name: 'questions', pattern: /^\/questions\/?$/, tag: 'ts-questions-page', title: 'Questions', nav: '#/questions' },
  { name: 'schedules', pattern: /^\/schedules\/?$/, tag: 'ts-schedules-page', title: 'Schedules', nav: '#/schedules' },
  { name: 'insights', pattern: /^\/insights\/?$/, tag: 'ts-insights-page', title: 'Insights', nav: '#/insights' },
  { name: 'workers', pattern: /^\/workers\/?$/, tag: 'ts-workers-page', title: 'Workers', nav: '#/workers' },
  { name: 'task', pattern: /^\/tasks\/([^/]+)\/?$/, tag: 'ts-task-page', title: 'Task', nav: null },
];

export function parseHash(hash) {
  const raw = hash.startsWith('#') ? hash.slice(1) : hash;
  const [path, search = ''] = raw.split('?');
  for (const route of ROUTES) {
    const match = route.pattern.exec(path || '/');
    if (match) {
      return { route, params: match.slice(1).map(decodeURIComponent), query: new URLSearchParams(search) };
    }
  }
  return null;
}

export class Router {
  #outlet;
  #current = null;
  #currentKey = '';
  #onHashChange = () => this.render();

  constructor(outlet) {
    this.#outlet = outlet;
  }

  start() {
    window.addEventListener('hashchange', this.#onHashChange);
    this.render({ initial: true });
  }

  stop() {
    window.removeEventListener('hashchange', this.#onHashChange);
  }

  render({ initial = false } = {}) {
    let hash = location.hash || '#/';
    if (!hash.startsWith('#/')) {
      if (!initial) return; // an in-page anchor: stay where we are
      hash = '#/';
    }
    const found = parseHash(hash) ?? parseHash('#/');
    const { route, params, query } = found;
    const key = `${route.name}:${params.join('/')}`;
    if (this.#current && key === this.#currentKey && 'query' in this.#current) {
      this.#current.query = query; // same view, new filters: keep the element (and the focus)
      return;
    }
    const view = document.createElement(route.tag);
    if (route.name === 'task') view.setAttribute('task-id', params[0]);
    if (route.name === 'history' || route.name === 'insights') view.query = query;
    this.#outlet.replaceChildren(view);
    this.#current = view;
    this.#currentKey = key;
    if (route.name !== 'task') document.title = `${route.title} · taskstate`;
    for (const link of document.querySelectorAll('nav a[href^="#/"]')) {
      if (link.getAttribute('href') === route.nav) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (!initial) {
      // Move the focus to the new view's heading, so that keyboard and screen reader users
      // start reading there.
      const heading = view.querySelector('h1');
      (heading ?? this.#outlet).focus({ preventScroll: true });
      window.scrollTo(0, 0);
    }
  }
}
