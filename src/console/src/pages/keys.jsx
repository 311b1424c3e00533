// API keys of the current org: list (last used, expiry, revocation), create (the secret shown once),
// rotate with a grace period, revoke.
import { useEffect, useRef, useState } from "preact/hooks";
import { call, randomId } from "../api.js";
import { can } from "../perms.js";
import { currentOrg, update, useStore } from "../store.js";
import { Alert, Checkbox, ConfirmButton, Feedback, fmtTime, PageTitle, Select, Table, TextInput, useAction, useId, useLoad } from "../ui.jsx";

const SCOPES = ["inference", "management:read", "management:write"];

/** The one and only view of a new secret: copy it now, it is never shown again. */
function SecretPanel({ created, onDone }) {
  const [copied, setCopied] = useState(null);
  const input = useRef(null);
  const id = useId("secret");
  const heading = useRef(null);
  useEffect(() => heading.current?.focus(), []);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied("Copied to the clipboard.");
    } catch {
      input.current?.select();
      setCopied("The clipboard is not available here: the secret is selected, copy it with Ctrl+C (⌘C).");
    }
  };
  return (
    <section class="card secret" aria-labelledby="secret-h">
      <h2 id="secret-h" tabindex="-1" ref={heading}>Your new key “{created.api_key.name}”</h2>
      <p class="warning" role="alert">
        Copy this secret now. It is shown only this once: aiaas keeps only its hash and cannot show it again.
      </p>
      <div class="field">
        <label for={id}>Secret</label>
        <div class="inline-form">
          <input id={id} ref={input} class="mono" readonly value={created.key} data-testid="new-key-secret" />
          <button type="button" onClick={copy}>Copy</button>
        </div>
      </div>
      <p role="status" aria-live="polite">{copied}</p>
      <p class="muted">The playground can use it until you reload this tab (it is kept in memory only).</p>
      <button type="button" class="secondary" onClick={onDone}>I have stored it</button>
    </section>
  );
}

function CreateForm({ org, user, onCreated }) {
  const manageAll = can(user, org.role, "keys:manage_all");
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState(["inference"]);
  const [models, setModels] = useState("");
  const [rpm, setRpm] = useState("");
  const [tpm, setTpm] = useState("");
  const [expires, setExpires] = useState("");
  const [owner, setOwner] = useState("");
  const accounts = useLoad(() => (manageAll
    ? call("GET", "/v1/orgs/{org_id}/service-accounts", { path: { org_id: org.id }, query: { limit: 100 } })
    : Promise.resolve({ data: [] })), [org.id, manageAll]);
  const action = useAction();

  const toggle = (scope, on) => setScopes((s) => (on ? [...s, scope] : s.filter((x) => x !== scope)));
  const submit = async (e) => {
    e.preventDefault();
    const body = { name, scopes };
    const allowed = models.split(",").map((m) => m.trim()).filter(Boolean);
    if (allowed.length) body.allowed_models = allowed;
    if (rpm) body.rpm_limit = Number(rpm);
    if (tpm) body.tpm_limit = Number(tpm);
    if (expires) body.expires_at = new Date(expires).toISOString();
    if (owner) body.service_account_id = owner;
    const created = await action.run(() => call("POST", "/v1/orgs/{org_id}/keys", {
      path: { org_id: org.id }, body, headers: { "Idempotency-Key": randomId() },
    }));
    if (created) {
      setName("");
      onCreated(created);
    }
  };
  const owners = [["", "Me"], ...((accounts.data && accounts.data.data) || []).map((sa) => [sa.id, `Service account ${sa.name}`])];
  return (
    <form class="card" onSubmit={submit} aria-labelledby="key-new-h">
      <h2 id="key-new-h">Create a key</h2>
      <Feedback error={action.error} />
      <div class="row">
        <TextInput label="Name" name="key-name" required value={name} onInput={setName} />
        {manageAll && <Select label="Owner" name="key-owner" value={owner} onChange={setOwner} options={owners} />}
      </div>
      <fieldset>
        <legend>Scopes</legend>
        {SCOPES.map((s) => <Checkbox key={s} label={s} name={`scope-${s}`} checked={scopes.includes(s)} onChange={(on) => toggle(s, on)} />)}
      </fieldset>
      <div class="row">
        <TextInput label="Allowed models" name="key-models" value={models} onInput={setModels}
          hint="Comma-separated; empty allows every model." />
        <TextInput label="Requests per minute" name="key-rpm" type="number" min="1" value={rpm} onInput={setRpm} hint="Empty: no limit." />
        <TextInput label="Tokens per minute" name="key-tpm" type="number" min="1" value={tpm} onInput={setTpm} hint="Empty: no limit." />
        <TextInput label="Expires" name="key-expires" type="datetime-local" value={expires} onInput={setExpires} hint="Your local time; empty: never." />
      </div>
      <button type="submit" disabled={action.busy}>Create key</button>
    </form>
  );
}

