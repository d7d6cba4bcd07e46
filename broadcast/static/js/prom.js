// Prometheus text exposition format (0.0.4) parsing and rates, for the ops page.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Samples of a /metrics body: [{name, labels: {..}, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** A snapshot: the samples keyed by `name{k="v",...}`, with the time it was taken. */
export class Snapshot {
  constructor(samples, timeMs) {
    this.timeMs = timeMs;
    this.values = new Map();
    for (const s of samples) this.values.set(Snapshot.key(s.name, s.labels), s);
  }

  static key(name, labels = {}) {
    const inner = Object.keys(labels).sort().map((k) => `${k}="${labels[k]}"`).join(",");
    return inner ? `${name}{${inner}}` : name;
  }

  /** Sum of a metric over the samples whose labels include `match`; null if absent. */
  sum(name, match = {}) {
    let total = null;
    for (const s of this.values.values()) {
      if (s.name !== name) continue;
      if (Object.entries(match).some(([k, v]) => s.labels[k] !== v)) continue;
      total = (total ?? 0) + s.value;
    }
    return total;
  }

  /** Values of a metric by one label: Map label value -> summed value. */
  by(name, label) {
    const out = new Map();
    for (const s of this.values.values()) {
      if (s.name !== name) continue;
      const key = s.labels[label] ?? "";
      out.set(key, (out.get(key) ?? 0) + s.value);
    }
    return out;
  }
}

/** Per-second rate of a counter between two snapshots (null if unknown; resets count from 0). */
export function rate(older, newer, name, match = {}) {
  if (!older || !newer) return null;
  const a = older.sum(name, match);
  const b = newer.sum(name, match);
  const dt = (newer.timeMs - older.timeMs) / 1000;
  if (b === null || dt <= 0) return null;
  const delta = a === null || b < a ? b : b - a;
  return delta / dt;
}
