// Task configuration: the source endpoint, an object picker fed by the source's own catalog
// (`POST …/task/source-objects`), the target (sync) or format and partitioning (tracking), the
// resulting JSON, and then the precheck report and start, blocked until the precheck passes.
import { useMemo, useState } from "preact/hooks";

import {
  ApiError,
  api,
  type DatabaseSelection,
  type EndpointInput,
  type Instance,
  type ObjectSelection,
  type Precheck,
  type SourceObjects,
  type StartPoint,
  type Task,
  type TaskConfig,
} from "../api";
import { Busy, ErrorNote, Field, Select, fieldError, usePoll } from "../components/ui";
import { href } from "../router";

const OPERATIONS = ["insert", "update", "delete", "ddl"];

interface EndpointForm {
  engine: string;
  host: string;
  port: string;
  username: string;
  password: string;
  database: string;
}

const emptyEndpoint = (engine: string, port: string): EndpointForm => ({ engine, host: "", port, username: "", password: "", database: "" });

function fromEndpoint(e: EndpointInput | undefined, fallback: EndpointForm): EndpointForm {
  if (!e) return fallback;
  return { engine: e.engine, host: e.host, port: String(e.port), username: e.username, password: "", database: e.database ?? "" };
}

function toEndpoint(f: EndpointForm): EndpointInput {
  const e: EndpointInput = { engine: f.engine as EndpointInput["engine"], host: f.host, port: Number(f.port), username: f.username };
  if (f.password) e.password = f.password;
  if (f.database) e.database = f.database;
  return e;
}

/** The picker's choice: per database, every table (`"all"`, also tables created later) or
 * chosen tables, each with all columns or chosen ones, and target names for sync. */
interface Choice {
  [database: string]: { all: boolean; target: string; tables: { [table: string]: { columns: string[] | null; target: string; filter: string } } };
}

const isPattern = (name: string) => name.includes("*") || name.includes("?");

/** Patterns are `database` or `database.table` names with `*` and `?`. */
function choiceFrom(objects: ObjectSelection | undefined): { choice: Choice; patterns: string[] } {
  const choice: Choice = {};
  const patterns: string[] = [];
  for (const d of objects?.databases ?? []) {
    if (isPattern(d.name) && !d.tables) {
      patterns.push(d.name);
      continue;
    }
    const tables: Choice[string]["tables"] = {};
    for (const t of d.tables ?? []) {
      if (isPattern(t.name) || isPattern(d.name)) patterns.push(`${d.name}.${t.name}`);
      else tables[t.name] = { columns: t.columns ?? null, target: t.target_name ?? "", filter: t.filter ?? "" };
    }
    if (isPattern(d.name) || (d.tables && Object.keys(tables).length === 0)) continue;
    choice[d.name] = { all: !d.tables, target: d.target_name ?? "", tables };
  }
  return { choice, patterns };
}

function selectionFrom(choice: Choice, patterns: string[], operations: string[], sync: boolean): ObjectSelection {
  const databases: DatabaseSelection[] = [];
  for (const [name, d] of Object.entries(choice)) {
    const entry: DatabaseSelection = { name };
    if (sync && d.target) entry.target_name = d.target;
    if (!d.all) {
      const tables = Object.entries(d.tables);
      if (tables.length === 0) continue;
      entry.tables = tables.map(([t, c]) => ({
        name: t,
        ...(c.columns ? { columns: c.columns } : {}),
        ...(sync && c.target ? { target_name: c.target } : {}),
        ...(c.filter.trim() ? { filter: c.filter.trim() } : {}),
      }));
    }
    databases.push(entry);
  }
  for (const p of patterns) {
    const dot = p.indexOf(".");
    if (dot < 0) {
      databases.push({ name: p });
      continue;
    }
    // A table pattern joins its database's entry (or makes one); a database chosen whole
    // already has every table.
    const [db, table] = [p.slice(0, dot), p.slice(dot + 1)];
    const entry = databases.find((d) => d.name === db);
    if (entry && !entry.tables) continue;
    if (entry) entry.tables!.push({ name: table });
    else databases.push({ name: db, tables: [{ name: table }] });
  }
  return { databases, operations };
}

