// Consumer groups of a tracking task: create, change a password (the old one required),
// delete; each group's committed offset, consumption checkpoint, delay and unconsumed changes,
// and the settings a consumer needs, ready to copy.
import { useState } from "preact/hooks";

import { api, type ConsumerGroup, type Instance } from "../api";
import { Busy, ErrorNote, Field, fieldError, formatNumber, formatTime, usePoll } from "../components/ui";

export function Groups({ instance }: { instance: Instance }) {
  const groups = usePoll(() => api.groups(instance.id), 5_000, [instance.id]);
  return (
    <div class="stack">
      <CreateGroup instanceId={instance.id} onCreated={() => void groups.reload()} />
      <ErrorNote error={groups.error} />
      {!groups.data && !groups.error && <Busy>Loading consumer groups…</Busy>}
      {groups.data && groups.data.consumer_groups.length === 0 && <p class="muted">No consumer groups yet: each consumer application gets its own, with its own credentials.</p>}
      {groups.data?.consumer_groups.map((g) => (
        <Group key={g.id} instanceId={instance.id} group={g} onChanged={() => void groups.reload()} />
      ))}
    </div>
  );
}

function CreateGroup({ instanceId, onCreated }: { instanceId: string; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.createGroup(instanceId, { name, username, password });
      setName("");
      setUsername("");
      setPassword("");
      onCreated();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const shown = (f: string) => fieldError(error, f);
  return (
    <form class="card" onSubmit={submit} aria-label="Create consumer group">
      <h2>New consumer group</h2>
      <div class="grid">
        <Field label="Group name" name="group-name" value={name} onInput={setName} required error={shown("name")} />
        <Field label="Username" name="group-username" value={username} onInput={setUsername} required hint="a letter, then up to 15 letters, digits or _" error={shown("username")} />
        <Field
          label="Password"
          name="group-password"
          type="password"
          autocomplete="new-password"
          value={password}
          onInput={setPassword}
          required
          hint="8–32 characters, at least two of upper, lower, digit, symbol"
          error={shown("password")}
        />
      </div>
      <ErrorNote error={error && !shown("name") && !shown("username") && !shown("password") ? error : undefined} />
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Creating…" : "Create group"}
      </button>
    </form>
  );
}

function Copyable({ label, value }: { label: string; value: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <>
      <dt>{label}</dt>
      <dd>
        <span class="code">{value}</span>{" "}
        <button
          type="button"
          class="link"
          aria-label={`Copy ${label}`}
          onClick={() => {
            void navigator.clipboard?.writeText(value).then(() => setCopied(true));
          }}
        >
          {copied ? "copied" : "copy"}
        </button>
      </dd>
    </>
  );
}

function Group({ instanceId, group: g, onChanged }: { instanceId: string; group: ConsumerGroup; onChanged: () => void }) {
  const [oldPassword, setOld] = useState("");
  const [newPassword, setNew] = useState("");
  const [error, setError] = useState<unknown>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const run = async (action: () => Promise<unknown>, message: string) => {
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      await action();
      setDone(message);
      onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const p = g.progress;
  const c = g.connection;
  return (
    <div class="card" aria-label={`Consumer group ${g.name}`} data-testid={`group-${g.name}`}>
      <h2>
        {g.name} <span class="muted code">{g.id}</span>
      </h2>
      <dl class="facts">
        <dt>Committed offsets</dt>
        <dd data-testid="committed">
          {p ? p.partitions.map((x) => `p${x.partition}: ${x.committed_offset ?? "none"} of ${x.high_watermark}`).join(", ") || "—" : "—"}
        </dd>
        <dt>Consumption checkpoint</dt>
        <dd>{formatTime(p?.consumption_checkpoint)}</dd>
        <dt>Delay</dt>
        <dd>{p ? `${formatNumber(p.delay_seconds)} s` : "—"}</dd>
        <dt>Unconsumed changes</dt>
        <dd data-testid="unconsumed">{p ? formatNumber(p.unconsumed, 0) : "—"}</dd>
        {g.progress_error && (
          <>
            <dt>Progress</dt>
            <dd class="error-text">{g.progress_error}</dd>
          </>
        )}
        {c && (
          <>
            <Copyable label="bootstrap.servers" value={c.bootstrap_servers} />
            <Copyable label="security.protocol" value={c.security_protocol} />
            <Copyable label="sasl.mechanism" value={c.sasl_mechanisms.join(" or ")} />
            <Copyable label="sasl.username" value={c.sasl_username} />
            <Copyable label="group.id" value={c.group_id} />
          </>
        )}
      </dl>
      <form
        class="inline"
        aria-label={`Change the password of ${g.name}`}
        onSubmit={(e) => {
          e.preventDefault();
          void run(() => api.changePassword(instanceId, g.id, oldPassword, newPassword), "Password changed.").then(() => {
            setOld("");
            setNew("");
          });
        }}
      >
        <Field label="Old password" name={`old-password-${g.name}`} type="password" autocomplete="current-password" value={oldPassword} onInput={setOld} required error={fieldError(error, "old_password")} />
        <Field label="New password" name={`new-password-${g.name}`} type="password" autocomplete="new-password" value={newPassword} onInput={setNew} required error={fieldError(error, "new_password")} />
        <button type="submit" disabled={busy}>
          Change password
        </button>
      </form>
      <div class="buttons">
        <button
          type="button"
          class="danger"
          disabled={busy}
          onClick={() => {
            if (confirm(`Delete the consumer group ${g.name} and its committed offsets?`)) void run(() => api.deleteGroup(instanceId, g.id), "Deleted.");
          }}
        >
          Delete group
        </button>
      </div>
      {done && (
        <p class="note ok" role="status">
          {done}
        </p>
      )}
      <ErrorNote error={error} />
    </div>
  );
}
