// The dashboards' pure parts under node: metrics parsing and rates, percentiles,
// the stream state's refusal of deltas against values it does not hold, resume
// messages, and reconnect/suspend.  Run: cd web && npm test
import { test } from "node:test";
import assert from "node:assert/strict";
import { Snapshot, parseMetrics, rate } from "../src/prom.js";
import { Catalogue, Stream, StreamState, percentile } from "@slipstream/client";

const METRICS = `# HELP slipstream_bytes_sent_total Bytes sent
# TYPE slipstream_bytes_sent_total counter
slipstream_bytes_sent_total{transport="ws"} 1000
slipstream_bytes_sent_total{transport="poll"} 500
slipstream_dlq_records_total{reason="bad \\"crc\\""} 3
slipstream_consumer_lag_records 7
slipstream_nan NaN
`;

test("parseMetrics reads names, escaped labels and values", () => {
  const samples = parseMetrics(METRICS);
  assert.equal(samples.length, 5);
  assert.deepEqual(samples[2], { name: "slipstream_dlq_records_total", labels: { reason: 'bad "crc"' }, value: 3 });
  assert.ok(Number.isNaN(samples[4].value));
  const snap = new Snapshot(samples, 0);
  assert.equal(snap.sum("slipstream_bytes_sent_total"), 1500);
  assert.equal(snap.sum("slipstream_bytes_sent_total", { transport: "poll" }), 500);
  assert.equal(snap.sum("slipstream_absent_total"), null);
  assert.deepEqual([...snap.by("slipstream_bytes_sent_total", "transport")], [["ws", 1000], ["poll", 500]]);
});

test("rate is per second between snapshots and survives a counter reset", () => {
  const a = new Snapshot(parseMetrics("x_total 100\n"), 1000);
  const b = new Snapshot(parseMetrics("x_total 300\n"), 3000);
  const reset = new Snapshot(parseMetrics("x_total 40\n"), 5000);
  assert.equal(rate(a, b, "x_total"), 100);
  assert.equal(rate(b, reset, "x_total"), 20);
  assert.equal(rate(null, b, "x_total"), null);
  assert.equal(rate(a, b, "y_total"), null);
});

test("percentile is nearest-rank", () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([5], 99), 5);
  const values = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
});

const CATALOGUE = new Catalogue([
  { name: "a", group: "g1", resolution: 0.5 },
  { name: "b", group: "g1", resolution: 1 },
  { name: "c", group: "g2", resolution: 0.1 },
]);
const le32 = (...values) => new Uint8Array(Int32Array.from(values).buffer);

test("StreamState applies keyframes and deltas, and refuses a delta on the wrong base", () => {
  const state = new StreamState(CATALOGUE);
  const fresh = state.applyTick({ race: "R", tick: 4, kf: true, codec: "full", p: [[7, 0, 0, 4, le32(10, 3)], [9, 0, 0, 2, le32(1, 1)]] });
  assert.deepEqual([...fresh.keys()], [7], "car 9's keyframe is state from tick 2, not news");
  assert.equal(state.value(7, "a"), 5);
  assert.equal(state.value(9, "b"), 1);
  assert.equal(state.value(7, "c"), null);
  state.applyTick({ race: "R", tick: 5, kf: false, codec: "full", p: [[7, 0, 1, 4, le32(12, -2147483648)]] });
  assert.equal(state.value(7, "a"), 6);
  assert.equal(state.value(7, "b"), null, "MISSING is no value");
  assert.equal(state.needsKeyframe, false);
  state.applyTick({ race: "R", tick: 6, kf: false, codec: "full", p: [[9, 0, 1, 5, le32(2, 2)]] });
  assert.equal(state.needsKeyframe, true, "car 9 holds tick 2, the delta is against 5");
  assert.equal(state.value(9, "a"), null);
  state.applyTick({ race: "R2", tick: 0, kf: true, codec: "full", p: [] });
  assert.equal(state.value(7, "a"), null, "a new race forgets the old one");
});

class FakeSocket {
  static OPEN = 1;
  static CONNECTING = 0;
  static made = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    FakeSocket.made.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {}
  open() {
    this.readyState = FakeSocket.OPEN;
  }
}

function memoryStorage() {
  const data = new Map();
  return { getItem: (k) => data.get(k) ?? null, setItem: (k, v) => data.set(k, String(v)) };
}

test("a stream subscribes on hello, resumes from its cursor, and suspends after its budget", async () => {
  globalThis.WebSocket = FakeSocket;
  FakeSocket.made = [];
  const states = [];
  const storage = memoryStorage();
  storage.setItem("slipstream.cursor.s", JSON.stringify({ race: "R", tick: 41 }));
  const stream = new Stream({
    url: "ws://node/ws", name: "s", catalogue: CATALOGUE, storage, groups: ["g1"], cars: [9, 7],
    suspendAfterMs: 1500, fallback: false, onState: (s) => states.push(s),
  });
  stream.start();
  const first = FakeSocket.made[0];
  assert.deepEqual(first.protocols, ["slipstream.v1"]);
  first.open();
  stream._message({ t: "hello", race: "R", tick: 50 });
  // A reloaded page: the stored cursor, and a keyframe first (it holds nothing).
  assert.deepEqual(first.sent[0], { op: "subscribe", cars: [9, 7], groups: ["g1"], cursor: { race: "R", tick: 41 }, keyframe: true });
  stream._message({ t: "subscribed", cars: [7, 9] });
  assert.equal(stream.status, "connected");
  stream._message({ t: "tick", race: "R", tick: 42, kf: true, codec: "full", p: [[7, 0, 0, 42, le32(2, 2)]] });
  assert.deepEqual(JSON.parse(storage.getItem("slipstream.cursor.s")), { race: "R", tick: 42 });
  stream.setCars([7]);
  assert.deepEqual(first.sent[1], { op: "subscribe", cars: [7], groups: ["g1"] }, "re-subscribe in place");
  // Dropped: reconnect, resume from tick 42 holding state (no keyframe).
  first.readyState = 3;
  first.onclose({ code: 1006, reason: "" });
  assert.equal(stream.status, "reconnecting");
  await new Promise((resolve) => setTimeout(resolve, 400));
  const second = FakeSocket.made[1];
  assert.ok(second, "reconnected");
  second.open();
  stream._message({ t: "hello", race: "R", tick: 60 });
  assert.deepEqual(second.sent[0], { op: "subscribe", cars: [7], groups: ["g1"], cursor: { race: "R", tick: 42 }, keyframe: false });
  // Down for longer than the budget: suspended, and nothing retries until retry().
  second.readyState = 3;
  second.onclose({ code: 1006, reason: "" });
  // Every attempt hangs (no answer): the watchdog gives up on it within the budget.
  for (let i = 0; i < 40 && stream.status !== "suspended"; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(stream.status, "suspended");
  const made = FakeSocket.made.length;
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(FakeSocket.made.length, made);
  stream.retry();
  assert.equal(FakeSocket.made.length, made + 1);
  stream.close();
  assert.ok(states.includes("connecting") && states.includes("suspended"));
});
