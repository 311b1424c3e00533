// The audit log of the current org (owners and admins), or of every org (platform admins), newest first,
// with filters and cursor paging.
import { useState } from "preact/hooks";
import { call } from "../api.js";
import { currentOrg, useStore } from "../store.js";
import { Alert, fmtTime, PageTitle, Select, shortId, Table, TextInput, useLoad } from "../ui.jsx";

const ACTIONS = ["", "org.create", "org.rename", "org.delete", "member.add", "member.role_change", "member.remove",
  "user.create", "service_account.create", "service_account.delete", "key.create", "key.revoke", "key.rotate"];

function fetchPage(scope, orgId, filters, cursor) {
  const query = { ...filters, limit: 50, cursor };
  if (scope === "all") return call("GET", "/v1/admin/audit", { query });
  return call("GET", "/v1/orgs/{org_id}/audit", { path: { org_id: orgId }, query });
}

export function AuditPage() {
  const st = useStore();
  const org = currentOrg();
  const [scope, setScope] = useState(org ? "org" : "all");
  const [action, setAction] = useState("");
  const [actor, setActor] = useState("");
  const [target, setTarget] = useState("");
  const [filters, setFilters] = useState({});
  const [more, setMore] = useState([]);
  const [moreError, setMoreError] = useState(null);
  const first = useLoad(() => {
    setMore([]);
    return fetchPage(scope, org && org.id, filters, null);
  }, [scope, org && org.id, filters]);
  const pages = first.data ? [first.data, ...more] : [];
  const last = pages[pages.length - 1];
  const loadMore = async () => {
    setMoreError(null);
    try {
      const p = await fetchPage(scope, org && org.id, filters, last.next_cursor);
      setMore((m) => [...m, p]);
    } catch (e) {
      setMoreError(e);
    }
  };
  const apply = (e) => {
    e.preventDefault();
    setFilters({ action, actor_user_id: actor.trim(), target_id: target.trim() });
  };
  const columns = [
    { label: "When", render: (a) => fmtTime(a.occurred_at) },
    { label: "Action", render: (a) => <code>{a.action}</code> },
    { label: "Actor", cls: "mono", render: (a) => <span title={a.actor_user_id || ""}>{shortId(a.actor_user_id)}{a.actor_key_id ? ` (key ${shortId(a.actor_key_id)})` : ""}</span> },
    { label: "Target", cls: "mono", render: (a) => `${a.target_type} ${shortId(a.target_id)}` },
    { label: "Details", cls: "details", render: (a) => (Object.keys(a.details || {}).length ? JSON.stringify(a.details) : "—") },
  ];
  if (scope === "all") columns.splice(1, 0, { label: "Org", cls: "mono", render: (a) => shortId(a.org_id) });
  const scopes = [];
  if (org) scopes.push(["org", `This organization (${org.name})`]);
  if (st.user.platform_admin) scopes.push(["all", "Every organization (platform admin)"]);
  return (
    <>
      <PageTitle>Audit log</PageTitle>
      <form class="card toolbar" onSubmit={apply}>
        {scopes.length > 1 && <Select label="Scope" name="audit-scope" value={scope} onChange={setScope} options={scopes} />}
        <Select label="Action" name="audit-action" value={action} onChange={setAction} options={ACTIONS.map((a) => [a, a || "Any"])} />
        <TextInput label="Actor user id" name="audit-actor" value={actor} onInput={setActor} />
        <TextInput label="Target id" name="audit-target" value={target} onInput={setTarget} />
        <button type="submit">Filter</button>
      </form>
      {first.error && <Alert error={first.error} />}
      {first.data && <Table caption="Audit entries, newest first" columns={columns} rows={pages.flatMap((p) => p.data)} rowKey={(a) => a.id}
        empty="No entries match." />}
      {moreError && <Alert error={moreError} />}
      {last && last.has_more && <button type="button" class="secondary" onClick={loadMore}>Load more</button>}
    </>
  );
}
