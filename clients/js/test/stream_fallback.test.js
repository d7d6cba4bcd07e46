// The page's transport ladder (docs/protocol.md): a WebSocket that never opens steps
// down to HTTP streaming, a stream with no hello in time steps down to long-polling,
// and a probe WebSocket that opens brings the stream back up.  Fakes, no node: the
// same behaviour against a real node is in live.test.js.  Run: cd clients/js && npm test
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { Stream } from "../src/stream.js";

class FakeSocket {
  static OPEN = 1;
  static CONNECTING = 0;
  static made = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    this.closed = false;
    FakeSocket.made.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.closed = true;
  }
}

/** The event stream's fetch: a held text/event-stream response the test writes to. */
class FakeEventStream {
  static made = [];
  constructor(url, init) {
    this.url = url;
    this.closed = false;
    this.response = new Response(
      new ReadableStream({
        start: (controller) => {
          this.controller = controller;
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
    init.signal.addEventListener("abort", () => {
      this.closed = true;
      this.controller.error(new DOMException("aborted", "AbortError"));
    });
    FakeEventStream.made.push(this);
  }
  async emit(obj) {
    const data = Buffer.from(encode(obj)).toString("base64");
    this.controller.enqueue(new TextEncoder().encode(`data: ${data}\n\n`));
    await wait(10); // read by the stream's loop
  }
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setup(options = {}, answer = () => new Promise(() => {})) {
  globalThis.WebSocket = FakeSocket;
  FakeSocket.made = [];
  FakeEventStream.made = [];
  const fetched = [];
  globalThis.fetch = (url, init) => {
    if (new URL(url).pathname === "/v1/stream") return Promise.resolve(new FakeEventStream(String(url), init).response);
    fetched.push({ url: String(url), init });
    return answer(url, init); // default: held, like a long-poll with nothing new
  };
  const states = [];
  const stream = new Stream({
    url: "ws://node:8000/ws?token=t", name: "f", catalogue: null, storage: null,
    groups: ["timing"], cars: [24], connectTimeoutMs: 40, wsRetryMs: 60,
    onState: (state, detail) => states.push([state, detail]),
    ...options,
  });
  return { stream, states, fetched };
}

test("refused WebSocket -> SSE with the subscription in the query; a probe climbs back", async () => {
  const { stream, states, fetched } = setup({ connectTimeoutMs: 1000 });
  stream.start();
  FakeSocket.made[0].onclose({ code: 1006, reason: "" }); // never opened: refused
  assert.equal(stream.transport, "sse");
  const source = FakeEventStream.made[0];
  const url = new URL(source.url);
  assert.equal(url.pathname, "/v1/stream");
  assert.equal(url.protocol, "http:");
  assert.equal(url.searchParams.get("cars"), "24");
  assert.equal(url.searchParams.get("groups"), "timing");
  assert.equal(url.searchParams.get("token"), "t");
  await source.emit({ t: "hello", stream: "abc", subscribe: "/v1/stream/abc/subscribe", tick: 5 });
  assert.deepEqual(states[states.length - 1], ["connected", "sse"]);
  // A subscription change is a POST naming the stream.
  stream.setCars([7]);
  assert.equal(fetched.length, 1);
  assert.equal(new URL(fetched[0].url).pathname, "/v1/stream/abc/subscribe");
  assert.equal(fetched[0].init.method, "POST");
  assert.deepEqual(JSON.parse(fetched[0].init.body), { op: "subscribe", cars: [7], groups: ["timing"] });
  // wsRetryMs later a probe WebSocket; when it opens the stream moves back to it.
  await wait(100);
  const probe = FakeSocket.made[1];
  assert.ok(probe, "probed the WebSocket");
  probe.onopen();
  assert.ok(probe.closed && source.closed);
  assert.equal(stream.transport, "ws");
  assert.equal(FakeSocket.made.length, 3, "reconnected on the WebSocket");
  stream.close();
});

test("a stream with no hello in time -> long-poll; a lost poll starts again from the WebSocket", async () => {
  const { stream, fetched } = setup();
  stream.start();
  FakeSocket.made[0].onclose({ code: 1006, reason: "" });
  assert.equal(stream.transport, "sse");
  await wait(80); // connectTimeoutMs: a proxy holds the stream back
  assert.ok(FakeEventStream.made[0].closed);
  assert.equal(stream.transport, "poll");
  assert.equal(fetched.length, 1);
  const poll = new URL(fetched[0].url);
  assert.equal(poll.pathname, "/v1/poll");
  assert.equal(poll.searchParams.get("cars"), "24");
  stream.close();
  assert.ok(fetched[0].init.signal.aborted, "closing aborts the held poll");
});

test("with fallback: false a refused WebSocket just reconnects", () => {
  const { stream, states } = setup({ fallback: false });
  stream.start();
  FakeSocket.made[0].onclose({ code: 1006, reason: "" });
  assert.equal(stream.transport, "ws");
  assert.equal(states[states.length - 1][0], "reconnecting");
  stream.close();
});

test("a subscribe POST answered 404 reconnects the stream with the new cars", async () => {
  const { stream, states } = setup({ connectTimeoutMs: 1000 }, async () => ({ status: 404 }));
  stream.start();
  FakeSocket.made[0].onclose({ code: 1006, reason: "" });
  await FakeEventStream.made[0].emit({ t: "hello", stream: "abc", tick: 5 });
  stream.setCars([7]);
  await wait(10);
  assert.ok(FakeEventStream.made[0].closed);
  assert.equal(states[states.length - 1][0], "reconnecting");
  await wait(400); // backoff, then the ladder again: WebSocket first
  FakeSocket.made[FakeSocket.made.length - 1].onclose({ code: 1006, reason: "" });
  const again = new URL(FakeEventStream.made[FakeEventStream.made.length - 1].url);
  assert.equal(again.searchParams.get("cars"), "7");
  stream.close();
});
