// Platform admins: every user account, and creating one (members are then added to orgs by email).
import { useState } from "preact/hooks";
import { call } from "../api.js";
import { Alert, Checkbox, Feedback, fmtTime, PageTitle, Table, TextInput, useAction, useLoad } from "../ui.jsx";

export function UsersPage() {
  const [filter, setFilter] = useState("");
  const [query, setQuery] = useState("");
  const [cursor, setCursor] = useState(null);
  const list = useLoad(() => call("GET", "/v1/admin/users", { query: { limit: 50, email: query, cursor } }), [query, cursor]);
  const action = useAction();
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [admin, setAdmin] = useState(false);
  const create = async (e) => {
    e.preventDefault();
    const u = await action.run(() => call("POST", "/v1/admin/users", { body: { email, name, password, platform_admin: admin } }),
      (x) => `Created ${x.email}. Add them to an organization on the Members page.`);
    if (u) {
      setEmail("");
      setName("");
      setPassword("");
      setAdmin(false);
      list.reload();
    }
  };
  return (
    <>
      <PageTitle>Users</PageTitle>
      <form class="card" onSubmit={create} aria-labelledby="user-new-h">
        <h2 id="user-new-h">Create a user</h2>
        <Feedback error={action.error} message={action.message} />
        <div class="row">
          <TextInput label="Email" name="user-email" type="email" required value={email} onInput={setEmail} autocomplete="off" />
          <TextInput label="Name" name="user-name" value={name} onInput={setName} autocomplete="off" />
          <TextInput label="Initial password" name="user-password" type="password" required minlength="12" maxlength="72"
            value={password} onInput={setPassword} autocomplete="new-password" hint="12 to 72 characters; give it to them privately." />
        </div>
        <Checkbox label="Platform admin (every power in every organization)" name="user-admin" checked={admin} onChange={setAdmin} />
        <button type="submit" disabled={action.busy}>Create user</button>
      </form>
      <section aria-labelledby="users-h">
        <h2 id="users-h">Accounts</h2>
        <form class="toolbar" onSubmit={(e) => { e.preventDefault(); setCursor(null); setQuery(filter); }}>
          <TextInput label="Email contains" name="user-filter" value={filter} onInput={setFilter} />
          <button type="submit" class="secondary">Search</button>
        </form>
        {list.error && <Alert error={list.error} />}
        {list.data && <Table caption="User accounts" rows={list.data.data} rowKey={(u) => u.id} columns={[
          { label: "Email", render: (u) => u.email },
          { label: "Name", render: (u) => u.name || "—" },
          { label: "Kind", render: (u) => u.kind },
          { label: "Platform admin", render: (u) => (u.platform_admin ? "yes" : "no") },
          { label: "Disabled", render: (u) => (u.disabled ? "yes" : "no") },
          { label: "Created", render: (u) => fmtTime(u.created_at) },
        ]} />}
        {list.data && list.data.has_more && <button type="button" class="secondary" onClick={() => setCursor(list.data.next_cursor)}>Next page</button>}
      </section>
    </>
  );
}
