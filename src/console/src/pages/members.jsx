// Members and service accounts of the current org: list, add by email with a role, change a role,
// remove; create and delete service accounts. Actions show only to roles holding members:manage.
import { useState } from "preact/hooks";
import { call } from "../api.js";
import { can, grantableRoles, ROLES } from "../perms.js";
import { loadOrgs } from "../session.js";
import { currentOrg, useStore } from "../store.js";
import { Alert, ConfirmButton, Feedback, fmtTime, PageTitle, Select, Table, TextInput, useAction, useLoad, useId } from "../ui.jsx";

function RoleEditor({ member, roles, onSave }) {
  const [role, setRole] = useState(member.role);
  const id = useId("role");
  return (
    <span class="inline-form">
      <label for={id} class="visually-hidden">Role of {member.email}</label>
      <select id={id} value={role} onChange={(e) => setRole(e.currentTarget.value)}>
        {ROLES.map((r) => <option key={r} value={r} disabled={!roles.includes(r)}>{r}</option>)}
      </select>
      <button type="button" class="secondary" disabled={role === member.role} onClick={() => onSave(role)}>
        Change role<span class="visually-hidden"> of {member.email}</span>
      </button>
    </span>
  );
}

function Members({ org, user }) {
  const orgId = org.id;
  const manage = can(user, org.role, "members:manage");
  const roles = grantableRoles(user, org.role);
  const list = useLoad(() => call("GET", "/v1/orgs/{org_id}/members", { path: { org_id: orgId }, query: { limit: 100 } }), [orgId]);
  const action = useAction();
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("member");

  const add = async (e) => {
    e.preventDefault();
    const done = await action.run(
      () => call("POST", "/v1/orgs/{org_id}/members", { path: { org_id: orgId }, body: { email, role } }),
      (m) => `Added ${m.email} as ${m.role}.`,
    );
    if (done) {
      setEmail("");
      list.reload();
    }
  };
  const change = async (m, newRole) => {
    const done = await action.run(
      () => call("PATCH", "/v1/orgs/{org_id}/members/{user_id}", { path: { org_id: orgId, user_id: m.user_id }, body: { role: newRole } }),
      `${m.email} is now ${newRole}.`,
    );
    if (done) list.reload();
  };
  const remove = async (m) => {
    const done = await action.run(
      () => call("DELETE", "/v1/orgs/{org_id}/members/{user_id}", { path: { org_id: orgId, user_id: m.user_id } }),
      `Removed ${m.email} (their keys in this org are revoked).`,
    );
    if (done !== undefined) list.reload();
  };

  const columns = [
    { label: "Email", render: (m) => m.email },
    { label: "Name", render: (m) => m.name || "—" },
    { label: "Kind", render: (m) => m.kind },
    { label: "Role", render: (m) => (manage && m.kind !== "service_account"
      ? <RoleEditor member={m} roles={roles} onSave={(r) => change(m, r)} /> : m.role) },
    { label: "Joined", render: (m) => fmtTime(m.joined_at) },
  ];
  if (manage) {
    columns.push({ label: "Actions", render: (m) => (m.user_id === user.id ? null
      : <ConfirmButton label="Remove" describe={m.email} onConfirm={() => remove(m)} />) });
  }
  return (
    <section aria-labelledby="members-h">
      <h2 id="members-h">Members</h2>
      <Feedback error={action.error} message={action.message} />
      {list.error && <Alert error={list.error} />}
      {list.data && <Table caption={`Members of ${org.name}`} columns={columns} rows={list.data.data} rowKey={(m) => m.user_id} />}
      {manage && (
        <form class="card" onSubmit={add} aria-labelledby="add-member-h">
          <h3 id="add-member-h">Add a member</h3>
          <p class="muted">The person must already have an account (platform admins create accounts on the Users page).</p>
          <div class="row">
            <TextInput label="Email" name="member-email" type="email" required value={email} onInput={setEmail} />
            <Select label="Role" name="member-role" value={role} onChange={setRole} options={roles} />
          </div>
          <button type="submit" disabled={action.busy}>Add member</button>
        </form>
      )}
    </section>
  );
}

