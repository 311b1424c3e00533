// Small shared pieces: alerts, labelled fields, tables that scroll on narrow screens, formatting.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

let fieldCounter = 0;
/** A stable id for a label/input pair. */
export function useId(prefix = "f") {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++fieldCounter}`;
  return ref.current;
}

/** An error (role=alert, announced at once) or a status message (role=status, polite). */
export function Alert({ error, message, kind }) {
  if (error) {
    const status = error.status ? ` (HTTP ${error.status})` : "";
    return (
      <div class="alert alert-error" role="alert">
        <strong>{error.status === 403 ? "Not allowed" : "Error"}{status}:</strong> {error.message}
      </div>
    );
  }
  if (message) {
    return <div class={`alert alert-${kind || "ok"}`} role="status">{message}</div>;
  }
  return null;
}

/** A live region that is always in the page, so screen readers announce what appears in it. */
export function Feedback({ error, message }) {
  return (
    <div class="feedback" aria-live="polite">
      <Alert error={error} message={message} />
    </div>
  );
}

export function Field({ label, hint, children, id }) {
  const hintId = hint ? `${id}-hint` : undefined;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children}
      {hint && <small id={hintId} class="hint">{hint}</small>}
    </div>
  );
}

export function TextInput({ label, hint, value, onInput, type = "text", required, name, autocomplete, ...rest }) {
  const id = useId(name || "in");
  return (
    <Field label={label} hint={hint} id={id}>
      <input id={id} name={name} type={type} value={value} required={required} autocomplete={autocomplete}
        aria-describedby={hint ? `${id}-hint` : undefined}
        onInput={(e) => onInput(e.currentTarget.value)} {...rest} />
    </Field>
  );
}

export function Select({ label, value, onChange, options, name, hint }) {
  const id = useId(name || "sel");
  return (
    <Field label={label} hint={hint} id={id}>
      <select id={id} name={name} value={value} onChange={(e) => onChange(e.currentTarget.value)}
        aria-describedby={hint ? `${id}-hint` : undefined}>
        {options.map((o) => {
          const [v, text] = Array.isArray(o) ? o : [o, o];
          return <option key={v} value={v}>{text}</option>;
        })}
      </select>
    </Field>
  );
}

export function Checkbox({ label, checked, onChange, name }) {
  const id = useId(name || "cb");
  return (
    <div class="check">
      <input id={id} type="checkbox" name={name} checked={checked} onChange={(e) => onChange(e.currentTarget.checked)} />
      <label for={id}>{label}</label>
    </div>
  );
}

/** A table in a focusable region, so it scrolls sideways by keyboard on a narrow screen. */
export function Table({ caption, columns, rows, empty = "Nothing here yet.", rowKey }) {
  return (
    <div class="table-wrap" role="region" aria-label={caption} tabindex="0">
      <table>
        <caption>{caption}</caption>
        <thead>
          <tr>{columns.map((c) => <th key={c.label} scope="col">{c.label}</th>)}</tr>
        </thead>
        <tbody>
          {rows.length === 0 && (
            <tr><td colspan={columns.length} class="empty">{empty}</td></tr>
          )}
          {rows.map((r, i) => (
            <tr key={rowKey ? rowKey(r) : i}>
              {columns.map((c) => <td key={c.label} class={c.cls}>{c.render(r)}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The page heading, focused when the page opens so keyboard and screen-reader users start there. */
export function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => {
    ref.current?.focus();
  }, []);
  return <h1 tabindex="-1" ref={ref}>{children}</h1>;
}

/** Runs `load` now and whenever `deps` change; {data, error, loading, reload}. */
export function useLoad(load, deps) {
  const [st, setSt] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const run = useCallback(() => {
    const n = ++seq.current;
    setSt((s) => ({ ...s, loading: true }));
    Promise.resolve()
      .then(load)
      .then(
        (data) => n === seq.current && setSt({ data, error: null, loading: false }),
        (error) => n === seq.current && setSt({ data: null, error, loading: false }),
      );
  }, deps);
  useEffect(run, [run]);
  return { ...st, reload: run };
}

/** Runs an action, holding its error or success message: [busy, error, message, run, clear]. */
export function useAction() {
  const [st, setSt] = useState({ busy: false, error: null, message: null });
  const run = async (fn, success) => {
    setSt({ busy: true, error: null, message: null });
    try {
      const result = await fn();
      setSt({ busy: false, error: null, message: typeof success === "function" ? success(result) : success || null });
      return result;
    } catch (error) {
      setSt({ busy: false, error, message: null });
      return undefined;
    }
  };
  const clear = () => setSt({ busy: false, error: null, message: null });
  return { ...st, run, clear };
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function fmtUsd(s) {
  if (s === null || s === undefined) return "—";
  const n = Number(s);
  return n < 0.01 && n > 0 ? `$${n.toPrecision(3)}` : `$${n.toFixed(2)}`;
}

export function shortId(id) {
  return id ? `${id.slice(0, 8)}…` : "—";
}

/** A destructive action asked twice: the first press shows "Yes, <label>" and "Cancel". */
export function ConfirmButton({ label, confirmLabel, onConfirm, disabled, describe }) {
  const [armed, setArmed] = useState(false);
  const yes = useRef(null);
  useEffect(() => {
    if (armed) yes.current?.focus();
  }, [armed]);
  if (!armed) {
    return (
      <button type="button" class="danger" disabled={disabled} aria-label={describe ? `${label} ${describe}` : undefined}
        onClick={() => setArmed(true)}>{label}</button>
    );
  }
  return (
    <span class="confirm">
      <button type="button" class="danger" ref={yes} onClick={() => { setArmed(false); onConfirm(); }}>
        {confirmLabel || `Yes, ${label.toLowerCase()}`}
      </button>
      <button type="button" class="secondary" onClick={() => setArmed(false)}>Cancel</button>
    </span>
  );
}
