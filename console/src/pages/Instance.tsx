// One instance: its header (billing, status, the lifecycle actions with their rules) and its
// screens as tabs.
import type { JSX } from "preact";
import { useState } from "preact/hooks";

import { api, idle, type Instance as InstanceT } from "../api";
import { Busy, ErrorNote, Field, pausePolls, usePoll } from "../components/ui";
import { go, href } from "../router";
import { Changes } from "./Changes";
import { Configure } from "./Configure";
import { Groups } from "./Groups";
import { billingText } from "./Instances";
import { Overview } from "./Overview";
import { Verify } from "./Verify";

/** The screens of an instance, by tab id, and the modes that have them. */
const TABS: { id: string; label: string; modes: string[]; screen: (i: InstanceT) => JSX.Element }[] = [
  { id: "overview", label: "Overview", modes: ["tracking", "sync"], screen: (i) => <Overview instance={i} /> },
  { id: "configure", label: "Configure", modes: ["tracking", "sync"], screen: (i) => <Configure instance={i} /> },
  { id: "groups", label: "Consumer groups", modes: ["tracking"], screen: (i) => <Groups instance={i} /> },
  { id: "changes", label: "Data changes", modes: ["tracking"], screen: (i) => <Changes instance={i} /> },
  { id: "verify", label: "Verify", modes: ["sync"], screen: (i) => <Verify instance={i} /> },
];

export function Instance({ id, tab }: { id: string; tab: string }) {
  const instance = usePoll(() => api.instance(id), 10_000, [id]);
  if (instance.error && !instance.data) return <ErrorNote error={instance.error} />;
  if (!instance.data) return <Busy>Loading the instance…</Busy>;
  const i = instance.data;
  const tabs = TABS.filter((t) => t.modes.includes(i.mode));
  return (
    <section aria-labelledby="instance-title">
      <p>
        <a href="#/">← Instances</a>
      </p>
      <div class="title-row">
        <h1 id="instance-title">{i.name}</h1>
        <span class="muted code">{i.id}</span>
      </div>
      <p>
        {i.mode === "tracking" ? "Change tracking" : "Data synchronization"} · {i.class} · {billingText(i)} ·{" "}
        <span class={`badge ${i.status}`}>{i.status}</span>
      </p>
      <Lifecycle instance={i} onChanged={() => void instance.reload()} />
      <nav class="tabs" aria-label="Instance screens">
        {tabs.map((t) => (
          <a key={t.id} href={href({ page: "instance", id, tab: t.id })} aria-current={t.id === tab ? "page" : undefined}>
            {t.label}
          </a>
        ))}
      </nav>
      {(tabs.find((t) => t.id === tab) ?? tabs[0]).screen(i)}
    </section>
  );
}

/** Renew (subscriptions), reset and delete, each refused where the rules say, with why. */
function Lifecycle({ instance: i, onChanged }: { instance: InstanceT; onChanged: () => void }) {
  const [months, setMonths] = useState("1");
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState<string | undefined>(undefined);
  const subscription = i.billing.type === "subscription";
  const run = async (what: string, action: () => Promise<unknown>, after?: () => void) => {
    setBusy(what);
    setError(undefined);
    try {
      await action();
      after ? after() : onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  return (
    <div class="card actions" aria-label="Instance actions">
      {subscription && (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            void run("renew", () => api.renew(i.id, Number(months)));
          }}
        >
          <Field label="Renew for months (1–36)" name="renew-months" type="number" min={1} max={36} value={months} onInput={setMonths} />
          <button type="submit" disabled={!!busy}>
            Renew
          </button>
        </form>
      )}
      <button
        type="button"
        disabled={!!busy}
        onClick={() => {
          if (confirm("Reset stops the task and clears its configuration, progress and secrets. Reset?")) void run("reset", () => api.reset(i.id));
        }}
      >
        Reset
      </button>
      <button
        type="button"
        class="danger"
        disabled={!!busy}
        title={subscription ? "A subscription cannot be deleted: it is released 7 days after it expires" : undefined}
        onClick={() => {
          if (confirm(`Delete ${i.name} with its task, topic and consumer groups?`))
            void run(
              "delete",
              async () => {
                // The page's polls stop and their requests finish first: none asks for the
                // instance after it is gone (a 404 in the console otherwise).
                pausePolls(true);
                try {
                  await idle();
                  await api.remove(i.id);
                } catch (e) {
                  pausePolls(false);
                  throw e;
                }
              },
              () => {
                go({ page: "instances" });
                // Once the instance's page is gone (the route changes on the next events).
                setTimeout(() => pausePolls(false), 500);
              },
            );
        }}
      >
        Delete
      </button>
      {subscription && <p class="muted">A subscription cannot be deleted; it is released 7 days after it expires.</p>}
      {busy && <Busy>{busy}…</Busy>}
      <ErrorNote error={error} />
    </div>
  );
}
