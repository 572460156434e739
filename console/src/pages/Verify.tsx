// Verification of a sync task: start one, watch it run, see each table's result and the keys
// that differ (missing, different or extra on the target).
import { useState } from "preact/hooks";

import { api, type Instance, type Verification } from "../api";
import { Busy, ErrorNote, formatNumber, formatTime, usePoll } from "../components/ui";

export function Verify({ instance }: { instance: Instance }) {
  // The task carries its latest verification (none until one is asked for).
  const current = usePoll<Verification | null>(async () => (await api.task(instance.id)).verification ?? null, 2_000, [instance.id]);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const v = current.data;
  const running = v && (v.state === "pending" || v.state === "running");
  return (
    <div class="stack">
      <div class="card">
        <h2>Verification</h2>
        <p class="muted">Compares the target with the source chunk by chunk (row counts and checksums), and lists the keys of the rows that differ.</p>
        <button
          type="button"
          class="primary"
          disabled={busy || !!running}
          onClick={async () => {
            setBusy(true);
            setError(undefined);
            try {
              await api.verify(instance.id);
              await current.reload();
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          Verify now
        </button>
        <ErrorNote error={error ?? current.error} />
        {v === null && <p class="muted">Not verified yet.</p>}
        {running && <Busy>Verification {v.state}…</Busy>}
        {v && (
          <p data-testid="verify-state">
            <span class={`badge verify-${v.state}`}>{v.state}</span> requested {formatTime(v.requested_at)}
            {v.finished_at && <> · finished {formatTime(v.finished_at)}</>}
            {v.report && (
              <>
                {" "}
                · <strong>{v.report.differences === 0 ? "no differences" : `${formatNumber(v.report.differences, 0)} differences`}</strong>
              </>
            )}
          </p>
        )}
        {v?.error && <p class="error-text">{v.error}</p>}
      </div>
      {v?.report && (
        <div class="card table-wrap">
          <table class="list" aria-label="Verification per table">
            <thead>
              <tr>
                <th>Table</th>
                <th>Source rows</th>
                <th>Target rows</th>
                <th>Chunks</th>
                <th>Differing keys</th>
              </tr>
            </thead>
            <tbody>
              {v.report.tables.map((t) => {
                const keys = [
                  ...t.differing_chunks.flatMap((c) => c.missing_keys.map((k) => `missing ${k}`)),
                  ...t.differing_chunks.flatMap((c) => c.different_keys.map((k) => `different ${k}`)),
                  ...t.extra_keys.map((k) => `extra ${k}`),
                ];
                return (
                  <tr key={`${t.table.database}.${t.table.table}`}>
                    <td>
                      {t.table.database}.{t.table.table} → {t.target}
                    </td>
                    <td>{formatNumber(t.source_rows, 0)}</td>
                    <td>{formatNumber(t.target_rows, 0)}</td>
                    <td>{t.chunks}</td>
                    <td class="code">{keys.length ? keys.slice(0, 50).join(", ") : "none"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
