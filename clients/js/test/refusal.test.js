// A refusal ends the retries (docs/security.md): a bad, a missing and an expired token
// each turn the client `suspended` with the node's reason within 5 s on every transport,
// with no further attempt until setToken() gives a new one.  A real node with tokens on.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../src/index.js";
import { collect, isState, startNode } from "./harness.js";

let node;

before(async () => {
  node = await startNode({ auth: true });
  await node.send({ op: "race" });
  await node.send({ op: "ticks", from: 0, to: 2 });
});

after(async () => {
  await node.stop();
});

const TOKENS = {
  bad: { make: async () => "garbage", words: /token is not valid/ },
  missing: { make: async () => null, words: /needs a token/ },
  expired: {
    make: async () => (await node.send({ op: "token", ttl_s: 60, age_s: 120 })).token,
    words: /expired/,
  },
};

for (const transport of ["auto", "ws", "sse", "poll"]) {
  for (const [kind, { make, words }] of Object.entries(TOKENS)) {
    test(`${kind} token over ${transport}: suspended with the reason, then a new token works`, async () => {
      const started = Date.now();
      const client = connect(node.url, { cars: [24], groups: ["tyres"], transport, token: await make() });
      const seen = collect(client);
      try {
        const state = await seen.until(isState("suspended"), 5000, "suspended");
        assert.ok(Date.now() - started < 5000);
        assert.equal(state.refused, true);
        assert.match(state.reason, words);
        assert.equal(client.refused, state.reason);
        // No further attempt on its own.
        const count = seen.items.length;
        await new Promise((resolve) => setTimeout(resolve, 600));
        assert.equal(seen.items.length, count, JSON.stringify(seen.items.slice(count)));
        const { token } = await node.send({ op: "token", cars: [24], groups: ["tyres"] });
        client.setToken(token);
        const connected = await seen.until(isState("connected"), 10000, "connected again");
        if (transport !== "auto") assert.equal(connected.transport, transport);
        await seen.until((i) => i.type === "frame" && i.car === 24, 10000, "a frame");
      } finally {
        client.close();
      }
    });
  }
}

for (const transport of ["ws", "sse", "poll"]) {
  test(`a token expiring mid-stream over ${transport}: suspended, not retrying`, async () => {
    const { token } = await node.send({ op: "token", ttl_s: 1.5 });
    const client = connect(node.url, { cars: [24], groups: ["tyres"], transport, token });
    const seen = collect(client);
    let tick = 2;
    const suspended = seen.until(isState("suspended"), 8000, "suspended");
    try {
      await seen.until(isState("connected"));
      // The race goes on (a held poll returns with each tick, the next meets the expiry).
      let done = false;
      suspended.then(() => (done = true), () => (done = true));
      while (!done) {
        await node.send({ op: "ticks", from: tick, to: tick + 1 });
        tick++;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const state = await suspended;
      assert.equal(state.refused, true);
      assert.match(state.reason, /expired/);
      // The WebSocket's close 4004 and the event stream's close message say 4004.
      if (transport !== "poll") assert.match(state.reason, /^4004 /);
    } finally {
      client.close();
      await node.send({ op: "ticks", from: tick, to: tick + 1 }); // keep later ticks unique
    }
  });
}