function ServiceAccounts({ org, user }) {
  const orgId = org.id;
  const manage = can(user, org.role, "members:manage");
  const roles = grantableRoles(user, org.role).filter((r) => r !== "owner");
  const list = useLoad(() => call("GET", "/v1/orgs/{org_id}/service-accounts", { path: { org_id: orgId }, query: { limit: 100 } }), [orgId]);
  const action = useAction();
  const [name, setName] = useState("");
  const [role, setRole] = useState("member");

  const create = async (e) => {
    e.preventDefault();
    const done = await action.run(
      () => call("POST", "/v1/orgs/{org_id}/service-accounts", { path: { org_id: orgId }, body: { name, role } }),
      (sa) => `Created service account ${sa.name}. Give it keys on the API keys page.`,
    );
    if (done) {
      setName("");
      list.reload();
    }
  };
  const remove = async (sa) => {
    const done = await action.run(
      () => call("DELETE", "/v1/orgs/{org_id}/service-accounts/{user_id}", { path: { org_id: orgId, user_id: sa.id } }),
      `Deleted ${sa.name} and revoked its keys.`,
    );
    if (done !== undefined) list.reload();
  };
  const columns = [
    { label: "Name", render: (sa) => sa.name },
    { label: "Role", render: (sa) => sa.role },
    { label: "Created", render: (sa) => fmtTime(sa.created_at) },
  ];
  if (manage) columns.push({ label: "Actions", render: (sa) => <ConfirmButton label="Delete" describe={sa.name} onConfirm={() => remove(sa)} /> });
  return (
    <section aria-labelledby="sa-h">
      <h2 id="sa-h">Service accounts</h2>
      <Feedback error={action.error} message={action.message} />
      {list.error && <Alert error={list.error} />}
      {list.data && <Table caption="Service accounts" columns={columns} rows={list.data.data} rowKey={(s) => s.id}
        empty="No service accounts. They own the keys of programs, so keys survive people leaving." />}
      {manage && (
        <form class="card" onSubmit={create} aria-labelledby="sa-new-h">
          <h3 id="sa-new-h">New service account</h3>
          <div class="row">
            <TextInput label="Name" name="sa-name" required value={name} onInput={setName} />
            <Select label="Role" name="sa-role" value={role} onChange={setRole} options={roles} />
          </div>
          <button type="submit" disabled={action.busy}>Create service account</button>
        </form>
      )}
    </section>
  );
}

function NewOrg() {
  const action = useAction();
  const [name, setName] = useState("");
  const create = async (e) => {
    e.preventDefault();
    const org = await action.run(() => call("POST", "/v1/orgs", { body: { name } }), (o) => `Created ${o.name}; you are its owner.`);
    if (org) {
      setName("");
      await loadOrgs();
    }
  };
  return (
    <section aria-labelledby="org-new-h">
      <h2 id="org-new-h">New organization</h2>
      <Feedback error={action.error} message={action.message} />
      <form class="card" onSubmit={create}>
        <TextInput label="Organization name" name="org-name" required value={name} onInput={setName} />
        <button type="submit" disabled={action.busy}>Create organization</button>
      </form>
    </section>
  );
}

export function MembersPage() {
  const st = useStore();
  const org = currentOrg();
  return (
    <>
      <PageTitle>Members</PageTitle>
      {org ? (
        <>
          <p class="muted">Your role in {org.name}: <strong>{org.role || "platform admin"}</strong>.</p>
          <Members org={org} user={st.user} />
          <ServiceAccounts org={org} user={st.user} />
        </>
      ) : <p>You belong to no organization yet.</p>}
      <NewOrg />
    </>
  );
}
