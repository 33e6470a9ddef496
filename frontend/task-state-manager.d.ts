// Type declarations of the packaged TaskStateManager (package `taskstate-client`).
//
// Hand-written beside task-state-manager.js, which stays plain JavaScript (the UI has no build
// step). tests/test_task_state_manager_package.py checks them with `tsc --strict`, against a
// typed consumer that must compile and misuses that must not, and checks that every public
// member of the class is declared here. The shapes are those of CONTRACT.md and /openapi.json.

/** A JSON value, as the API stores `params`, `result` and answers. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** CONTRACT §1. The terminal ones are `completed`, `failed` and `cancelled`. */
export type TaskState =
  | 'queued' | 'preparing' | 'running' | 'collecting' | 'completed'
  | 'failed' | 'cancelled' | 'orphaned' | 'serving' | 'stopping';

/** Who started a task (the seed's `job_type`). */
export type Trigger = 'manual' | 'api' | 'scheduled';

/** The calls whose allowed states GET /api/v2/states publishes. */
export type Call = 'cancel' | 'stop' | 'retry';

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'polling' | 'closed';

export declare const TRIGGERS: readonly Trigger[];

export interface PendingQuestion {
  readonly id: string;
  readonly question: string;
  readonly choices: readonly string[] | null;
  readonly context: JsonValue;
  readonly asked_at: string;
  readonly timeout_at?: string | null;
}

/** A pending question of GET /api/v2/questions, with its task. */
export interface InboxQuestion extends PendingQuestion {
  readonly task_id: string;
  readonly task_name: string;
  readonly task_type: string;
  readonly status: 'pending' | 'answered' | 'expired';
}

/** A task as the server answers it (times are ISO 8601 strings). Never changed once handed out. */
export interface Task {
  readonly id: string;
  readonly type: string;
  readonly name: string;
  readonly state: TaskState;
  readonly is_terminal: boolean;
  /** 0 to 100. */
  readonly progress: number;
  readonly phase: string | null;
  readonly message: string | null;
  readonly items_processed: number;
  readonly items_failed: number;
  readonly params: { readonly [key: string]: JsonValue };
  readonly result: JsonValue;
  readonly error: string | null;
  readonly error_type: string | null;
  readonly reason: string | null;
  readonly priority: number;
  readonly attempt: number;
  readonly max_attempts: number;
  readonly trigger: Trigger;
  readonly trigger_source: string | null;
  readonly idempotency_key: string | null;
  readonly run_at: string;
  readonly timeout_seconds: number | null;
  readonly created_at: string;
  readonly updated_at: string;
  readonly started_at: string | null;
  readonly finished_at: string | null;
  readonly duration_seconds: number | null;
  readonly worker_id: string | null;
  readonly heartbeat_at: string | null;
  readonly has_checkpoint: boolean;
  readonly restoration_count: number;
  readonly last_restored_at: string | null;
  readonly restoration_source: string | null;
  readonly restoration_decision: string | null;
  readonly restoration_code: 'proceed' | 'checkpoint' | 'fresh' | 'manual' | 'failed' | null;
  readonly pending_questions: readonly PendingQuestion[];
  readonly waiting_for_input: boolean;
  readonly retry_of: string | null;
  readonly endpoint: string | null;
  readonly service_info: JsonValue;
  readonly log_lines: number;
  readonly execution_summary: { readonly [key: string]: JsonValue } | null;
  readonly phase_results: { readonly [state: string]: number } | null;
  readonly system_info: { readonly [key: string]: JsonValue } | null;
  readonly owner: string | null;
  readonly parent_id: string | null;
  readonly root_id: string;
  readonly depends_on: readonly string[];
  readonly waiting_for: readonly string[];
  readonly requires_approval: boolean;
  readonly blocked: boolean;
}

/** POST /api/v2/tasks's body. `trigger` defaults to `manual` here. */
export interface StartTaskRequest {
  type: string;
  params?: { [key: string]: JsonValue };
  name?: string;
  priority?: number;
  /** ISO 8601: not claimed before then. */
  run_at?: string;
  timeout_seconds?: number;
  max_attempts?: number;
  trigger?: Trigger;
  trigger_source?: string;
  idempotency_key?: string;
  depends_on?: string[];
  requires_approval?: boolean;
}

