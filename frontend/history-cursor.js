// History's pager in the address: `#/history?…filters…&page=3&cursor=…`, so that a reload,
// back/forward or a shared link shows the same page. The API pages with an opaque cursor
// towards older tasks only, so the way back to newer pages is remembered per browser tab
// (sessionStorage): a link opened elsewhere offers the newest page instead.

const PAGER_KEYS = ['page', 'cursor'];
const STORAGE_KEY = 'taskstate.history.previous';

/** {page, cursor} from the address's query: page 1 (no cursor) unless both are valid. */
export function pagerOf(query) {
  const cursor = query.get('cursor');
  const page = Number(query.get('page'));
  if (!cursor || !Number.isInteger(page) || page < 2) return { page: 1, cursor: null };
  return { page, cursor };
}

/** The query without the pager: the filters alone. */
export function filtersOf(query) {
  const filters = new URLSearchParams(query);
  for (const key of PAGER_KEYS) filters.delete(key);
  return filters;
}

/** The address of page `page` (at `cursor`) with these filters. */
export function pageHash(filters, page, cursor) {
  const query = filtersOf(filters);
  if (page > 1 && cursor) {
    query.set('page', String(page));
    query.set('cursor', cursor);
  }
  const text = query.toString();
  return `#/history${text ? `?${text}` : ''}`;
}

/** Which page came before which in this tab: hash of a page -> hash of the newer one. */
export class PreviousPages {
  #storage;

  constructor(storage) {
    this.#storage = storage;
  }

  #read() {
    try {
      const value = JSON.parse(this.#storage?.getItem(STORAGE_KEY) ?? '{}');
      return value && typeof value === 'object' ? value : {};
    } catch {
      return {};
    }
  }

  remember(olderHash, newerHash) {
    const map = this.#read();
    map[olderHash] = newerHash;
    const keys = Object.keys(map);
    for (const key of keys.slice(0, Math.max(0, keys.length - 200))) delete map[key]; // bounded
    try {
      this.#storage?.setItem(STORAGE_KEY, JSON.stringify(map));
    } catch {
      // Storage full or refused: the pager falls back to the newest page.
    }
  }

  /** The newer page of `hash`, or undefined when this tab did not come from it. */
  newerThan(hash) {
    return this.#read()[hash];
  }
}
