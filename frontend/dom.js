// Building DOM nodes without HTML strings: every piece of text goes in through text nodes
// (or textContent), so nothing a user typed can ever become markup.

const FORBIDDEN = /^(on|style$|innerhtml$|outerhtml$|srcdoc$)/i;

/**
 * h('a', {href: '#/x', class: 'link'}, 'text', childNode, [more, children])
 * Strings become text nodes; null, undefined and false children are skipped. Properties that
 * exist on the element (value, checked, disabled, hidden, …) are set as properties when not
 * strings; everything else becomes an attribute. Event handlers and style attributes are
 * refused: listeners belong in connectedCallback, looks in the stylesheet.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN.test(key)) throw new Error(`h(): refusing to set ${key}`);
    if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (typeof value !== 'string' && key in el) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children (strings as text). */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * Makes `el`'s children exactly `nodes`, in order, moving only what is out of place: a node
 * that stays keeps what a person typed into it and, unless it moves, their focus.
 */
export function placeChildren(el, nodes) {
  const wanted = new Set(nodes);
  for (const child of [...el.children]) if (!wanted.has(child)) child.remove();
  nodes.forEach((node, i) => {
    if (el.children[i] !== node) el.insertBefore(node, el.children[i] ?? null);
  });
  return el;
}

/** Sets textContent only when it changed (keeps screen readers and layout quiet). */
export function setText(el, value) {
  const text = value === null || value === undefined ? '' : String(value);
  if (el.textContent !== text) el.textContent = text;
}

let counter = 0;
/** A document-unique id, for label/aria-labelledby pairs. */
export function uid(prefix = 'ts') {
  counter += 1;
  return `${prefix}-${counter}`;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * svg('rect', {x: 0, width: 10, class: 'node'}, children…): an SVG element, as h() makes HTML
 * ones: every prop an attribute (event handlers and style refused), strings as text nodes.
 */
export function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN.test(key)) throw new Error(`svg(): refusing to set ${key}`);
    el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}
