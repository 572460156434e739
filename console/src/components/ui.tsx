// Small building blocks every screen shares: labelled fields that show the API error about
// them, error and progress notices, and a hook that polls the API.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import { ApiError } from "../api";

let nextId = 0;
const fieldId = () => `f${++nextId}`;

/** A labelled input; `error` is shown under it (an API error about this field). */
export function Field(props: {
  label: string;
  value: string;
  onInput: (v: string) => void;
  type?: string;
  name?: string;
  error?: string;
  hint?: string;
  required?: boolean;
  autocomplete?: string;
  min?: number;
  max?: number;
  /** Enter in the field does this instead of submitting the form around it. */
  onEnter?: () => void;
}) {
  const [id] = useState(fieldId);
  return (
    <div class={`field${props.error ? " invalid" : ""}`}>
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        type={props.type ?? "text"}
        value={props.value}
        required={props.required}
        autocomplete={props.autocomplete ?? "off"}
        min={props.min}
        max={props.max}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={props.error ? `${id}-error` : undefined}
        onInput={(e) => props.onInput((e.target as HTMLInputElement).value)}
        onKeyDown={
          props.onEnter
            ? (e) => {
                if (e.key === "Enter") {
                  e.preventDefault();
                  props.onEnter?.();
                }
              }
            : undefined
        }
      />
      {props.hint && !props.error && <small class="muted">{props.hint}</small>}
      {props.error && (
        <small id={`${id}-error`} class="error-text" role="alert">
          {props.error}
        </small>
      )}
    </div>
  );
}

export function Select(props: {
  label: string;
  value: string;
  options: [string, string][];
  onChange: (v: string) => void;
  name?: string;
}) {
  const [id] = useState(fieldId);
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <select id={id} name={props.name} value={props.value} onChange={(e) => props.onChange((e.target as HTMLSelectElement).value)}>
        {props.options.map(([v, text]) => (
          <option value={v} key={v}>
            {text}
          </option>
        ))}
      </select>
    </div>
  );
}

/** An API error with its message and hint. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : new ApiError(0, "error", String(error));
  return (
    <div class="note error" role="alert">
      <strong>{e.message}</strong>
      {e.hint && <div class="hint">{e.hint}</div>}
      <div class="muted code">{e.code}</div>
    </div>
  );
}

export function Busy({ children }: { children: ComponentChildren }) {
  return (
    <div class="note busy" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> {children}
    </div>
  );
}

/** The error to show next to `field` (an API error whose `details.field` ends with it). */
export function fieldError(error: unknown, field: string): string | undefined {
  if (!(error instanceof ApiError) || !error.field) return undefined;
  const f = error.field;
  if (f === field || f.endsWith(`.${field}`)) return error.hint ? `${error.message} — ${error.hint}` : error.message;
  return undefined;
}

/** While true, polls skip their turns (an action is about to make what they read disappear). */
let pollsPaused = false;
export function pausePolls(paused: boolean) {
  pollsPaused = paused;
}

/** Loads with `load` now and every `intervalMs` (0: once); `reload` loads again at once. */
export function usePoll<T>(load: () => Promise<T>, intervalMs: number, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = useCallback(async () => {
    try {
      setData(await loadRef.current());
      setError(undefined);
    } catch (e) {
      setError(e);
    }
  }, []);
  useEffect(() => {
    setData(undefined);
    void reload();
    if (!intervalMs) return;
    const t = setInterval(() => {
      if (!pollsPaused) void reload();
    }, intervalMs);
    return () => clearInterval(t);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return { data, error, reload };
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function formatNumber(n: number | null | undefined, digits = 1): string {
  if (n === null || n === undefined) return "—";
  return n.toLocaleString(undefined, { maximumFractionDigits: digits });
}
