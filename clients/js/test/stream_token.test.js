// The page passes its ?token= to the node and stops on a refused token (docs/security.md).
// Run: cd clients/js && npm test
import { test } from "node:test";
import assert from "node:assert/strict";
import { FATAL_CLOSE_CODES, Stream, wsUrl } from "../src/stream.js";

test("wsUrl carries the page's token", () => {
  const plain = { protocol: "http:", host: "node:8000", search: "" };
  assert.equal(wsUrl(plain), "ws://node:8000/ws");
  const withToken = { protocol: "https:", host: "fans.example", search: "?car=24&token=a.b+c/d" };
  assert.equal(wsUrl(withToken), "wss://fans.example/ws?token=a.b%20c%2Fd");
});

class FakeSocket {
  static OPEN = 1;
  static CONNECTING = 0;
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    FakeSocket.made.push(this);
  }
  close() {}
}

for (const code of [...FATAL_CLOSE_CODES, 1006]) {
  test(`close ${code}: ${FATAL_CLOSE_CODES.includes(code) ? "suspended, no retry" : "reconnecting"}`, () => {
    globalThis.WebSocket = FakeSocket;
    FakeSocket.made = [];
    const states = [];
    const stream = new Stream({
      url: "ws://node/ws?token=t", name: "t", catalogue: null, storage: null, fallback: false,
      onState: (state, detail) => states.push([state, detail]),
    });
    stream.start();
    FakeSocket.made[0].onclose({ code, reason: code === 1006 ? "" : "token expired" });
    const [state, detail] = states[states.length - 1];
    stream.close();
    if (FATAL_CLOSE_CODES.includes(code)) {
      assert.equal(state, "suspended");
      assert.equal(detail, `${code} token expired`);
    } else {
      assert.equal(state, "reconnecting");
    }
  });
}