/** getJobHistory's filters: GET /api/v2/tasks's query. */
export interface HistoryOptions {
  state?: TaskState | readonly TaskState[];
  /** The seed's name for `state`. */
  status?: TaskState | readonly TaskState[];
  type?: string;
  trigger?: Trigger;
  /** The seed's name for `trigger`. */
  job_type?: Trigger;
  trigger_source?: string;
  created_after?: string | Date;
  created_before?: string | Date;
  /** Name search. */
  q?: string;
  parent_id?: string;
  root_id?: string;
  /** 1 to 500; the server's default is 50. */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string | null;
  /** The seed's offset: pages are reached by `cursor`, so only 0 (the first page) is taken. */
  offset?: 0;
}

/** A page of the history, newest first. */
export interface TaskPage {
  readonly items: readonly Task[];
  /** Pass as `cursor` for the next page; null at the end. */
  readonly next_cursor: string | null;
  /** How many tasks match the filters, over all pages (an estimate when `total_is_estimate`). */
  readonly total: number;
  /** `total` is PostgreSQL's planner estimate: more than 10,000 tasks match. */
  readonly total_is_estimate: boolean;
}

/** A row of GET /api/v2/tasks/{id}/transitions. */
export interface TransitionRow {
  readonly seq: number;
  readonly task_id: string;
  readonly from_state: TaskState | null;
  readonly to_state: TaskState;
  readonly at: string;
  readonly reason: string | null;
  readonly actor: string;
}

/** The `transition` event: a transition as the event stream sent it, with the task as applied. */
export interface TransitionEvent {
  readonly seq: number;
  readonly task_id: string;
  readonly from: TaskState | null;
  readonly to: TaskState;
  readonly at: string;
  readonly reason: string | null;
  readonly actor?: string;
  readonly task: Task | undefined;
}

export interface LogLine {
  readonly seq: number;
  readonly at: string;
  readonly level: 'debug' | 'info' | 'warning' | 'error' | 'critical';
  readonly message: string;
}

export interface LogPage {
  readonly items: readonly LogLine[];
  /** Pass as `after` to read on. */
  readonly next_after: number;
}

export interface TaskType {
  readonly name: string;
  readonly description: string;
  readonly params_schema: { readonly [key: string]: JsonValue };
  readonly kind: 'batch' | 'service';
}

/** What GET /api/v2/insights takes: any two of since, until and window; durations like `90s`, `15m`, `24h`, `7d`. */
export interface InsightsQuery {
  readonly since?: string;
  readonly until?: string;
  readonly window?: string;
  readonly interval?: string;
  readonly type?: string;
}

/** Aggregates of the window [since, until), in buckets of `interval_seconds` (README: Insights). */
export interface Insights {
  readonly since: string;
  readonly until: string;
  readonly interval_seconds: number;
  readonly type: string | null;
  /** Tasks that finished in each bucket, by end state. */
  readonly throughput: readonly { readonly start: string; readonly completed: number; readonly failed: number; readonly cancelled: number }[];
  readonly by_type: readonly { readonly type: string; readonly completed: number; readonly failed: number; readonly cancelled: number }[];
  /** Nearest-rank percentiles of finished_at - started_at, in seconds. */
  readonly durations: readonly {
    readonly type: string;
    readonly count: number;
    readonly p50_seconds: number;
    readonly p95_seconds: number;
    readonly p99_seconds: number;
  }[];
  /** The queue: depth at each bucket's end, arrivals, starts and their waits. */
  readonly queue: readonly {
    readonly start: string;
    readonly depth: number;
    readonly arrived: number;
    readonly started: number;
    readonly wait_avg_seconds: number | null;
    readonly wait_max_seconds: number | null;
  }[];
}

export interface Worker {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly version: string;
  readonly started_at: string;
  readonly heartbeat_at: string;
  readonly heartbeat_age_seconds: number;
  readonly state: 'running' | 'stopped' | 'lost';
  /** Ids of the non-terminal tasks it holds. */
  readonly tasks: readonly string[];
  /** Its MAX_CONCURRENT_TASKS; null for an instance registered before slots were recorded. */
  readonly slots: number | null;
  /** Slots its jobs take now (a job waiting for its children gives its slot up). */
  readonly slots_used: number;
}

export type OverlapPolicy = 'skip' | 'queue' | 'cancel_previous';
export type CatchUpPolicy = 'none' | 'latest' | 'all';

