// Tracked data changes: a time range, database/table, operation and primary-key filters,
// paged; each change with its before and after images, the changed columns highlighted.
import { useState } from "preact/hooks";

import { api, type Change, type ChangesQuery, type Instance } from "../api";
import { Busy, ErrorNote, Field, Select, fieldError, formatTime } from "../components/ui";

/** `datetime-local` text (local time) for an instant. */
const localInput = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);

export function Changes({ instance }: { instance: Instance }) {
  const now = new Date();
  const [from, setFrom] = useState(localInput(new Date(now.getTime() - 3_600_000)));
  const [to, setTo] = useState(localInput(new Date(now.getTime() + 60_000)));
  const [database, setDatabase] = useState("");
  const [table, setTable] = useState("");
  const [operation, setOperation] = useState("");
  const [key, setKey] = useState("");
  const [pages, setPages] = useState<{ changes: Change[]; next?: string | null; scanned: number }[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const query = (): ChangesQuery => ({
    from: from ? new Date(from).toISOString() : undefined,
    to: to ? new Date(to).toISOString() : undefined,
    database: database || undefined,
    table: table || undefined,
    operation: operation || undefined,
    key: key || undefined,
  });
  const load = async (more: boolean) => {
    setBusy(true);
    setError(undefined);
    try {
      const token = more ? (pages[pages.length - 1]?.next ?? undefined) : undefined;
      const page = await api.changes(instance.id, { ...query(), page_token: token });
      const next = { changes: page.changes, next: page.next_page_token, scanned: page.scanned };
      setPages(more ? [...pages, next] : [next]);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const changes = pages.flatMap((p) => p.changes);
  const last = pages[pages.length - 1];
  return (
    <div class="stack">
      <form
        class="card"
        aria-label="Filter changes"
        onSubmit={(e) => {
          e.preventDefault();
          void load(false);
        }}
      >
        <div class="grid">
          <Field label="From" name="from" type="datetime-local" value={from} onInput={setFrom} error={fieldError(error, "from")} />
          <Field label="To" name="to" type="datetime-local" value={to} onInput={setTo} error={fieldError(error, "to")} />
          <Field label="Database" name="database" value={database} onInput={setDatabase} />
          <Field label="Table" name="table" value={table} onInput={setTable} />
          <Select
            label="Operation"
            name="operation"
            value={operation}
            onChange={setOperation}
            options={[
              ["", "all"],
              ["insert", "insert"],
              ["update", "update"],
              ["delete", "delete"],
              ["read", "read by a backfill"],
              ["ddl", "DDL"],
            ]}
          />
          <Field label="Primary key" name="key" value={key} onInput={setKey} hint='one value, or {"id": 7}' error={fieldError(error, "key")} />
        </div>
        <button type="submit" class="primary" disabled={busy}>
          Show changes
        </button>
      </form>
      {busy && <Busy>Reading the task's topic…</Busy>}
      <ErrorNote error={error} />
      {pages.length > 0 && (
        <p class="muted" role="status">
          {changes.length} changes{last?.next ? " so far" : ""} ({pages.reduce((n, p) => n + p.scanned, 0)} records read)
        </p>
      )}
      {changes.map((c) => (
        <ChangeCard change={c} key={`${c.partition}-${c.offset}`} />
      ))}
      {last?.next && (
        <button type="button" onClick={() => void load(true)} disabled={busy}>
          More
        </button>
      )}
    </div>
  );
}

function ChangeCard({ change: c }: { change: Change }) {
  const columns = [...new Set([...Object.keys(c.before ?? {}), ...Object.keys(c.after ?? {})])];
  const changed = (col: string) => c.operation === "update" && JSON.stringify(c.before?.[col]) !== JSON.stringify(c.after?.[col]);
  const show = (v: unknown) => (v === undefined ? "" : JSON.stringify(v));
  return (
    <div class="card change" data-testid="change">
      <p>
        <span class={`badge op-${c.operation}`}>{c.operation}</span> <strong>{[c.database, c.table].filter(Boolean).join(".")}</strong>{" "}
        {c.key && <span class="code">{JSON.stringify(c.key)}</span>} <span class="muted">{formatTime(c.timestamp)}</span>{" "}
        <span class="muted code">{c.position}</span>
      </p>
      {c.statement && <pre>{c.statement}</pre>}
      {columns.length > 0 && (
        <div class="table-wrap">
          <table class="list images" aria-label="Before and after">
            <thead>
              <tr>
                <th>Column</th>
                <th>Before</th>
                <th>After</th>
              </tr>
            </thead>
            <tbody>
              {columns.map((col) => (
                <tr key={col} class={changed(col) ? "changed" : undefined}>
                  <td class="code">
                    {col}
                    {changed(col) && <span class="sr-only"> (changed)</span>}
                  </td>
                  <td class="code">{c.before ? show(c.before[col]) : ""}</td>
                  <td class="code">{c.after ? show(c.after[col]) : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
