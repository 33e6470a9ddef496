// History's pager in the address: parsing, building, and the way back to newer pages.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PreviousPages, filtersOf, pageHash, pagerOf } from '../history-cursor.js';

class MemoryStorage {
  #items = new Map();
  getItem(key) { return this.#items.has(key) ? this.#items.get(key) : null; }
  setItem(key, value) { this.#items.set(key, String(value)); }
}

test('the pager is read from the query; anything odd means the first page', () => {
  assert.deepEqual(pagerOf(new URLSearchParams('state=failed&page=3&cursor=abc')), { page: 3, cursor: 'abc' });
  assert.deepEqual(pagerOf(new URLSearchParams('page=3')), { page: 1, cursor: null });
  assert.deepEqual(pagerOf(new URLSearchParams('page=x&cursor=abc')), { page: 1, cursor: null });
  assert.deepEqual(pagerOf(new URLSearchParams('page=1&cursor=abc')), { page: 1, cursor: null });
  assert.deepEqual(pagerOf(new URLSearchParams('')), { page: 1, cursor: null });
});

test('page addresses keep the filters and replace the pager', () => {
  const query = new URLSearchParams('q=a b&state=failed&page=2&cursor=old');
  assert.equal(filtersOf(query).toString(), 'q=a+b&state=failed');
  assert.equal(pageHash(query, 3, 'eyJ-x_'), '#/history?q=a+b&state=failed&page=3&cursor=eyJ-x_');
  assert.equal(pageHash(query, 1, null), '#/history?q=a+b&state=failed');
  assert.equal(pageHash(new URLSearchParams(), 1, null), '#/history');
});

test('the newer page is remembered per tab, survives a new instance, and is bounded', () => {
  const storage = new MemoryStorage();
  new PreviousPages(storage).remember('#/history?page=2&cursor=b', '#/history');
  const again = new PreviousPages(storage); // a reload
  assert.equal(again.newerThan('#/history?page=2&cursor=b'), '#/history');
  assert.equal(again.newerThan('#/history?page=9&cursor=z'), undefined);
  for (let i = 0; i < 300; i += 1) again.remember(`#/p${i}`, `#/p${i - 1}`);
  assert.equal(Object.keys(JSON.parse(storage.getItem('taskstate.history.previous'))).length, 200);
  assert.equal(again.newerThan('#/p299'), '#/p298');
  const broken = new MemoryStorage();
  broken.setItem('taskstate.history.previous', '{not json');
  assert.equal(new PreviousPages(broken).newerThan('#/x'), undefined);
  assert.equal(new PreviousPages(undefined).newerThan('#/x'), undefined);
});
