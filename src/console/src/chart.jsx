// A time-series chart (uPlot on a canvas) with the same numbers as a table beside it, for screen
// readers and for anyone who wants the exact values.
import uPlot from "uplot";
import { useEffect, useRef } from "preact/hooks";
import { Table } from "./ui.jsx";

// Colours of the series: each at least 3:1 against white (WCAG's non-text contrast).
export const PALETTE = ["#0b57d0", "#b3261e", "#146c2e", "#8a4b00", "#6b2fa0", "#00677d", "#5f6368", "#a8326e"];

function fmtX(sec, granularity) {
  const d = new Date(sec * 1000);
  return granularity === "day"
    ? d.toLocaleDateString(undefined, { dateStyle: "medium" })
    : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

/** xs: bucket starts in seconds; series: [{label, values}] of the same length; format(v) for the table. */
export function TimeChart({ title, xs, series, granularity, format = String, axis }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el || xs.length === 0) return undefined;
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: 220,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: "#333", grid: { stroke: "#e3e3e3" } },
        { stroke: "#333", grid: { stroke: "#e3e3e3" }, size: 70, ...(axis ? { values: (u, ticks) => ticks.map(axis) } : {}) },
      ],
      series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: xs.length <= 48, size: 5 },
      }))],
    };
    const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 200), height: 220 }));
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [xs, series]);

  const total = series.reduce((sum, s) => sum + s.values.reduce((a, v) => a + (v || 0), 0), 0);
  const rows = xs.map((x, i) => ({ x, values: series.map((s) => s.values[i]) }));
  const columns = [
    { label: "Bucket start", render: (r) => fmtX(r.x, granularity) },
    ...series.map((s, j) => ({ label: s.label, render: (r) => (r.values[j] === null ? "0" : format(r.values[j])) })),
  ];
  return (
    <figure class="chart">
      <figcaption><strong>{title}</strong> <span class="muted">(total {format(total)})</span></figcaption>
      {xs.length === 0 ? <p class="muted">No data in this range.</p> : (
        <>
          <div class="chart-canvas" ref={box} role="img"
            aria-label={`${title} over time, ${series.length} series; total ${format(total)}. The table below has every value.`} />
          <ul class="legend" aria-hidden="true">
            {series.map((s, i) => <li key={s.label}><span class={`swatch swatch-${i % PALETTE.length}`} />{s.label}</li>)}
          </ul>
          <details>
            <summary>{title} as a table</summary>
            <Table caption={title} columns={columns} rows={rows} rowKey={(r) => r.x} />
          </details>
        </>
      )}
    </figure>
  );
}