export interface Schedule {
  readonly id: string;
  readonly name: string;
  readonly type: string;
  readonly params: { readonly [key: string]: JsonValue };
  readonly cron: string | null;
  readonly interval_seconds: number | null;
  readonly timezone: string;
  readonly overlap: OverlapPolicy;
  readonly catch_up: CatchUpPolicy;
  readonly paused: boolean;
  readonly next_run_at: string | null;
  readonly last_fired_at: string | null;
  readonly last_task_id: string | null;
  readonly owner: string | null;
  readonly created_at: string;
  readonly updated_at: string;
}

interface ScheduleFields {
  params?: { [key: string]: JsonValue };
  name?: string;
  timezone?: string;
  overlap?: OverlapPolicy;
  catch_up?: CatchUpPolicy;
  paused?: boolean;
}

/** Exactly one of `cron` and `interval_seconds`. */
export type ScheduleRequest = ScheduleFields & { type: string } & (
  | { cron: string; interval_seconds?: never }
  | { interval_seconds: number; cron?: never }
);

export type ScheduleChanges = ScheduleFields & { type?: string; cron?: string; interval_seconds?: number };

/** The schedules (CONTRACT §6). */
export interface Schedules {
  list(): Promise<Schedule[]>;
  get(scheduleId: string): Promise<Schedule>;
  create(request: ScheduleRequest): Promise<Schedule>;
  update(scheduleId: string, changes: ScheduleChanges): Promise<Schedule>;
  pause(scheduleId: string): Promise<Schedule>;
  resume(scheduleId: string): Promise<Schedule>;
  remove(scheduleId: string): Promise<void>;
  /** The schedule's tasks, newest first. */
  tasks(scheduleId: string, options?: HistoryOptions): Promise<TaskPage>;
}

/** The transition table and its rules, as GET /api/v2/states publishes them. */
export interface Lifecycle {
  readonly states: readonly TaskState[];
  readonly terminalStates: readonly TaskState[];
  readonly activeStates: TaskState[];
  isTerminal(state: TaskState): boolean;
  canTransition(from: TaskState, to: TaskState): boolean;
  /** Whether the server accepts `call` for a task in `state`. */
  allows(call: Call, state: TaskState): boolean;
  /** Which calls to offer for the task. */
  actions(task: Pick<Task, 'state'> | null | undefined): { [call: string]: boolean };
}

/** An error answer of the API (CONTRACT §2: `{"error": CODE, "detail": TEXT, ...}`). */
export declare class ApiError extends Error {
  constructor(status: number, body: unknown, fallback?: string);
  readonly name: 'ApiError';
  /** The HTTP status. */
  readonly status: number;
  /** The stable error code: not_found, invalid_transition, validation_error, unauthorized, … */
  readonly code: string | undefined;
  readonly detail: unknown;
  /** The whole answer. */
  readonly body: unknown;
}

/** Every event the manager emits, with what its listeners receive. */
export interface TaskStateEvents {
  /** One per active task found on load. */
  taskRestored: Task;
  /** The load found no active task. */
  noActiveTask: undefined;
  /** The load is done (after the taskRestored events). */
  restored: { readonly tasks: readonly Task[] };
  /** The stream's snapshot was applied: the active tasks as of `seq`. */
  snapshot: { readonly seq: number; readonly tasks: readonly Task[] };
  /** Anything about a task changed (state, progress, questions, …). */
  taskUpdated: Task;
  /** A live progress report was applied. */
  taskProgress: Task;
  transition: TransitionEvent;
  /** A task reached `completed`. */
  taskCompleted: Task;
  /** A task reached `failed` (its `error` and `error_type` say why). */
  taskError: Task;
  /** A task reached `cancelled`. */
  taskCancelled: Task;
  /** A tracked task no longer exists (deleted by clean-up). */
  taskRemoved: { readonly id: string };
  /** A live log line. */
  log: LogLine & { readonly task_id: string };
  /** A question was asked, answered or expired. */
  question: { readonly task_id: string; readonly question: PendingQuestion & { readonly status?: string; readonly answer?: JsonValue } };
  connection: {
    readonly state: ConnectionState;
    readonly attempt: number;
    readonly lastSeq: number | null;
    readonly pollingFrequency: number;
  };
  /** A polling round finished (while the socket is down). */
  poll: { readonly ok: boolean };
  /** Something went wrong in the background (a failed poll, a bad message). */
  error: Error;
  /** The API answered 401: set `token`. */
  authRequired: ApiError;
}

export type TaskStateEventName = keyof TaskStateEvents;

/** What the manager needs of `fetch`: the browser's and node's fit (no DOM types needed). */
export type FetchLike = (
  url: string,
  init: { method: string; headers: { [name: string]: string }; body?: string },
) => Promise<{ readonly ok: boolean; readonly status: number; readonly statusText: string; text(): Promise<string> }>;

