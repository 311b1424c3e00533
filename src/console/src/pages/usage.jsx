// Usage and cost over time (the analytics projections), performance by model, and the ledger's recent
// requests with a CSV export.
import { useMemo, useState } from "preact/hooks";
import { call, saveBlob } from "../api.js";
import { TimeChart } from "../chart.jsx";
import { currentOrg } from "../store.js";
import { Alert, Feedback, fmtNum, fmtTime, fmtUsd, PageTitle, Select, shortId, Table, useAction, useLoad } from "../ui.jsx";

const RANGES = [["1", "Last 24 hours"], ["7", "Last 7 days"], ["30", "Last 30 days"]];
const GROUPS = [["model", "Model"], ["api_key", "API key"], ["user", "User"]];
const GROUP_FIELD = { model: "model", api_key: "api_key_id", user: "user_id" };

function rangeOf(days, granularity) {
  const end = new Date();
  // Whole buckets: the range starts on a bucket boundary, so the first bucket is complete.
  const unit = granularity === "day" ? 86400000 : 3600000;
  const endMs = Math.ceil(end.getTime() / unit) * unit;
  return { start: new Date(endMs - Number(days) * 86400000).toISOString(), end: new Date(endMs).toISOString() };
}

async function loadUsage(orgId, range, granularity, groupBy) {
  const rows = [];
  let cursor = null;
  for (let page = 0; page < 10; page++) {
    const res = await call("GET", "/v1/analytics/usage", { query: {
      org_id: orgId, start: range.start, end: range.end, granularity, group_by: groupBy, limit: 1000, cursor,
    } });
    rows.push(...res.data);
    if (!res.has_more) break;
    cursor = res.next_cursor;
  }
  return rows;
}

/** Every bucket start of the range (seconds), so quiet buckets chart as zero rather than as a gap. */
function bucketsOf(range, granularity) {
  const step = granularity === "day" ? 86400 : 3600;
  const out = [];
  for (let t = Date.parse(range.start) / 1000; t < Date.parse(range.end) / 1000; t += step) out.push(t);
  return out;
}

function seriesOf(rows, xs, groupBy, metric) {
  const field = GROUP_FIELD[groupBy];
  const index = new Map(xs.map((x, i) => [x, i]));
  const groups = new Map();
  for (const r of rows) {
    const i = index.get(Date.parse(r.bucket_start) / 1000);
    if (i === undefined) continue;
    const name = r[field] ? (groupBy === "model" ? r[field] : shortId(r[field])) : "(none)";
    if (!groups.has(name)) groups.set(name, new Array(xs.length).fill(0));
    groups.get(name)[i] += metric(r);
  }
  return { xs: groups.size ? xs : [], series: [...groups].map(([label, values]) => ({ label, values })) };
}

function Charts({ orgId, range, granularity, groupBy, tick }) {
  const usage = useLoad(() => loadUsage(orgId, range, granularity, groupBy), [orgId, range, granularity, groupBy, tick]);
  const charts = useMemo(() => {
    if (!usage.data) return null;
    const xs = bucketsOf(range, granularity);
    return {
      requests: seriesOf(usage.data, xs, groupBy, (r) => r.requests),
      tokens: seriesOf(usage.data, xs, groupBy, (r) => r.total_tokens),
      cost: seriesOf(usage.data, xs, groupBy, (r) => Number(r.cost_usd)),
    };
  }, [usage.data]);
  return (
    <section aria-labelledby="charts-h">
      <h2 id="charts-h">Requests, tokens and spend</h2>
      {usage.error && <Alert error={usage.error} />}
      {usage.loading && !charts && <p role="status">Loading…</p>}
      {charts && (
        <div class="charts">
          <TimeChart title="Requests" granularity={granularity} {...charts.requests} format={(v) => fmtNum(v)} />
          <TimeChart title="Tokens" granularity={granularity} {...charts.tokens} format={(v) => fmtNum(v)} />
          <TimeChart title="Spend (USD)" granularity={granularity} {...charts.cost} format={(v) => fmtUsd(v)}
            axis={(v) => (v === 0 ? "0" : v >= 0.01 ? `$${v.toFixed(2)}` : `$${v.toExponential(0)}`)} />
        </div>
      )}
    </section>
  );
}

function ms(v) {
  return v === null || v === undefined ? "—" : `${fmtNum(v, 1)} ms`;
}

