// A layered layout of a directed acyclic graph, pure (no DOM), for the dependency graph:
// each node goes in the layer of the longest path that reaches it (a node without
// predecessors in layer 0), layers left to right; within a layer, nodes are ordered by the
// mean position of their predecessors (one sweep), so that edges cross less. A cycle (which
// the server refuses, but a view may meet half-loaded data) does not hang it: the nodes of a
// cycle are placed after the layers of the others.

export const NODE_WIDTH = 176;
export const NODE_HEIGHT = 48;
const GAP_X = 64;
const GAP_Y = 20;
const MARGIN = 12;

/**
 * @param {string[]} ids  the nodes, in the order to keep where nothing else decides
 * @param {{from: string, to: string}[]} edges  `to` depends on `from`; edges to unknown nodes are dropped
 * @returns {{nodes: Map<string, {id, layer, x, y}>, edges: {from, to, points: number[][]}[], width, height}}
 */
export function layoutDag(ids, edges) {
  const known = new Set(ids);
  const kept = edges.filter((e) => known.has(e.from) && known.has(e.to) && e.from !== e.to);
  const layers = longestPathLayers(ids, kept);
  const columns = [];
  for (const id of ids) (columns[layers.get(id)] ??= []).push(id);
  const row = new Map();
  const predecessors = new Map(ids.map((id) => [id, []]));
  for (const e of kept) predecessors.get(e.to).push(e.from);
  for (const column of columns) {
    if (!column) continue;
    const weight = (id, index) => {
      const rows = predecessors.get(id).map((p) => row.get(p)).filter((r) => r !== undefined);
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : index;
    };
    const ordered = column.map((id, index) => ({ id, w: weight(id, index), index }))
      .sort((a, b) => a.w - b.w || a.index - b.index);
    ordered.forEach(({ id }, index) => row.set(id, index));
  }
  const tallest = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y;
  const nodes = new Map();
  for (const [layer, column] of columns.entries()) {
    if (!column) continue;
    const offset = ((tallest - column.length) * (NODE_HEIGHT + GAP_Y)) / 2; // centre short layers
    for (const id of column) {
      const x = MARGIN + layer * (NODE_WIDTH + GAP_X);
      const y = MARGIN + offset + row.get(id) * (NODE_HEIGHT + GAP_Y);
      nodes.set(id, { id, layer, x, y });
    }
  }
  const width = MARGIN * 2 + columns.length * NODE_WIDTH + Math.max(0, columns.length - 1) * GAP_X;
  return { nodes, edges: kept.map((e) => ({ ...e, points: edgePoints(nodes.get(e.from), nodes.get(e.to)) })), width, height };
}

/** layer(node) = 0 without predecessors, else 1 + the largest layer of its predecessors. */
export function longestPathLayers(ids, edges) {
  const incoming = new Map(ids.map((id) => [id, 0]));
  const outgoing = new Map(ids.map((id) => [id, []]));
  for (const e of edges) {
    incoming.set(e.to, incoming.get(e.to) + 1);
    outgoing.get(e.from).push(e.to);
  }
  const layer = new Map();
  const ready = ids.filter((id) => incoming.get(id) === 0);
  for (const id of ready) layer.set(id, 0);
  while (ready.length) { // Kahn's topological order; a node's layer is final when it is taken
    const id = ready.shift();
    for (const next of outgoing.get(id)) {
      layer.set(next, Math.max(layer.get(next) ?? 0, layer.get(id) + 1));
      incoming.set(next, incoming.get(next) - 1);
      if (incoming.get(next) === 0) ready.push(next);
    }
  }
  const deepest = Math.max(-1, ...layer.values());
  for (const id of ids) if (incoming.get(id) > 0) layer.set(id, deepest + 1); // in a cycle
  return layer;
}

/** From the right middle of `a` to the left middle of `b` (or around, when `b` is not to the right). */
function edgePoints(a, b) {
  const start = [a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2];
  const end = [b.x, b.y + NODE_HEIGHT / 2];
  if (end[0] > start[0]) return [start, end];
  return [[a.x + NODE_WIDTH / 2, a.y + NODE_HEIGHT], [b.x + NODE_WIDTH / 2, b.y + NODE_HEIGHT]];
}
