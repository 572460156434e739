// A task at a glance: state and stage, checkpoint, last error, full-sync progress per table,
// connections, and charts of the last hour refreshed live; start and stop.
import { useState } from "preact/hooks";

import { api, ApiError, type ArchiveStatus, type Instance, type TableProgress, type Task, type TaskMetrics } from "../api";
import { Chart } from "../components/Chart";
import { Busy, ErrorNote, Field, fieldError, formatNumber, formatTime, usePoll } from "../components/ui";
import { href } from "../router";

const RUNNING = ["starting", "prechecking", "schema_sync", "full_sync", "incremental"];

export function Overview({ instance }: { instance: Instance }) {
  const task = usePoll(() => api.task(instance.id), 3_000, [instance.id]);
  const metrics = usePoll(() => api.metrics(instance.id), 5_000, [instance.id]);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState<string | undefined>(undefined);
  if (task.error && !task.data) return <ErrorNote error={task.error} />;
  if (!task.data) return <Busy>Loading the task…</Busy>;
  const t = task.data;
  const act = async (what: string, action: () => Promise<unknown>) => {
    setBusy(what);
    setError(undefined);
    try {
      await action();
      await task.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  const running = RUNNING.includes(t.state);
  return (
    <div class="stack">
      <div class="card">
        <h2>Task</h2>
        <dl class="facts">
          <dt>State</dt>
          <dd>
            <span class={`badge state-${t.state}`} data-testid="task-state">
              {t.state.replace(/_/g, " ")}
            </span>
            {t.stage && <span class="muted"> (stage {t.stage.replace(/_/g, " ")})</span>}
          </dd>
          <dt>Configuration</dt>
          <dd>{t.config ? `version ${t.config_version}` : <a href={href({ page: "instance", id: instance.id, tab: "configure" })}>not configured yet: configure</a>}</dd>
          <Checkpoint task={t} />
          {t.delivery && (
            <>
              <dt>Topic</dt>
              <dd class="code">{t.delivery.topic}</dd>
            </>
          )}
          {t.archive && <Archive archive={t.archive} />}
          {t.objects_applied && (
            <>
              <dt>Objects applied</dt>
              <dd>
                version {t.objects_applied.config_version} from <span class="code">{t.objects_applied.position}</span>
              </dd>
            </>
          )}
        </dl>
        {t.error && (
          <div class="note error" role="alert">
            <strong>{t.error.message}</strong>
            <div class="hint">{t.error.hint}</div>
            <div class="muted code">{t.error.code}</div>
          </div>
        )}
        <div class="buttons">
          {!running && t.config && (
            <button type="button" class="primary" disabled={!!busy} onClick={() => void act("Starting (prechecks first)", () => api.start(instance.id))}>
              Start
            </button>
          )}
          {running && (
            <button type="button" disabled={!!busy} onClick={() => void act("Stopping", () => api.stop(instance.id))}>
              Stop
            </button>
          )}
        </div>
        {busy && <Busy>{busy}…</Busy>}
        <ErrorNote error={error} />
      </div>
      {t.full_sync && t.full_sync.length > 0 && <FullSync task={t} />}
      {instance.mode === "tracking" && t.config && <BackfillCard instance={instance} task={t} reload={task.reload} />}
      <Metrics metrics={metrics.data} error={metrics.error} sync={instance.mode === "sync"} />
    </div>
  );
}

function Checkpoint({ task }: { task: Task }) {
  const c = task.checkpoint as Record<string, unknown> | null;
  return (
    <>
      <dt>Checkpoint</dt>
      <dd data-testid="checkpoint">
        {c ? (
          <>
            <span class="code">
              {String(c["file"] ?? "")}:{String(c["offset"] ?? "")}
            </span>
            {c["gtid"] ? <span class="code"> GTID {String(c["gtid"])}</span> : null}
            <span class="muted"> · source time {formatTime(c["source_time"] as string | undefined)}</span>
          </>
        ) : (
          <span class="muted">none yet</span>
        )}
      </dd>
      {task.start && (
        <>
          <dt>Began at</dt>
          <dd data-testid="start-point">
            <span class="code">{Object.entries(task.start.point).map(([k, v]) => `${k} ${v}`).join("")}</span>
            <span class="muted"> · binlog </span>
            <span class="code">{task.start.position}</span>
          </dd>
        </>
      )}
    </>
  );
}

function Archive({ archive: a }: { archive: ArchiveStatus }) {
  return (
    <>
      <dt>Binlog archive</dt>
      <dd data-testid="archive">
        {a.state === "not_started" ? (
          <span class="muted">nothing stored yet</span>
        ) : (
          <>
            <span class="code">{a.oldest ?? "?"}</span> to <span class="code">{a.through ?? "?"}</span>
            <span class="muted">
              {" "}
              · {a.caught_up ? "caught up" : a.delay_seconds != null ? `${formatNumber(a.delay_seconds)} s behind` : "behind"} · {a.server}
            </span>
          </>
        )}
        {a.error && (
          <div class="note error" role="alert">
            Archiving failed ({formatTime(a.error_at)}), retrying: {a.error}
          </div>
        )}
      </dd>
    </>
  );
}

function FullSync({ task }: { task: Task }) {
  return (
    <div class="card">
      <h2>Full sync</h2>
      {(task.full_sync ?? []).map((p) => (
        <TableBar key={`${p.table.database}.${p.table.table}`} progress={p} target />
      ))}
    </div>
  );
}

/** A table's copy (a full sync's, or a backfill's) as a progress bar. */
function TableBar({ progress: p, target }: { progress: TableProgress; target?: boolean }) {
  const done = p.state === "done";
  const percent = done ? 100 : p.rows_total > 0 ? Math.min(99, Math.floor((p.rows_done / p.rows_total) * 100)) : 0;
  const name = `${p.table.database}.${p.table.table}`;
  return (
    <div class="progress-row">
      <label>
        {name}
        {target && ` → ${p.target}`}{" "}
        <span class="muted">
          {formatNumber(p.rows_done, 0)} rows · {p.chunks_done}/{p.chunks_total} chunks · {p.state}
        </span>
      </label>
      <progress max={100} value={percent} aria-label={`${name}: ${percent}%`}>
        {percent}%
      </progress>
    </div>
  );
}

/** The tables a selection names one by one (patterns and whole databases are typed instead). */
function namedTables(task: Task): string[] {
  return (task.config?.objects.databases ?? []).flatMap((d) =>
    (d.tables ?? []).filter((t) => !/[*?]/.test(d.name + t.name)).map((t) => `${d.name}.${t.name}`),
  );
}

/** A tracking task's backfill: ask for one (the tables' existing rows into the topic while
 * changes keep flowing), watch each table's progress, cancel it. */
function BackfillCard({ instance, task, reload }: { instance: Instance; task: Task; reload: () => Promise<void> }) {
  const [tables, setTables] = useState(() => namedTables(task).join(", "));
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const b = task.backfill;
  const active = b?.state === "pending" || b?.state === "running";
  const act = async (action: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
      await reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const request = () =>
    act(() =>
      api.backfill(
        instance.id,
        tables
          .split(",")
          .map((t) => t.trim())
          .filter(Boolean)
          .map((t) => {
            const dot = t.indexOf(".");
            return dot < 0 ? { database: "", table: t } : { database: t.slice(0, dot), table: t.slice(dot + 1) };
          }),
      ),
    );
  return (
    <div class="card" data-testid="backfill">
      <h2>Backfill</h2>
      <p class="muted">
        Copies the tables' existing rows into the topic as snapshot reads while changes keep flowing, without locks; a consumer
        applying the topic in order ends with the source's rows.
      </p>
      {b && (
        <>
          <p>
            <span class={`badge backfill-${b.state}`} data-testid="backfill-state">
              {b.state}
            </span>{" "}
            <span class="muted">
              asked {formatTime(b.requested_at)}
              {b.finished_at && ` · ended ${formatTime(b.finished_at)}`}
            </span>
          </p>
          {b.error && (
            <div class="note error" role="alert">
              {b.error}
            </div>
          )}
          {(b.progress ?? []).map((p) => (
            <TableBar key={`${p.table.database}.${p.table.table}`} progress={p} />
          ))}
        </>
      )}
      {active ? (
        <div class="buttons">
          <button type="button" disabled={busy} onClick={() => void act(() => api.cancelBackfill(instance.id))}>
            Cancel backfill
          </button>
        </div>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void request();
          }}
        >
          <Field
            label="Tables to backfill"
            name="backfill-tables"
            value={tables}
            onInput={setTables}
            hint="database.table, comma-separated; each among the task's objects"
            error={fieldError(error, "tables") ?? firstTableError(error)}
          />
          <div class="buttons">
            <button type="submit" disabled={busy || !tables.trim()}>
              Backfill
            </button>
          </div>
        </form>
      )}
      {busy && <Busy>Asking…</Busy>}
      {!fieldError(error, "tables") && !firstTableError(error) && <ErrorNote error={error} />}
    </div>
  );
}

/** An API error about one of the tables (`tables[2]`, `tables[0].database`). */
function firstTableError(error: unknown): string | undefined {
  if (!(error instanceof ApiError) || !error.field?.startsWith("tables[")) return undefined;
  return error.hint ? `${error.message} — ${error.hint}` : error.message;
}

function Metrics({ metrics, error, sync }: { metrics?: TaskMetrics; error: unknown; sync: boolean }) {
  if (!metrics) return error ? <ErrorNote error={error} /> : null;
  const times = metrics.history.map((p) => Date.parse(p.minute) / 1000);
  const conn = (side: "source" | "target") => {
    const c = metrics.connections[side];
    return (
      <span class={`badge conn-${c.state}`} title={c.error ?? undefined}>
        {side}: {c.state}
      </span>
    );
  };
  return (
    <div class="card">
      <h2>Metrics</h2>
      <p>
        {conn("source")} {sync && conn("target")} <span class="muted">reported {formatTime(metrics.reported_at)}</span>
      </p>
      <dl class="facts">
        <dt>RPS</dt>
        <dd data-testid="rps">{formatNumber(metrics.rps)}</dd>
        <dt>BPS</dt>
        <dd>{formatNumber(metrics.bps, 0)}</dd>
        <dt>Source delay</dt>
        <dd>{metrics.source_delay_seconds === null ? "—" : `${formatNumber(metrics.source_delay_seconds)} s`}</dd>
        <dt>Rows in the last hour</dt>
        <dd data-testid="rows-hour">{formatNumber(metrics.history.reduce((n, p) => n + p.rows, 0), 0)}</dd>
        {sync && (
          <>
            <dt>Target delay</dt>
            <dd>{metrics.target_delay_seconds == null ? "—" : `${formatNumber(metrics.target_delay_seconds)} s`}</dd>
          </>
        )}
      </dl>
      <div class="charts">
        <Chart title="Rows per second" unit="rows/s" times={times} values={metrics.history.map((p) => p.rps)} />
        <Chart title="Bytes per second" unit="B/s" times={times} values={metrics.history.map((p) => p.bps)} />
        <Chart title="Source delay" unit="s" times={times} values={metrics.history.map((p) => p.max_delay_seconds)} />
        {sync && <Chart title="Target delay" unit="s" times={times} values={metrics.history.map((p) => p.target_delay_seconds ?? 0)} />}
      </div>
    </div>
  );
}