function Performance({ orgId, range, tick }) {
  const perf = useLoad(() => call("GET", "/v1/analytics/performance", { query: {
    org_id: orgId, start: range.start, end: range.end, group_by: ["model"],
  } }), [orgId, range, tick]);
  const columns = [
    { label: "Model", render: (r) => r.model || "(none)" },
    { label: "Requests", cls: "num", render: (r) => fmtNum(r.requests) },
    { label: "Error rate", cls: "num", render: (r) => `${fmtNum(r.error_rate * 100, 1)} %` },
    { label: "TTFB p50", cls: "num", render: (r) => ms(r.ttfb_ms.p50) },
    { label: "TTFB p95", cls: "num", render: (r) => ms(r.ttfb_ms.p95) },
    { label: "TTFB p99", cls: "num", render: (r) => ms(r.ttfb_ms.p99) },
    { label: "Latency p50", cls: "num", render: (r) => ms(r.latency_ms.p50) },
    { label: "Latency p95", cls: "num", render: (r) => ms(r.latency_ms.p95) },
    { label: "Latency p99", cls: "num", render: (r) => ms(r.latency_ms.p99) },
    { label: "Tokens/s", cls: "num", render: (r) => fmtNum(r.tokens_per_second, 1) },
  ];
  return (
    <section aria-labelledby="perf-h">
      <h2 id="perf-h">Performance by model</h2>
      {perf.error && <Alert error={perf.error} />}
      {perf.data && (
        <Table caption={`Time to first byte and latency percentiles (within ${perf.data.relative_error * 100}%)`}
          columns={columns} rows={perf.data.data} rowKey={(r) => `${r.model}/${r.deployment}`} empty="No requests in this range." />
      )}
    </section>
  );
}

function RecentRequests({ orgId, range, tick }) {
  const [pages, setPages] = useState([]);
  const exporter = useAction();
  const query = { org_id: orgId, since: range.start };
  const first = useLoad(async () => {
    const p = await call("GET", "/v1/usage/requests", { query: { ...query, limit: 50 } });
    setPages([]);
    return p;
  }, [orgId, range, tick]);
  const last = pages.length ? pages[pages.length - 1] : first.data;
  const more = async () => {
    const p = await call("GET", "/v1/usage/requests", { query: { ...query, limit: 50, cursor: last.next_cursor } });
    setPages((ps) => [...ps, p]);
  };
  const exportCsv = () => exporter.run(async () => {
    const res = await call("GET", "/v1/usage/requests.csv", { query, raw: true, headers: { accept: "text/csv" } });
    saveBlob(await res.blob(), `aiaas-requests-${range.start.slice(0, 10)}.csv`);
  }, "The CSV file was downloaded.");
  const rows = first.data ? [first.data, ...pages].flatMap((p) => p.data) : [];
  const columns = [
    { label: "Finished", render: (r) => fmtTime(r.occurred_at) },
    { label: "Model", render: (r) => r.model },
    { label: "Endpoint", render: (r) => r.endpoint },
    { label: "Status", render: (r) => `${r.status} (${r.http_status})` },
    { label: "Key", cls: "mono", render: (r) => shortId(r.key_id) },
    { label: "Prompt tokens", cls: "num", render: (r) => fmtNum(r.prompt_tokens) },
    { label: "Completion tokens", cls: "num", render: (r) => fmtNum(r.completion_tokens) },
    { label: "TTFB", cls: "num", render: (r) => ms(r.ttfb_ms) },
    { label: "Latency", cls: "num", render: (r) => ms(r.latency_ms) },
    { label: "Stream", render: (r) => (r.stream ? "yes" : "no") },
  ];
  return (
    <section aria-labelledby="recent-h">
      <h2 id="recent-h">Recent requests</h2>
      <div class="toolbar">
        <button type="button" class="secondary" onClick={exportCsv} disabled={exporter.busy}>Export CSV</button>
      </div>
      <Feedback error={exporter.error} message={exporter.message} />
      {first.error && <Alert error={first.error} />}
      {first.data && <Table caption="Recent requests, newest first" columns={columns} rows={rows} rowKey={(r) => r.event_id}
        empty="No requests in this range yet (the ledger is written by the worker a moment after each request)." />}
      {last && last.has_more && <button type="button" class="secondary" onClick={more}>Load more</button>}
    </section>
  );
}

export function UsagePage() {
  const org = currentOrg();
  const [days, setDays] = useState("1");
  const [granularity, setGranularity] = useState("hour");
  const [groupBy, setGroupBy] = useState("model");
  const [tick, setTick] = useState(0);
  const range = useMemo(() => rangeOf(days, granularity), [days, granularity, tick]);
  if (!org) return <><PageTitle>Usage</PageTitle><p>You belong to no organization yet.</p></>;
  return (
    <>
      <PageTitle>Usage</PageTitle>
      <form class="card toolbar" onSubmit={(e) => { e.preventDefault(); setTick((t) => t + 1); }}>
        <Select label="Range" name="range" value={days} onChange={setDays} options={RANGES} />
        <Select label="Granularity" name="granularity" value={granularity} onChange={setGranularity} options={[["hour", "Hour"], ["day", "Day"]]} />
        <Select label="Group by" name="group-by" value={groupBy} onChange={setGroupBy} options={GROUPS} />
        <button type="submit">Refresh</button>
      </form>
      <Charts orgId={org.id} range={range} granularity={granularity} groupBy={groupBy} tick={tick} />
      <Performance orgId={org.id} range={range} tick={tick} />
      <RecentRequests orgId={org.id} range={range} tick={tick} />
    </>
  );
}
