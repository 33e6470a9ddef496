// Workflows (CONTRACT §6) as the views see them, pure (no DOM): a tree of tasks from its flat
// list, counts by state, what a blocked task waits for, approval gates, dependency edges.

/** Whether a question is a task's approval gate (answered `approve` or `reject`). */
export function isApprovalGate(question) {
  return question?.context?.kind === 'approval';
}

function byCreation(a, b) {
  return String(a.created_at).localeCompare(String(b.created_at)) || String(a.id).localeCompare(String(b.id));
}

/**
 * The tree under `rootId` from a flat list of tasks: {task, children: [nodes]}, children oldest
 * first. A task whose parent is not in the list hangs under the root, so that none is lost;
 * null when the root is not in the list.
 */
export function buildTaskTree(tasks, rootId) {
  const nodes = new Map(tasks.map((task) => [task.id, { task, children: [] }]));
  const root = nodes.get(rootId);
  if (!root) return null;
  for (const task of [...tasks].sort(byCreation)) {
    if (task.id === rootId) continue;
    const parent = nodes.get(task.parent_id) ?? root;
    if (!isAncestor(nodes, task.id, parent)) parent.children.push(nodes.get(task.id));
  }
  return root;
}

// Guards against a list whose parent links loop (they never should).
function isAncestor(nodes, taskId, node) {
  for (let current = node?.task, depth = 0; current && depth < 1000; depth += 1) {
    if (current.id === taskId) return true;
    current = nodes.get(current.parent_id)?.task;
  }
  return false;
}

/** Every task under a tree node (not the node itself), depth first. */
export function descendantsOf(node) {
  return node ? node.children.flatMap((child) => [child.task, ...descendantsOf(child)]) : [];
}

/** {state: how many}, in the order of `states` (the lifecycle's), states with none left out. */
export function countByState(tasks, states) {
  const counts = {};
  for (const task of tasks) counts[task.state] = (counts[task.state] ?? 0) + 1;
  const order = [...states, ...Object.keys(counts).filter((s) => !states.includes(s))];
  return Object.fromEntries(order.filter((s) => counts[s]).map((s) => [s, counts[s]]));
}

/** "2 running, 1 completed" ('' for no tasks) */
export function describeCounts(counts) {
  return Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(', ');
}

/**
 * What a queued task waits for before it can be claimed: {approval, dependencies}. `approval`
 * is its pending approval question (or null); `dependencies` are the tasks of `depends_on` not
 * completed yet, each the task as `lookup(id)` knows it or {id} when it does not.
 */
export function whatBlocks(task, lookup) {
  const approval = (task?.pending_questions ?? []).find(isApprovalGate) ?? null;
  const dependencies = (task?.depends_on ?? [])
    .map((id) => lookup(id) ?? { id })
    .filter((dep) => dep.state !== 'completed');
  return { approval, dependencies };
}

/** "waits for approval and for “1. gather” (queued)", or '' when nothing holds it. */
export function describeBlockers({ approval, dependencies }, title) {
  const parts = [];
  if (approval) parts.push('approval');
  if (dependencies.length) {
    parts.push(dependencies.map((dep) => `“${title(dep)}”${dep.state ? ` (${dep.state})` : ''}`).join(', '));
  }
  return parts.length ? `waits for ${parts.join(' and for ')}` : '';
}

/** The dependency edges among `tasks`: {from, to}, `to` depending on `from`. */
export function dependencyEdges(tasks) {
  return tasks.flatMap((task) => (task.depends_on ?? []).map((from) => ({ from, to: task.id })));
}