/** What the manager needs of a WebSocket: the browser's and node's (20: --experimental-websocket) fit. */
export interface WebSocketLike {
  onopen: ((event: any) => void) | null;
  /** Called with a MessageEvent: the manager reads its `data`. */
  onmessage: ((message: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface TaskStateManagerOptions {
  /** Where the API is, e.g. `http://127.0.0.1:8000`. Default: the page's origin (`location.origin`). */
  baseUrl?: string;
  /** The event stream's URL. Default: derived from baseUrl (…/api/v2/events). */
  wsUrl?: string;
  /** ms between polls while the socket is down. Default: the server's TASK_POLLING_FREQUENCY. */
  pollingFrequency?: number;
  /** First reconnect delay in ms (doubles up to maxReconnectDelay). */
  reconnectDelay?: number;
  maxReconnectDelay?: number;
  /** An API token (TASKSTATE_AUTH=tokens). */
  token?: string | null;
  /** Default: the global fetch. */
  fetch?: FetchLike;
  /** Default: the global WebSocket. */
  WebSocket?: WebSocketConstructor;
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (handle: any) => void;
  /** 0 <= x < 1, for the reconnect jitter. */
  random?: () => number;
}

/**
 * The one object that talks to taskstate: restores the active tasks on load, follows the event
 * stream (reconnecting with `since`, polling while it is down) and announces every change.
 */
export declare class TaskStateManager {
  constructor(options?: TaskStateManagerOptions);

  /** ms between polls while the WebSocket is down. */
  pollingFrequency: number;
  /** Sent as `Authorization: Bearer` and as the socket's first message. */
  token: string | null;

  readonly connectionState: ConnectionState;
  /** The newest transition `seq` applied (null before the first snapshot or replay). */
  readonly lastSeq: number | null;
  readonly duplicatesDropped: number;
  readonly isRestored: boolean;
  /** Null until read from the server. */
  readonly lifecycle: Lifecycle | null;
  /** Every task known to be active, oldest first. */
  readonly activeTasks: Task[];
  readonly schedules: Schedules;

  /** Adds a listener; answers a function that removes it. */
  on<E extends TaskStateEventName>(event: E, callback: (data: TaskStateEvents[E]) => void): () => void;
  off<E extends TaskStateEventName>(event: E, callback: (data: TaskStateEvents[E]) => void): void;
  emit<E extends TaskStateEventName>(event: E, data: TaskStateEvents[E]): void;

  /** The latest known version of a task (active or recently finished). */
  getTask(taskId: string): Task | undefined;

  /** Restores the active tasks, then follows the event stream; answers the active tasks. */
  initialize(): Promise<Task[]>;
  loadLifecycle(): Promise<Lifecycle>;
  /** Reads the active tasks again; emits taskRestored (or noActiveTask), then restored. */
  restoreActiveTask(): Promise<Task[]>;
  /** Closes the socket and stops every timer. */
  destroy(): void;

  startTask(request: StartTaskRequest): Promise<Task>;
  /** Stops a serving service gracefully; cancels any other task. */
  stopTask(taskId: string): Promise<Task>;
  cancelTask(taskId: string): Promise<Task>;
  stopService(taskId: string): Promise<Task>;
  /** A new task like a failed or cancelled one. */
  retryTask(taskId: string): Promise<Task>;
  answerQuestion(taskId: string, questionId: string, answer: JsonValue): Promise<Task>;
  getTaskStatus(taskId: string): Promise<Task>;
  getTransitions(taskId: string): Promise<TransitionRow[]>;
  getLogs(taskId: string, after?: number, limit?: number): Promise<LogPage>;
  getJobHistory(options?: HistoryOptions): Promise<TaskPage>;
  getTaskTypes(): Promise<TaskType[]>;
  getWorkers(): Promise<Worker[]>;
  /** Aggregates of a window (GET /api/v2/insights): throughput, outcomes and durations by type, the queue. */
  getInsights(query?: InsightsQuery): Promise<Insights>;
  getQuestions(): Promise<InboxQuestion[]>;
  /** The tree whose top is `rootId`, oldest first. */
  getTaskTree(rootId: string): Promise<Task[]>;
  getChildren(parentId: string): Promise<Task[]>;
  /** Emergency reset: every active task ends, every job stops. Answers how many were reset. */
  resetAgentState(): Promise<number>;
}
