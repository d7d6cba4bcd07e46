// @slipstream/client against a real node (tests/client/js_harness.py): values in
// channel units, resume after a drop with no gap and no duplicate, a subscription
// changed mid-stream on the same connection, the fallback behind a proxy that strips
// Upgrade, the async iterator and close().
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../src/index.js";
import { collect, isFrame, isState, startNode } from "./harness.js";

let node;
let tick = 0; // the race's next tick; the tests share one race

async function ticks(count) {
  await node.send({ op: "ticks", from: tick, to: tick + count });
  tick += count;
  return tick - 1;
}

before(async () => {
  node = await startNode();
  await node.send({ op: "race" });
  await ticks(4);
});

after(async () => {
  await node.stop();
});

function assertClose(got, want) {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const [name, value] of Object.entries(want)) {
    assert.ok(Math.abs(got[name] - value) < 1e-9, `${name}: ${got[name]} != ${value}`);
  }
}

test("frames from a cursor, in channel units", async () => {
  const client = connect(node.url, { cars: [24], groups: ["tyres"], cursor: { race: "R1", tick: 0 } });
  const seen = collect(client);
  try {
    await seen.until(isFrame(3, 24), 10000, "frame of tick 3");
    const frames = seen.frames();
    assert.deepEqual(frames.map((f) => f.tick), [1, 2, 3]);
    for (const f of frames) {
      const { values } = await node.send({ op: "expected", tick: f.tick, car: 24, groups: ["tyres"] });
      assertClose(f.values, values);
    }
    assert.deepEqual(client.cursor, { race: "R1", tick: 3 });
    assert.deepEqual(seen.states().map((s) => s.state), ["connecting", "connected"]);
  } finally {
    client.close();
  }
});

test("a dropped connection resumes with no gap and no duplicate", async () => {
  const client = connect(node.proxy, { cars: [24, 48], groups: ["engine"] });
  const seen = collect(client);
  try {
    await seen.until(isState("connected"));
    const first = tick - 1; // a keyframe of the latest tick comes first
    let last = await ticks(3);
    await seen.until(isFrame(last, 48));
    await node.send({ op: "drop" });
    await seen.until(isState("reconnecting"));
    last = await ticks(3); // sent while the fan is away
    await seen.until(isFrame(last, 48), 15000, `frame of tick ${last} after the drop`);
    const got = seen.frames().map((f) => [f.tick, f.car]);
    const want = [];
    for (let t = first; t <= last; t++) want.push([t, 24], [t, 48]);
    assert.deepEqual(got, want);
  } finally {
    client.close();
  }
});

test("subscribe() changes cars and groups on the same connection", async () => {
  const client = connect(node.url, { cars: [24], groups: ["tyres"] });
  const seen = collect(client);
  try {
    await seen.until(isState("connected"));
    await seen.until((i) => i.type === "frame");
    await client.subscribe({ cars: [48], groups: ["engine"] });
    const mark = seen.items.length;
    const last = await ticks(2);
    await seen.until(isFrame(last, 48));
    const later = seen.items.slice(mark).filter((i) => i.type === "frame");
    assert.ok(later.length >= 2);
    for (const f of later) {
      assert.equal(f.car, 48);
      const { values } = await node.send({ op: "expected", tick: f.tick, car: 48, groups: ["engine"] });
      assertClose(f.values, values);
    }
    // One connection throughout: connected once, never reconnecting.
    assert.deepEqual(seen.states().map((s) => s.state), ["connecting", "connected"]);
  } finally {
    client.close();
  }
});

test("behind a proxy that strips Upgrade it streams over SSE", async () => {
  await node.send({ op: "strip", on: true });
  const client = connect(node.proxy, { cars: [7], groups: ["timing"] });
  const seen = collect(client);
  try {
    const state = await seen.until(isState("connected"), 15000, "connected");
    assert.equal(state.transport, "sse");
    const last = await ticks(2);
    await seen.until(isFrame(last, 7));
    const { values } = await node.send({ op: "expected", tick: last, car: 7, groups: ["timing"] });
    assertClose(seen.frames().at(-1).values, values);
  } finally {
    client.close();
    await node.send({ op: "strip", on: false });
  }
});

test("long-poll, pinned, delivers the same frames", async () => {
  const client = connect(node.url, { cars: [1], groups: ["fuel"], transport: "poll", cursor: { race: "R1", tick: tick - 2 } });
  const seen = collect(client);
  try {
    const state = await seen.until(isState("connected"));
    assert.equal(state.transport, "poll");
    await seen.until(isFrame(tick - 1, 1));
    assert.deepEqual(seen.frames().map((f) => f.tick), [tick - 1]);
  } finally {
    client.close();
  }
});

test("the async iterator yields typed items; leaving it closes the client", async () => {
  const client = connect(node.url, { cars: [24], groups: ["brakes"], cursor: { race: "R1", tick: tick - 3 } });
  const kinds = [];
  for await (const item of client) {
    kinds.push(item.type);
    if (item.type === "frame" && item.tick === tick - 1) break;
  }
  assert.equal(kinds[0], "state");
  assert.equal(kinds.filter((k) => k === "frame").length, 2);
  assert.equal(client.state, "closed");
});

test("close() tells the node: a WebSocket close 1000", async () => {
  const { WebSocketServer } = await import("ws");
  const { encode } = await import("@msgpack/msgpack");
  const { Catalogue } = await import("../src/index.js");
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.on("listening", resolve));
  const closed = new Promise((resolve) => {
    server.on("connection", (ws) => {
      ws.send(encode({ t: "hello", v: 1, race: null, tick: -1 }));
      ws.on("message", () => ws.send(encode({ t: "subscribed", cars: null })));
      ws.on("close", (code, reason) => resolve([code, String(reason)]));
    });
  });
  const catalogue = new Catalogue(await (await fetch(`${node.url}/v1/channels`)).json());
  const client = connect(`ws://127.0.0.1:${server.address().port}/ws`, { catalogue, transport: "ws" });
  const seen = collect(client);
  try {
    await seen.until(isState("connected"));
    client.close();
    const [code] = await closed;
    assert.equal(code, 1000);
    assert.equal(client.state, "closed");
  } finally {
    server.close();
  }
});
