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

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
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

export interface Task extends TaskState {
  id: string;
  instance_id: string;
  mode: Mode;
  config?: TaskConfig;
  config_version: number;
  checkpoint: { position?: string; source_time?: string; [k: string]: unknown } | null;
  delivery?: { topic: string; bootstrap_servers: string; consumers?: ConsumerSettings };
  objects_applied?: { config_version: number; position: string; [k: string]: unknown };
  full_sync?: TableProgress[];
  updated_at: string;
  version: number;
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
  sourceObjects: (id: string, source?: EndpointInput) =>
    call<SourceObjects>("POST", `${instancePath(id)}/task/source-objects`, source ? { source } : {}),
  precheck: (id: string) => call<{ passed: boolean } & Precheck>("POST", `${instancePath(id)}/task/precheck`),
  start: (id: string) => call<{ task: Task; precheck: Precheck }>("POST", `${instancePath(id)}/task/start`),
  stop: (id: string) => call<Task>("POST", `${instancePath(id)}/task/stop`),
  metrics: (id: string) => call<TaskMetrics>("GET", `${instancePath(id)}/task/metrics`),
};
