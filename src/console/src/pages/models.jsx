// The model catalog: what an API key may call (GET /v1/models takes API keys only), and for platform
// admins the catalog's deployments with their circuit breakers, and the price book.
import { useState } from "preact/hooks";
import { call } from "../api.js";
import { useStore } from "../store.js";
import { Alert, fmtTime, PageTitle, Table, TextInput, useAction, useLoad } from "../ui.jsx";

function KeyCatalog({ initialKey }) {
  const [key, setKey] = useState(initialKey || "");
  const action = useAction();
  const [models, setModels] = useState(null);
  const load = async (e) => {
    e.preventDefault();
    const res = await action.run(() => call("GET", "/v1/models", { apiKey: key }));
    setModels(res ? res.data : null);
  };
  return (
    <section aria-labelledby="catalog-h">
      <h2 id="catalog-h">Models your key may call</h2>
      <form class="card" onSubmit={load}>
        <TextInput label="API key" name="catalog-key" type="password" autocomplete="off" required value={key} onInput={setKey}
          hint="The inference API authenticates API keys only. The key stays in this page." />
        <button type="submit" disabled={action.busy}>List models</button>
      </form>
      <div aria-live="polite"><Alert error={action.error} /></div>
      {models && <Table caption="Models" rows={models} rowKey={(m) => m.id} columns={[
        { label: "Model", render: (m) => m.id },
        { label: "Owned by", render: (m) => m.owned_by },
        { label: "Created", render: (m) => fmtTime(new Date(m.created * 1000).toISOString()) },
      ]} />}
    </section>
  );
}

function timeouts(d) {
  return `${d.connect_timeout} / ${d.first_byte_timeout} / ${d.chunk_timeout} / ${d.total_timeout} s`;
}

// A deployment's breaker as the streamers see it (GET /v1/admin/deployments).
function breaker(h) {
  if (!h) return "…";
  if (h.breaker === "open") return `open until ${fmtTime(h.open_until)} (${h.consecutive_failures} failures)`;
  if (h.breaker === "half_open") return "half-open (probing)";
  if (h.breaker === "closed" && h.consecutive_failures) return `closed (${h.consecutive_failures} failures)`;
  return h.breaker;
}

function AdminCatalog() {
  const models = useLoad(() => call("GET", "/v1/admin/models"), []);
  const health = useLoad(() => call("GET", "/v1/admin/deployments"), []);
  const prices = useLoad(() => call("GET", "/v1/admin/prices"), []);
  const healthOf = new Map((health.data || []).map((h) => [h.deployment_id, h]));
  const deployments = (models.data || []).flatMap((m) => m.deployments.map((d) => ({ model: m, d })));
  return (
    <>
      <section aria-labelledby="deployments-h">
        <h2 id="deployments-h">Catalog and deployments (platform admin)</h2>
        {models.error && <Alert error={models.error} />}
        {models.data && <Table caption="Deployments of every model" rows={deployments} rowKey={(r) => r.d.id}
          empty="The catalog is empty: add models with aiaas apply -f catalog.yaml." columns={[
            { label: "Model", render: (r) => r.model.name },
            { label: "Capabilities", render: (r) => r.model.capabilities.join(", ") },
            { label: "Deployment", render: (r) => r.d.name },
            { label: "Provider", render: (r) => r.d.provider },
            { label: "Upstream model", render: (r) => r.d.upstream_model },
            { label: "Enabled", render: (r) => (r.d.enabled ? "yes" : "no") },
            { label: "Breaker", render: (r) => (health.error ? "unavailable" : breaker(healthOf.get(r.d.id))) },
            { label: "Weight", cls: "num", render: (r) => r.d.weight },
            { label: "Priority", cls: "num", render: (r) => r.d.priority },
            { label: "Timeouts (connect / first byte / chunk / total)", render: (r) => timeouts(r.d) },
            { label: "Managed by", render: (r) => r.model.managed_by },
          ]} />}
      </section>
      <section aria-labelledby="prices-h">
        <h2 id="prices-h">Price book (USD per million tokens)</h2>
        {prices.error && <Alert error={prices.error} />}
        {prices.data && <Table caption="Price book entries" rows={prices.data} rowKey={(p) => p.id}
          empty="No prices: requests are counted as unpriced." columns={[
            { label: "Model", render: (p) => p.model },
            { label: "Deployment", render: (p) => p.deployment || "all" },
            { label: "Input", cls: "num", render: (p) => p.input_per_mtok },
            { label: "Cached input", cls: "num", render: (p) => p.cached_input_per_mtok ?? "= input" },
            { label: "Output", cls: "num", render: (p) => p.output_per_mtok },
            { label: "Effective from", render: (p) => fmtTime(p.effective_from) },
          ]} />}
      </section>
    </>
  );
}

export function ModelsPage() {
  const st = useStore();
  return (
    <>
      <PageTitle>Models</PageTitle>
      <KeyCatalog initialKey={st.lastSecret && st.lastSecret.key} />
      {st.user.platform_admin && <AdminCatalog />}
    </>
  );
}