export function Configure({ instance }: { instance: Instance }) {
  // Polled, so a reselection's switch position shows once the worker made it; the form keeps
  // what is being edited (its state starts from the first answer only).
  const task = usePoll(() => api.task(instance.id), 3_000, [instance.id]);
  if (task.error && !task.data) return <ErrorNote error={task.error} />;
  if (!task.data) return <Busy>Loading the task…</Busy>;
  return <ConfigureForm instance={instance} task={task.data} reload={() => void task.reload()} />;
}

/** States in which the task runs: its objects change by reselection, not by reconfiguring. */
const RUNNING = ["starting", "schema_sync", "full_sync", "incremental"];

function ConfigureForm({ instance, task, reload }: { instance: Instance; task: Task; reload: () => void }) {
  const config = task.config;
  const running = RUNNING.includes(task.state);
  const sync = instance.mode === "sync";
  const [source, setSource] = useState(fromEndpoint(config?.source, emptyEndpoint("mariadb", "3306")));
  const [target, setTarget] = useState(fromEndpoint(config?.target, emptyEndpoint("postgresql", "5432")));
  const initial = useMemo(() => choiceFrom(config?.objects), [config]);
  const [choice, setChoice] = useState<Choice>(initial.choice);
  const [patterns, setPatterns] = useState<string[]>(initial.patterns);
  const [operations, setOperations] = useState<string[]>(config?.objects.operations ?? OPERATIONS);
  const delivery = (config?.delivery ?? {}) as Record<string, unknown>;
  const [format, setFormat] = useState(String(delivery["format"] ?? "debezium-json"));
  const partitioning = (delivery["partitioning"] ?? { type: "single" }) as { type: string; partitions?: number };
  const [partitions, setPartitions] = useState(partitioning.type === "key_hash" ? String(partitioning.partitions ?? 8) : "1");
  const syncOptions = (config?.["sync"] ?? {}) as Record<string, unknown>;
  const [conflicting, setConflicting] = useState(String(syncOptions["conflicting_tables"] ?? "error"));
  const archived = config?.["archive"] as { retention_days?: number } | undefined;
  const [archive, setArchive] = useState(archived !== undefined);
  const [retention, setRetention] = useState(String(archived?.retention_days ?? 7));
  const [catalog, setCatalog] = useState<SourceObjects | undefined>(undefined);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [saved, setSaved] = useState(false);
  const [saving, setSaving] = useState(false);

  const body: TaskConfig = useMemo(() => {
    const c: TaskConfig = { source: toEndpoint(source), objects: selectionFrom(choice, patterns, operations, sync) };
    if (sync) c.target = toEndpoint(target);
    else {
      const d: Record<string, unknown> = { ...delivery, format };
      d["partitioning"] = Number(partitions) > 1 ? { type: "key_hash", partitions: Number(partitions) } : { type: "single" };
      c.delivery = d;
    }
    if (config?.["heartbeat"] !== undefined) c["heartbeat"] = config["heartbeat"];
    if (sync) c["sync"] = { ...syncOptions, conflicting_tables: conflicting };
    if (archive) c["archive"] = { retention_days: Number(retention) };
    return c;
  }, [source, target, choice, patterns, operations, format, partitions, sync, conflicting, archive, retention]);

  const loadCatalog = async () => {
    setLoading(true);
    setError(undefined);
    try {
      setCatalog(await api.sourceObjects(instance.id, source.host ? toEndpoint(source) : undefined));
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  };
  const save = async (e: Event) => {
    e.preventDefault();
    setSaving(true);
    setError(undefined);
    setSaved(false);
    try {
      if (running) await api.reselect(instance.id, body.objects);
      else await api.configure(instance.id, body);
      setSaved(true);
      reload();
    } catch (err) {
      setError(err);
    } finally {
      setSaving(false);
    }
  };
  const err = (field: string) => fieldError(error, field);
  return (
    <div class="stack">
      <form class="stack" onSubmit={save} aria-label="Task configuration">
        <EndpointFields title="Source" prefix="source" form={source} onChange={setSource} engines={["mariadb", "mysql"]} error={error} configured={!!config} />
        <div class="card">
          <h2>Objects</h2>
          <p class="muted">Choose from what the source holds: a whole database (its tables now and later), some tables, or some columns of a table. Key columns are always carried.</p>
          <button type="button" onClick={() => void loadCatalog()} disabled={loading}>
            {catalog ? "Reload the source's objects" : "Load the source's objects"}
          </button>
          {loading && <Busy>Reading the source's catalog…</Busy>}
          {catalog && <Picker catalog={catalog} choice={choice} onChange={setChoice} sync={sync} filterError={err("filter")} />}
          <Patterns patterns={patterns} onChange={setPatterns} />
          <fieldset class="operations">
            <legend>Operations</legend>
            {OPERATIONS.map((op) => (
              <label key={op} class="check">
                <input
                  type="checkbox"
                  name={`op-${op}`}
                  checked={operations.includes(op)}
                  onChange={(e) => {
                    const on = (e.target as HTMLInputElement).checked;
                    setOperations(on ? OPERATIONS.filter((o) => o === op || operations.includes(o)) : operations.filter((o) => o !== op));
                  }}
                />
                {op === "ddl" ? "DDL" : op}
              </label>
            ))}
          </fieldset>
          {err("objects") && <p class="error-text">{err("objects")}</p>}
          {err("operations") && <p class="error-text">{err("operations")}</p>}
        </div>
        <div class="card">
          <h2>Binlog archive</h2>
          <p class="muted">Copies the source's binlog into the deployment's archive bucket, ahead of the task and while it is stopped, so the task resumes even after the server purged the files it needs.</p>
          <label class="check">
            <input type="checkbox" name="archive" checked={archive} onChange={(e) => setArchive((e.target as HTMLInputElement).checked)} />
            Archive the binlog
          </label>
          {archive && (
            <Field label="Keep archived files the task has passed for (days)" name="retention_days" type="number" min={1} max={365} value={retention} onInput={setRetention} error={err("retention_days")} />
          )}
        </div>
        {sync ? (
          <>
            <EndpointFields title="Target" prefix="target" form={target} onChange={setTarget} engines={["postgresql", "mysql", "mariadb"]} error={error} configured={!!config?.target} withDatabase />
            <div class="card">
              <h2>Tables that already exist on the target</h2>
              <Select
                label="When a selected table is already there"
                name="conflicting_tables"
                value={conflicting}
                onChange={setConflicting}
                options={[
                  ["error", "Precheck error if it differs (a compatible one is kept)"],
                  ["ignore", "Ignore differences and proceed (kept as it is)"],
                  ["recreate", "Drop and create again from the source (its rows are lost)"],
                ]}
              />
            </div>
          </>
        ) : (
          <div class="card">
            <h2>Delivery</h2>
            <div class="grid">
              <Select
                label="Format"
                name="format"
                value={format}
                onChange={setFormat}
                options={[
                  ["debezium-json", "debezium-json (Debezium's records)"],
                  ["canal-json", "canal-json (Canal's flat messages)"],
                  ["maxwell-json", "maxwell-json (Maxwell's records)"],
                  ["dts-avro", "dts-avro (cloud DTS's Avro record)"],
                ]}
              />
              <Field
                label="Partitions (1: commit order; more: by primary-key hash)"
                name="partitions"
                type="number"
                min={1}
                max={64}
                value={partitions}
                onInput={setPartitions}
                error={err("partitioning")}
              />
            </div>
          </div>
        )}
        <details class="card">
          <summary>The configuration as JSON (PUT /v1/instances/{instance.id}/task)</summary>
          <pre class="code" data-testid="config-json">{JSON.stringify({ ...body, source: { ...body.source, password: body.source.password ? "••••" : undefined } }, null, 2)}</pre>
        </details>
        <ErrorNote error={error} />
        {running && (
          <p class="note busy">
            The task is running: saving changes its objects only (a reselection), from the next transaction boundary
            {instance.mode === "sync" ? "; an added table is copied while the others keep syncing" : ""}.
          </p>
        )}
        {saved && !running && (
          <p class="note ok" role="status">
            Saved. Run the precheck below, then start.
          </p>
        )}
        {saved && running && <Applied task={task} />}
        <div class="buttons">
          <button type="submit" class="primary" disabled={saving}>
            {saving ? "Saving…" : running ? "Apply the objects" : "Save configuration"}
          </button>
        </div>
      </form>
      {(saved || config) && !running && <PrecheckAndStart instance={instance} />}
    </div>
  );
}

/** Where a reselection took effect, once the worker switched (`objects_applied`). */
function Applied({ task }: { task: Task }) {
  const applied = task.objects_applied;
  if (applied && applied.config_version >= task.config_version)
    return (
      <p class="note ok" role="status" data-testid="objects-applied">
        Applied: configuration version {applied.config_version} from <span class="code">{applied.position}</span>.
      </p>
    );
  return (
    <p class="note busy" role="status" data-testid="objects-applied">
      Saved as version {task.config_version}; the worker switches at the next transaction boundary (this page shows where once it did).
    </p>
  );
}

function EndpointFields(props: {
  title: string;
  prefix: string;
  form: EndpointForm;
  onChange: (f: EndpointForm) => void;
  engines: string[];
  error: unknown;
  configured: boolean;
  withDatabase?: boolean;
}) {
  const f = props.form;
  const set = (k: keyof EndpointForm) => (v: string) => props.onChange({ ...f, [k]: v });
  const err = (k: string) => fieldError(props.error, `${props.prefix}.${k}`) ?? (k === "password" ? fieldError(props.error, `${props.prefix}.password`) : undefined);
  return (
    <fieldset class="card">
      <legend>{props.title}</legend>
      <div class="grid">
        <Select label="Engine" name={`${props.prefix}-engine`} value={f.engine} onChange={set("engine")} options={props.engines.map((e) => [e, e])} />
        <Field label="Host" name={`${props.prefix}-host`} value={f.host} onInput={set("host")} required error={err("host")} />
        <Field label="Port" name={`${props.prefix}-port`} type="number" min={1} max={65535} value={f.port} onInput={set("port")} required error={err("port")} />
        <Field label="User" name={`${props.prefix}-username`} value={f.username} onInput={set("username")} required error={err("username")} />
        <Field
          label="Password"
          name={`${props.prefix}-password`}
          type="password"
          autocomplete="new-password"
          value={f.password}
          onInput={set("password")}
          hint={props.configured ? "leave empty to keep the stored password" : "stored in Secrets Manager, never shown again"}
          error={err("password")}
        />
        {props.withDatabase && <Field label="Database" name={`${props.prefix}-database`} value={f.database} onInput={set("database")} error={err("database")} />}
      </div>
    </fieldset>
  );
}

/** Databases → tables → columns of the source, searchable, with checkboxes. */
function Picker(props: { catalog: SourceObjects; choice: Choice; onChange: (c: Choice) => void; sync: boolean; filterError?: string }) {
  const [search, setSearch] = useState("");
  const [open, setOpen] = useState<string | undefined>(undefined);
  const q = search.trim().toLowerCase();
  const c = props.choice;
  const update = (next: Choice) => props.onChange({ ...next });
  const toggleDatabase = (db: string, on: boolean) => {
    const next = { ...c };
    if (on) next[db] = { all: true, target: c[db]?.target ?? "", tables: {} };
    else delete next[db];
    update(next);
  };
  const toggleTable = (db: string, table: string, on: boolean, allTables: string[]) => {
    const current = c[db] ?? { all: false, target: "", tables: {} };
    let tables = current.all ? Object.fromEntries(allTables.map((t) => [t, { columns: null, target: "", filter: "" }])) : { ...current.tables };
    if (on) tables[table] = tables[table] ?? { columns: null, target: "", filter: "" };
    else delete tables[table];
    const next = { ...c };
    if (Object.keys(tables).length === 0) delete next[db];
    else next[db] = { all: false, target: current.target, tables };
    update(next);
  };
  const toggleColumn = (db: string, table: string, column: string, on: boolean, allColumns: string[]) => {
    const d = c[db];
    const t = d?.tables[table];
    if (!d || !t) return;
    let columns = t.columns ?? [...allColumns];
    columns = on ? allColumns.filter((x) => x === column || columns.includes(x)) : columns.filter((x) => x !== column);
    update({ ...c, [db]: { ...d, tables: { ...d.tables, [table]: { ...t, columns: columns.length === allColumns.length ? null : columns } } } });
  };
  const setFilter = (db: string, table: string, value: string) => {
    const d = c[db];
    if (d?.tables[table]) update({ ...c, [db]: { ...d, tables: { ...d.tables, [table]: { ...d.tables[table], filter: value } } } });
  };
  const setTarget = (db: string, table: string | undefined, value: string) => {
    const d = c[db];
    if (!d) return;
    if (table === undefined) update({ ...c, [db]: { ...d, target: value } });
    else if (d.tables[table]) update({ ...c, [db]: { ...d, tables: { ...d.tables, [table]: { ...d.tables[table], target: value } } } });
  };
  return (
    <div class="picker">
      <Field label="Search databases, tables and columns" name="object-search" value={search} onInput={setSearch} />
      <ul class="tree" aria-label="Source objects">
        {props.catalog.databases
          .filter((d) => !q || d.name.toLowerCase().includes(q) || d.tables.some((t) => t.name.toLowerCase().includes(q) || t.columns.some((col) => col.name.toLowerCase().includes(q))))
          .map((d) => {
            const chosen = c[d.name];
            const allTables = d.tables.map((t) => t.name);
            return (
              <li key={d.name}>
                <label class="check">
                  <input type="checkbox" name={`db-${d.name}`} checked={!!chosen?.all} onChange={(e) => toggleDatabase(d.name, (e.target as HTMLInputElement).checked)} />
                  <strong>{d.name}</strong> <span class="muted">({d.tables.length} tables{chosen?.all ? "; all, also tables created later" : ""})</span>
                </label>
                {props.sync && chosen && <Field label={`Target name of ${d.name}`} name={`target-db-${d.name}`} value={chosen.target} onInput={(v) => setTarget(d.name, undefined, v)} />}
                <ul>
                  {d.tables
                    .filter((t) => !q || d.name.toLowerCase().includes(q) || t.name.toLowerCase().includes(q) || t.columns.some((col) => col.name.toLowerCase().includes(q)))
                    .map((t) => {
                      const key = `${d.name}.${t.name}`;
                      const tableChosen = !!chosen && (chosen.all || !!chosen.tables[t.name]);
                      const columns = chosen?.tables[t.name]?.columns;
                      return (
                        <li key={key}>
                          <label class="check">
                            <input type="checkbox" name={`table-${key}`} checked={tableChosen} onChange={(e) => toggleTable(d.name, t.name, (e.target as HTMLInputElement).checked, allTables)} />
                            {t.name}{" "}
                            <span class="muted">
                              ~{t.estimated_rows ?? "?"} rows · key {t.primary_key.length ? t.primary_key.join(", ") : "none"}
                            </span>
                          </label>
                          {tableChosen && !chosen?.all && (
                            <button type="button" class="link" aria-expanded={open === key} onClick={() => setOpen(open === key ? undefined : key)}>
                              {columns ? `${columns.length} of ${t.columns.length} columns` : "all columns"}
                            </button>
                          )}
                          {tableChosen && !chosen?.all && (
                            <Field
                              label={`Row filter of ${t.name}`}
                              name={`filter-${key}`}
                              value={chosen?.tables[t.name]?.filter ?? ""}
                              onInput={(v) => setFilter(d.name, t.name, v)}
                              hint="optional: a condition on its columns, e.g. total > 0 AND status IN ('paid', 'sent')"
                              error={chosen?.tables[t.name]?.filter ? props.filterError : undefined}
                            />
                          )}
                          {props.sync && tableChosen && !chosen?.all && (
                            <Field label={`Target name of ${t.name}`} name={`target-table-${key}`} value={chosen?.tables[t.name]?.target ?? ""} onInput={(v) => setTarget(d.name, t.name, v)} />
                          )}
                          {open === key && tableChosen && !chosen?.all && (
                            <ul class="columns">
                              {t.columns.map((col) => {
                                const isKey = t.primary_key.includes(col.name);
                                return (
                                  <li key={col.name}>
                                    <label class="check">
                                      <input
                                        type="checkbox"
                                        name={`column-${key}.${col.name}`}
                                        disabled={isKey}
                                        checked={isKey || !columns || columns.includes(col.name)}
                                        onChange={(e) => toggleColumn(d.name, t.name, col.name, (e.target as HTMLInputElement).checked, t.columns.map((x) => x.name))}
                                      />
                                      {col.name} <span class="muted code">{col.type}</span>
                                      {isKey && <span class="muted"> (key: always carried)</span>}
                                    </label>
                                  </li>
                                );
                              })}
                            </ul>
                          )}
                        </li>
                      );
                    })}
                </ul>
              </li>
            );
          })}
      </ul>
    </div>
  );
}

/** Databases (`shop_*`) or tables (`shop.orders_*`) chosen by a wildcard pattern, which also
 * match databases and tables created later. */
function Patterns({ patterns, onChange }: { patterns: string[]; onChange: (p: string[]) => void }) {
  const [pattern, setPattern] = useState("");
  const add = () => {
    if (pattern.trim() && !patterns.includes(pattern.trim())) onChange([...patterns, pattern.trim()]);
    setPattern("");
  };
  return (
    <div class="patterns">
      {/* Inside the configuration's form: a button, not a nested form. */}
      <div class="inline">
        <Field label="Add by pattern: database (shop_*) or database.table (shop.orders_*)" name="pattern" value={pattern} onInput={setPattern} onEnter={add} />
        <button type="button" onClick={add}>
          Add pattern
        </button>
      </div>
      {patterns.length > 0 && (
        <ul aria-label="Patterns">
          {patterns.map((p) => (
            <li key={p}>
              <span class="code">{p}</span>{" "}
              <button type="button" class="link" onClick={() => onChange(patterns.filter((x) => x !== p))}>
                remove
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** The precheck report, and start once it passed (the API refuses a failed one too). */
function PrecheckAndStart({ instance }: { instance: Instance }) {
  const [report, setReport] = useState<Precheck | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState<string | undefined>(undefined);
  const run = async () => {
    setBusy("Running the prechecks against the source");
    setError(undefined);
    try {
      setReport(await api.precheck(instance.id));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  // A tracking task's first start may begin at a chosen point instead of now.
  const [from, setFrom] = useState<"now" | "position" | "gtid" | "time">("now");
  const [point, setPoint] = useState("");
  const startPoint = (): StartPoint | undefined => {
    if (from === "now") return undefined;
    if (from === "time") return { time: new Date(point).toISOString() };
    return from === "position" ? { position: point.trim() } : { gtid: point.trim() };
  };
  const start = async () => {
    setBusy(from === "time" ? "Starting (finding the time in the source's binlog)" : "Starting");
    setError(undefined);
    try {
      await api.start(instance.id, startPoint());
      location.hash = href({ page: "instance", id: instance.id, tab: "overview" });
    } catch (e) {
      // A failed start carries its precheck report: show the items, the start point's with them.
      const items = e instanceof ApiError ? e.details?.["items"] : undefined;
      if (Array.isArray(items)) setReport({ passed: false, items: items as Precheck["items"] });
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  return (
    <div class="card">
      <h2>Precheck</h2>
      {instance.mode === "tracking" && (
        <div class="grid">
          <label class="field">
            Begin at
            <select value={from} onChange={(e) => setFrom((e.target as HTMLSelectElement).value as typeof from)} data-testid="start-from">
              <option value="now">now (the source's current position)</option>
              <option value="position">a binlog position (file:offset)</option>
              <option value="gtid">a GTID</option>
              <option value="time">a time</option>
            </select>
          </label>
          {from !== "now" && (
            <label class="field">
              {from === "position" ? "Position" : from === "gtid" ? "GTID" : "Time (your local time)"}
              <input
                type={from === "time" ? "datetime-local" : "text"}
                step={from === "time" ? 1 : undefined}
                value={point}
                placeholder={from === "position" ? "mariadb-bin.000003:1234" : from === "gtid" ? "0-1-100" : ""}
                onInput={(e) => setPoint((e.target as HTMLInputElement).value)}
                data-testid="start-point"
              />
            </label>
          )}
        </div>
      )}
      <div class="buttons">
        <button type="button" onClick={() => void run()} disabled={!!busy}>
          Run precheck
        </button>
        <button type="button" class="primary" onClick={() => void start()} disabled={!!busy || !report?.passed} title={report?.passed ? undefined : "the precheck must pass first"}>
          Start
        </button>
      </div>
      {busy && <Busy>{busy}…</Busy>}
      <ErrorNote error={error} />
      {report && (
        <>
          <p class={report.passed ? "note ok" : "note error"} role="status" data-testid="precheck-result">
            {report.passed ? "Precheck passed." : "Precheck failed: fix the items below, then run it again."}
          </p>
          <table class="list" aria-label="Precheck items">
            <thead>
              <tr>
                <th>Status</th>
                <th>Check</th>
                <th>Message</th>
                <th>How to fix</th>
              </tr>
            </thead>
            <tbody>
              {report.items.map((i) => (
                <tr key={i.id} class={`check-${i.status}`}>
                  <td>
                    <span class={`badge check-${i.status}`}>{i.status}</span>
                  </td>
                  <td class="code">{i.id}</td>
                  <td>{i.message}</td>
                  <td>{i.hint ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