function Rotate({ apiKey, onRotated }) {
  const [open, setOpen] = useState(false);
  const [grace, setGrace] = useState("3600");
  const id = useId("grace");
  if (!open) {
    return <button type="button" class="secondary" onClick={() => setOpen(true)}>Rotate<span class="visually-hidden"> {apiKey.name}</span></button>;
  }
  return (
    <span class="inline-form">
      <label for={id}>Grace (s)</label>
      <input id={id} type="number" min="0" class="narrow" value={grace} onInput={(e) => setGrace(e.currentTarget.value)} />
      <button type="button" onClick={() => { setOpen(false); onRotated(Number(grace || 0)); }}>Rotate now</button>
      <button type="button" class="secondary" onClick={() => setOpen(false)}>Cancel</button>
    </span>
  );
}

export function KeysPage() {
  const st = useStore();
  const org = currentOrg();
  const [created, setCreated] = useState(null); // the secret lives in this component and dies with it
  const [revoked, setRevoked] = useState(false);
  const action = useAction();
  const orgId = org && org.id;
  const mayManage = org && can(st.user, org.role, "keys:manage_own");
  const list = useLoad(() => (orgId ? call("GET", "/v1/orgs/{org_id}/keys", {
    path: { org_id: orgId }, query: { limit: 100, include_revoked: revoked },
  }) : null), [orgId, revoked]);

  if (!org) return <><PageTitle>API keys</PageTitle><p>You belong to no organization yet.</p></>;
  const onCreated = (c) => {
    setCreated(c);
    update({ lastSecret: { key: c.key, name: c.api_key.name, prefix: c.api_key.prefix } });
    list.reload();
  };
  const rotate = async (k, grace) => {
    const c = await action.run(() => call("POST", "/v1/orgs/{org_id}/keys/{key_id}/rotate", {
      path: { org_id: orgId, key_id: k.id }, body: { grace_seconds: grace },
    }), `Rotated ${k.name}: the old key works for ${grace} more seconds.`);
    if (c) onCreated(c);
  };
  const revoke = async (k) => {
    const done = await action.run(() => call("DELETE", "/v1/orgs/{org_id}/keys/{key_id}", {
      path: { org_id: orgId, key_id: k.id },
    }), `Revoked ${k.name}.`);
    if (done !== undefined) list.reload();
  };
  const columns = [
    { label: "Name", render: (k) => k.name },
    { label: "Prefix", cls: "mono", render: (k) => k.prefix },
    { label: "Status", render: (k) => <span class={`badge badge-${k.status}`}>{k.status}</span> },
    { label: "Scopes", render: (k) => k.scopes.join(", ") },
    { label: "Models", render: (k) => (k.allowed_models ? k.allowed_models.join(", ") : "any") },
    { label: "Limits", render: (k) => `${k.rpm_limit ?? "∞"} rpm · ${k.tpm_limit ?? "∞"} tpm` },
    { label: "Last used", render: (k) => fmtTime(k.last_used_at) },
    { label: "Expires", render: (k) => (k.expires_at ? fmtTime(k.expires_at) : "never") },
    { label: "Revoked", render: (k) => (k.revoked_at ? fmtTime(k.revoked_at) : "—") },
  ];
  if (mayManage) {
    columns.push({ label: "Actions", render: (k) => (k.status === "active" ? (
      <span class="actions">
        <Rotate apiKey={k} onRotated={(g) => rotate(k, g)} />
        <ConfirmButton label="Revoke" describe={k.name} onConfirm={() => revoke(k)} />
      </span>) : null) });
  }
  return (
    <>
      <PageTitle>API keys</PageTitle>
      <p class="muted">Keys call the inference API as their owner. {can(st.user, org.role, "keys:manage_all")
        ? "You manage every key of this org." : mayManage ? "You manage your own keys." : "Your role cannot create keys."}</p>
      {created && <SecretPanel created={created} onDone={() => setCreated(null)} />}
      <Feedback error={action.error} message={action.message} />
      {mayManage && <CreateForm org={org} user={st.user} onCreated={onCreated} />}
      <section aria-labelledby="keys-h">
        <h2 id="keys-h">Keys</h2>
        <Checkbox label="Show revoked and expired keys" name="include-revoked" checked={revoked} onChange={setRevoked} />
        {list.error && <Alert error={list.error} />}
        {list.data && <Table caption={`Keys of ${org.name}`} columns={columns} rows={list.data.data} rowKey={(k) => k.id} />}
      </section>
    </>
  );
}
