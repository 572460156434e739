// Instances: the list (mode, billing, state, expiry, source delay at a glance) and the create
// form, with the subscription rules stated where the choice is made.
import { useState } from "preact/hooks";

import { api, type Instance, type TaskMetrics } from "../api";
import { Busy, ErrorNote, Field, Select, fieldError, formatNumber, formatTime, usePoll } from "../components/ui";
import { href } from "../router";

export function billingText(i: Instance): string {
  return i.billing.type === "subscription" ? `subscription, expires ${formatTime(i.billing.expires_at)}` : "pay-as-you-go";
}

export function Instances() {
  const list = usePoll(() => api.instances(), 10_000, []);
  const [creating, setCreating] = useState(false);
  return (
    <section aria-labelledby="instances-title">
      <div class="title-row">
        <h1 id="instances-title">Instances</h1>
        <button type="button" class="primary" onClick={() => setCreating(!creating)} aria-expanded={creating}>
          {creating ? "Close" : "Create instance"}
        </button>
      </div>
      {creating && (
        <CreateInstance
          onCreated={() => {
            setCreating(false);
            void list.reload();
          }}
        />
      )}
      <ErrorNote error={list.error} />
      {!list.data && !list.error && <Busy>Loading instances…</Busy>}
      {list.data && list.data.instances.length === 0 && <p class="muted">No instances yet: create one to track changes or synchronize data.</p>}
      {list.data && list.data.instances.length > 0 && (
        <div class="table-wrap">
          <table class="list" aria-label="Instances">
            <thead>
              <tr>
                <th>Name</th>
                <th>Mode</th>
                <th>Billing</th>
                <th>Status</th>
                <th>Task</th>
                <th>Source delay</th>
              </tr>
            </thead>
            <tbody>
              {list.data.instances.map((i) => (
                <InstanceRow instance={i} key={i.id} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function InstanceRow({ instance: i }: { instance: Instance }) {
  const running = ["schema_sync", "full_sync", "incremental"].includes(i.task?.state ?? "");
  const metrics = usePoll<TaskMetrics | undefined>(() => (running ? api.metrics(i.id) : Promise.resolve(undefined)), 15_000, [i.id, running]);
  const delay = metrics.data?.source_delay_seconds;
  return (
    <tr>
      <td>
        <a href={href({ page: "instance", id: i.id })}>{i.name}</a>
        <div class="muted code">{i.id}</div>
      </td>
      <td>{i.mode === "tracking" ? "change tracking" : "data sync"}</td>
      <td>{billingText(i)}</td>
      <td>
        <span class={`badge ${i.status}`}>{i.status}</span>
      </td>
      <td>
        <span class={`badge state-${i.task?.state ?? "none"}`}>{(i.task?.state ?? "—").replace(/_/g, " ")}</span>
      </td>
      <td>{running ? (delay === null || delay === undefined ? "—" : `${formatNumber(delay)} s`) : "—"}</td>
    </tr>
  );
}

function CreateInstance({ onCreated }: { onCreated: (i: Instance) => void }) {
  const [name, setName] = useState("");
  const [mode, setMode] = useState<"tracking" | "sync">("tracking");
  const [cls, setClass] = useState("small");
  const [billing, setBilling] = useState("pay_as_you_go");
  const [months, setMonths] = useState("1");
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  // One token per form: a retried submit creates the instance once.
  const [token] = useState(() => `console-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const created = await api.createInstance({
        name,
        mode,
        class: cls,
        billing: billing === "subscription" ? { type: "subscription", months: Number(months) } : { type: "pay_as_you_go" },
        client_token: token,
      });
      onCreated(created);
      location.hash = href({ page: "instance", id: created.id, tab: "configure" });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-label="Create instance">
      <div class="grid">
        <Field label="Name" name="name" value={name} onInput={setName} required error={fieldError(error, "name")} />
        <Select
          label="Mode"
          name="mode"
          value={mode}
          onChange={(v) => setMode(v as "tracking" | "sync")}
          options={[
            ["tracking", "Change tracking (binlog → Kafka topic)"],
            ["sync", "Data synchronization (schema + full + incremental)"],
          ]}
        />
        <Select
          label="Class"
          name="class"
          value={cls}
          onChange={setClass}
          options={[
            ["small", "small"],
            ["medium", "medium"],
            ["large", "large"],
          ]}
        />
        <Select
          label="Billing"
          name="billing"
          value={billing}
          onChange={setBilling}
          options={[
            ["pay_as_you_go", "Pay-as-you-go"],
            ["subscription", "Subscription"],
          ]}
        />
        {billing === "subscription" && (
          <Field label="Months" name="months" type="number" min={1} max={36} value={months} onInput={setMonths} error={fieldError(error, "months")} />
        )}
      </div>
      <p class="muted" id="billing-rules">
        {billing === "subscription"
          ? "A subscription runs for 1 to 36 months and can be renewed. It cannot be deleted: when it expires its task stops, and 7 days later it is released."
          : "Pay-as-you-go runs until you delete it; deleting removes its task, topic and consumer groups."}
      </p>
      <ErrorNote error={error && !fieldError(error, "name") && !fieldError(error, "months") ? error : undefined} />
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Creating…" : "Create"}
      </button>
    </form>
  );
}
