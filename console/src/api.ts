// Ferry's HTTP API, typed for the console. The console is served on the API's origin (by
// `ferry serve`, or by `ferry console`, which signs the calls it forwards), so every call is a
// same-origin path and the console never holds a credential.

/** An error answer: `{"error": {"code", "message", "hint"?, "details"?}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  /** The request field the error is about (`details.field`), to show it next to that field. */
  get field(): string | undefined {
    const f = this.details?.["field"];
    return typeof f === "string" ? f : undefined;
  }
}

/** Requests not answered yet, and who waits for none to be left. */
let inFlight = 0;
let idleWaiters: (() => void)[] = [];

/** Resolves once no request is in flight (before deleting what the page is still reading). */
export function idle(): Promise<void> {
  return inFlight === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  inFlight++;
  try {
    return await send<T>(method, path, body);
  } finally {
    if (--inFlight === 0) {
      const waiting = idleWaiters;
      idleWaiters = [];
      for (const w of waiting) w();
    }
  }
}

async function send<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `the API did not answer: ${String(e)}`, "check that ferry serve (or ferry console) is running");
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(response.status, "not_json", `the API answered ${response.status} with a body that is not JSON`);
  }
  if (!response.ok) {
    const e = (json as { error?: { code?: string; message?: string; hint?: string; details?: Record<string, unknown> } })?.error;
    throw new ApiError(response.status, e?.code ?? "unknown", e?.message ?? `HTTP ${response.status}`, e?.hint, e?.details);
  }
  return json as T;
}

export type Mode = "tracking" | "sync";
export type Billing = { type: "pay_as_you_go" } | { type: "subscription"; expires_at: string };

export interface TaskError {
  code: string;
  message: string;
  hint: string;
}

/** A task's state: `state` and, for some states, their details. */
export interface TaskState {
  state: string;
  stage?: string;
  error?: TaskError;
  configured?: boolean;
}

export interface Instance {
  id: string;
  name: string;
  mode: Mode;
  class: string;
  billing: Billing;
  status: "active" | "expired" | "released";
  created_at: string;
  release_at?: string;
  version: number;
  task?: TaskState;
}

export interface TableProgress {
  table: { database: string; table: string };
  target: string;
  state: string;
  rows_done: number;
  rows_total: number;
  chunks_done: number;
  chunks_total: number;
}

export interface ConsumerSettings {
  bootstrap_servers: string;
  security_protocol: string;
  sasl_mechanisms: string[];
  sasl_username: string;
  group_id: string;
}

/** Where a tracking task's first start begins (exactly one field); now when absent. */
export type StartPoint = { position: string } | { gtid: string } | { time: string };

export interface Task extends TaskState {
  id: string;
  instance_id: string;
  mode: Mode;
  config?: TaskConfig;
  config_version: number;
  checkpoint: { position?: string; source_time?: string; [k: string]: unknown } | null;
  start?: { point: StartPoint; position: string };
  delivery?: { topic: string; bootstrap_servers: string; consumers?: ConsumerSettings };
  objects_applied?: { config_version: number; position: string; [k: string]: unknown };
  full_sync?: TableProgress[];
  verification?: Verification;
  /** A tracking task's latest backfill, with each table's progress. */
  backfill?: Backfill;
  /** A tracking task's binlog archive, as its archiver last reported it (docs/capture.md). */
  archive?: ArchiveStatus;
  updated_at: string;
  version: number;
}

/** Tables' existing rows copied into a tracking task's topic (docs/capture.md, Backfill). */
export interface Backfill {
  id: string;
  tables: { database: string; table: string }[];
  state: "pending" | "running" | "done" | "cancelled" | "failed";
  requested_at: string;
  finished_at?: string;
  error?: string;
  progress?: TableProgress[];
}

export interface ArchiveStatus {
  state: "not_started" | "archiving" | "failing";
  server?: string;
  oldest?: string;
  through?: string;
  through_time?: string;
  stored_at?: string;
  pieces?: number;
  caught_up?: boolean;
  delay_seconds?: number | null;
  error?: string;
  error_at?: string;
  updated_at?: string;
}

export interface EndpointInput {
  engine: "mysql" | "mariadb" | "postgresql";
  host: string;
  port: number;
  username: string;
  password?: string;
  database?: string;
}

export interface TableSelection {
  name: string;
  target_name?: string;
  columns?: string[];
  /** A row filter: a SQL condition over the table's columns (docs/capture.md). */
  filter?: string;
}

export interface DatabaseSelection {
  name: string;
  target_name?: string;
  tables?: TableSelection[];
}

export interface ObjectSelection {
  databases: DatabaseSelection[];
  operations?: string[];
}

