// The ops page (/ops): the pipeline at a glance, from the node's /metrics (polled)
// and the delivery latency this page measures on its own small subscription.
//
// Query parameters: interval_ms=N (poll period, default 1000).  window.__ops
// exposes the snapshots and histories for tests.

import { Snapshot, parseMetrics, rate } from "./prom.js";
import { Catalogue, Stream, percentile, wsUrl } from "@slipstream/client";

const params = new URLSearchParams(location.search);
const intervalMs = Math.max(200, Number(params.get("interval_ms") ?? 1000));
const HISTORY = 60;
const LATENCY_WINDOW = 200;

const fmt = (x, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? "—" : x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }));
function fmtBytes(x) {
  if (x === null || x === undefined) return "—";
  const units = ["B", "kB", "MB", "GB"];
  let i = 0;
  while (Math.abs(x) >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

// Each card: id, title, figure(prev, cur) -> number|null, text(value), sub(prev, cur) -> string.
const CARDS = [
  {
    id: "sim-out", title: "simulator records/s into raw",
    figure: (p, c) => rate(p, c, "slipstream_sim_records_total"),
    sub: (p, c) => {
      const t = c.sum("slipstream_sim_race_time_seconds");
      const clock = t === null ? "—" : `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}`;
      return `${fmt(rate(p, c, "slipstream_sim_samples_total"))} samples/s · race time ${clock}`;
    },
  },
  {
    id: "raw-in", title: "raw records/s into downsample",
    figure: (p, c) => rate(p, c, "slipstream_raw_records_total"),
    sub: (p, c) => `${fmt(rate(p, c, "slipstream_raw_samples_total"))} samples/s`,
  },
  {
    id: "frames-out", title: "frames/s out of downsample",
    figure: (p, c) => rate(p, c, "slipstream_frames_total"),
    sub: (p, c) => `${fmt(c.sum("slipstream_frames_total"))} frames in all`,
  },
  {
    id: "broadcast-in", title: "frames/s into broadcast",
    figure: (p, c) => rate(p, c, "slipstream_broadcast_frames_total"),
    sub: (p, c) => `${fmt(rate(p, c, "slipstream_broadcast_ticks_total"), 1)} ticks/s out`,
  },
  {
    id: "lag", title: "consumer lag (records)",
    figure: (p, c) => c.sum("slipstream_consumer_lag_records"),
    sub: () => "raw records not yet read by downsample",
  },
  {
    id: "dlq", title: "dead letters",
    figure: (p, c) => c.sum("slipstream_dlq_records_total") ?? 0,
    rows: (p, c) => [...c.by("slipstream_dlq_records_total", "reason")].map(([k, v]) => [k || "(none)", fmt(v)]),
    sub: (p, c) => `${fmt(rate(p, c, "slipstream_dlq_records_total"), 1)} /s`,
  },
  {
    id: "subscribers", title: "subscribers",
    figure: (p, c) => c.sum("slipstream_subscribers"),
    rows: (p, c) => [...c.by("slipstream_subscribers", "transport")].map(([k, v]) => [k, fmt(v)]),
  },
  {
    id: "bytes-out", title: "bytes/s out", bytes: true,
    figure: (p, c) => rate(p, c, "slipstream_bytes_sent_total"),
    rows: (p, c) => [...c.by("slipstream_bytes_sent_total", "transport")].map(([k]) => [k, `${fmtBytes(rate(p, c, "slipstream_bytes_sent_total", { transport: k }))}/s`]),
    sub: (p, c) => `${fmt(rate(p, c, "slipstream_messages_sent_total"))} messages/s`,
  },
  {
    id: "latency", title: "delivery latency p50 / p99 (ms)",
    figure: () => percentile(latency(), 50),
    text: () => `${fmt(percentile(latency(), 50))} / ${fmt(percentile(latency(), 99))}`,
    sub: () => `last ${latency().length} ticks received by this page`,
  },
  {
    id: "memory", title: "memory (resident)", bytes: true,
    figure: (p, c) => c.sum("slipstream_process_resident_bytes"),
  },
];

function latency() {
  return probe ? probe.latencyMs.slice(-LATENCY_WINDOW) : [];
}

function card(def) {
  const div = document.createElement("section");
  div.className = `panel card${def.wide ? " wide" : ""}`;
  div.id = `card-${def.id}`;
  div.innerHTML = `<h2>${def.title}</h2><div class="figure">—</div><div class="sub"></div><div class="rows"></div><svg viewBox="0 0 100 40" preserveAspectRatio="none"><polyline points=""></polyline></svg>`;
  return div;
}

function sparkline(svgLine, values) {
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  if (finite.length < 2) {
    svgLine.setAttribute("points", "");
    return;
  }
  const lo = Math.min(0, ...finite);
  const hi = Math.max(...finite);
  const span = hi - lo || 1;
  const step = 100 / (HISTORY - 1);
  const start = HISTORY - values.length;
  const points = values
    .map((v, i) => (v === null || !Number.isFinite(v) ? null : `${((start + i) * step).toFixed(1)},${(38 - (36 * (v - lo)) / span).toFixed(1)}`))
    .filter(Boolean);
  svgLine.setAttribute("points", points.join(" "));
}

const cards = document.getElementById("cards");
const elements = new Map();
for (const def of CARDS) {
  const el = card(def);
  cards.appendChild(el);
  elements.set(def.id, el);
}
const table = document.createElement("section");
table.className = "panel card wide";
table.id = "card-counters";
table.innerHTML = "<h2>every metric</h2><table><thead><tr><th>metric</th><th>value</th><th>per second</th></tr></thead><tbody></tbody></table>";
cards.appendChild(table);

const state = { snapshots: [], history: new Map(CARDS.map((d) => [d.id, []])), errors: 0, polls: 0 };

function render(prev, cur) {
  for (const def of CARDS) {
    const el = elements.get(def.id);
    const value = def.figure(prev, cur);
    const hist = state.history.get(def.id);
    hist.push(value);
    if (hist.length > HISTORY) hist.shift();
    el.querySelector(".figure").textContent = def.text ? def.text(prev, cur) : def.bytes ? fmtBytes(value) + (def.id === "bytes-out" ? "/s" : "") : fmt(value, value !== null && !Number.isInteger(value) && Math.abs(value) < 10 ? 1 : 0);
    el.querySelector(".sub").textContent = def.sub ? def.sub(prev, cur) : "";
    el.querySelector(".rows").replaceChildren(
      ...(def.rows ? def.rows(prev, cur) : []).map(([k, v]) => {
        const row = document.createElement("div");
        row.innerHTML = "<span></span><b></b>";
        row.firstChild.textContent = k;
        row.lastChild.textContent = v;
        return row;
      }),
    );
    sparkline(el.querySelector("polyline"), hist);
  }
  const body = table.querySelector("tbody");
  body.replaceChildren(
    ...[...cur.values.entries()].map(([key, s]) => {
      const tr = document.createElement("tr");
      tr.dataset.metric = key;
      const isCounter = s.name.endsWith("_total");
      const r = isCounter ? rate(prev, cur, s.name, s.labels) : null;
      for (const text of [key, fmt(s.value, Number.isInteger(s.value) ? 0 : 3), isCounter ? fmt(r, 1) : ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    }),
  );
}

function setConnection(ok) {
  const s = ok ? "connected" : "reconnecting";
  document.getElementById("conn").dataset.state = s;
  document.getElementById("conn-text").textContent = s;
}

async function poll() {
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const snap = new Snapshot(parseMetrics(await response.text()), performance.now());
    const prev = state.snapshots[state.snapshots.length - 1] ?? null;
    state.snapshots.push(snap);
    if (state.snapshots.length > 5) state.snapshots.shift();
    state.polls++;
    setConnection(true);
    render(prev, snap);
  } catch {
    state.errors++;
    setConnection(false);
  }
  setTimeout(poll, intervalMs);
}

let probe = null;
try {
  const catalogue = await Catalogue.load();
  // A small subscription of this page's own: its ticks' `ts` give the delivery latency.
  probe = new Stream({ url: wsUrl(), name: "ops-probe", catalogue, groups: ["timing"], cars: null, storage: null });
  probe.start();
} catch {
  // No catalogue: the figures from /metrics still work.
}
fetch("/healthz")
  .then((r) => r.json())
  .then((h) => {
    document.getElementById("node").textContent = h.server ?? "";
  })
  .catch(() => {});

window.__ops = { state, get probe() { return probe; } };
poll();