export interface TaskConfig {
  source: EndpointInput;
  target?: EndpointInput;
  objects: ObjectSelection;
  delivery?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface SourceObjects {
  databases: {
    name: string;
    tables: {
      name: string;
      estimated_rows: number | null;
      primary_key: string[];
      columns: { name: string; type: string; nullable: boolean }[];
    }[];
  }[];
}

export interface CheckItem {
  id: string;
  status: "passed" | "failed" | "warning" | string;
  message: string;
  hint?: string;
}

export interface Precheck {
  passed: boolean;
  items: CheckItem[];
}

export interface MinutePoint {
  minute: string;
  rows: number;
  bytes: number;
  rps: number;
  bps: number;
  max_delay_seconds: number;
  /** Sync tasks: the target's delay at the minute's last report. */
  target_delay_seconds?: number | null;
}

export interface ConnectionStatus {
  state: string;
  error?: string | null;
  reported_at?: string | null;
}

export interface TaskMetrics {
  rps: number;
  bps: number;
  source_delay_seconds: number | null;
  target_delay_seconds?: number | null;
  reported_at: string | null;
  connections: { source: ConnectionStatus; target: ConnectionStatus };
  history: MinutePoint[];
}

export interface GroupProgress {
  consumption_checkpoint: string | null;
  delay_seconds: number;
  unconsumed: number;
  partitions: { partition: number; committed_offset: number | null; high_watermark: number; unconsumed: number }[];
}

export interface ConsumerGroup {
  id: string;
  instance_id: string;
  name: string;
  username: string;
  created_at: string;
  connection?: ConsumerSettings;
  progress?: GroupProgress | null;
  progress_error?: string | null;
}

export interface Change {
  partition: number;
  offset: number;
  timestamp: string | null;
  position: string;
  idempotency_key: string;
  operation: string;
  database: string | null;
  table: string | null;
  key: Record<string, unknown> | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  statement: string | null;
}

export interface ChangesQuery {
  from?: string;
  to?: string;
  database?: string;
  table?: string;
  operation?: string;
  key?: string;
  page_token?: string;
}

export interface ChunkDiff {
  chunk: number;
  missing_rows: number;
  missing_keys: string[];
  different_rows: number;
  different_keys: string[];
}

export interface TableVerify {
  table: { database: string; table: string };
  target: string;
  chunks: number;
  source_rows: number;
  target_rows: number;
  differing_chunks: ChunkDiff[];
  extra_rows: number;
  extra_keys: string[];
  rechecked: boolean;
}

export interface Verification {
  id: string;
  state: "pending" | "running" | "done" | "failed";
  requested_at: string;
  finished_at?: string;
  report?: { differences: number; tables: TableVerify[] };
  error?: string;
}

const instancePath = (id: string) => `/v1/instances/${encodeURIComponent(id)}`;

export const api = {
  instances: (next?: string) =>
    call<{ instances: Instance[]; next_page_token?: string }>("GET", `/v1/instances?limit=50${next ? `&page_token=${encodeURIComponent(next)}` : ""}`),
  instance: (id: string) => call<Instance>("GET", instancePath(id)),
  createInstance: (body: { name: string; mode: Mode; class: string; billing: { type: string; months?: number }; client_token: string }) =>
    call<Instance>("POST", "/v1/instances", body),
  renew: (id: string, months: number) => call<Instance>("POST", `${instancePath(id)}/renew`, { months }),
  reset: (id: string) => call<Task>("POST", `${instancePath(id)}/reset`),
  remove: (id: string) => call<void>("DELETE", instancePath(id)),
  task: (id: string) => call<Task>("GET", `${instancePath(id)}/task`),
  configure: (id: string, config: TaskConfig) => call<Task>("PUT", `${instancePath(id)}/task`, config),
  reselect: (id: string, objects: ObjectSelection) => call<Task>("PUT", `${instancePath(id)}/task/objects`, objects),
  sourceObjects: (id: string, source?: EndpointInput) =>
    call<SourceObjects>("POST", `${instancePath(id)}/task/source-objects`, source ? { source } : {}),
  precheck: (id: string) => call<{ passed: boolean } & Precheck>("POST", `${instancePath(id)}/task/precheck`),
  start: (id: string, start?: StartPoint) =>
    call<{ task: Task; precheck: Precheck }>("POST", `${instancePath(id)}/task/start`, start ? { start } : undefined),
  stop: (id: string) => call<Task>("POST", `${instancePath(id)}/task/stop`),
  metrics: (id: string) => call<TaskMetrics>("GET", `${instancePath(id)}/task/metrics`),
  changes: (id: string, q: ChangesQuery) => {
    const query = Object.entries(q)
      .filter(([, v]) => v)
      .map(([k, v]) => `${k}=${encodeURIComponent(v as string)}`)
      .join("&");
    return call<{ changes: Change[]; scanned: number; from: string; to: string; next_page_token?: string | null }>(
      "GET",
      `${instancePath(id)}/changes?limit=50${query ? `&${query}` : ""}`,
    );
  },
  verify: (id: string) => call<Verification>("POST", `${instancePath(id)}/task/verify`),
  backfill: (id: string, tables: { database: string; table: string }[]) =>
    call<Backfill>("POST", `${instancePath(id)}/task/backfill`, { tables }),
  cancelBackfill: (id: string) => call<Backfill>("DELETE", `${instancePath(id)}/task/backfill`),
  groups: (id: string) => call<{ consumer_groups: ConsumerGroup[] }>("GET", `${instancePath(id)}/consumer-groups`),
  createGroup: (id: string, body: { name: string; username: string; password: string }) =>
    call<ConsumerGroup>("POST", `${instancePath(id)}/consumer-groups`, body),
  changePassword: (id: string, gid: string, old_password: string, new_password: string) =>
    call<ConsumerGroup>("PATCH", `${instancePath(id)}/consumer-groups/${encodeURIComponent(gid)}`, { old_password, new_password }),
  deleteGroup: (id: string, gid: string) => call<void>("DELETE", `${instancePath(id)}/consumer-groups/${encodeURIComponent(gid)}`),
};
