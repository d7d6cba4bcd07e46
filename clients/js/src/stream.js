// The engine of @slipstream/client (browsers and node >= 20): the `slipstream.v1`
// stream of a broadcast node, decoded into per-car channel values (docs/protocol.md,
// docs/clients.md).  Fan apps use `connect()` (client.js); the node's own pages use
// `Stream` directly.
//
// `Catalogue` maps channel names to (group, index, resolution); `StreamState` is the
// pure part (messages in, values out, no socket, testable in node); `Stream` owns one
// connection: subscribe, resume from its cursor after a drop or a reload, reconnect with
// jittered backoff, and report its state (connecting, connected, reconnecting,
// suspended) and its transport (`stream.transport`: ws, sse or poll).
//
// Transports, best first: the WebSocket; HTTP streaming (Server-Sent Events,
// /v1/stream, read with fetch so a 401/403 is seen) when the WebSocket never opens (a
// proxy refusing the upgrade); long-polling (/v1/poll) when the stream sends nothing in
// time either (a proxy buffering or cutting long responses).  On a lesser transport a probe WebSocket is tried every `wsRetryMs`
// (30 s) and the stream climbs back when it opens.  A connection lost after it worked
// starts again from the top.
//
// A refusal (close 4001/4003/4004 at any point, the hello included, or HTTP 401/403 on
// the stream or a poll) ends the retries: the stream turns `suspended` with the node's
// reason (`stream.refused`) until `setToken()` or `retry()`.

import { decode as unpackMessage } from "@msgpack/msgpack";
import { Catalogue, StreamState } from "./state.js";

export { Catalogue, StreamState };

export const SUBPROTOCOL = "slipstream.v1";
export { KIND_KEYFRAME } from "./state.js";
//: Close codes after which retrying as is cannot help (docs/security.md): no valid
//: token (4001), a subscription outside the token's scope (4003), an expired token
//: (4004).  The stream turns suspended with the node's reason instead of retrying.
export const FATAL_CLOSE_CODES = [4001, 4003, 4004];
//: HTTP statuses of the same refusals on the stream and on long-polls.
export const FATAL_STATUSES = [401, 403];
const OPEN = 1;
const CONNECTING = 0;

function unpack(data) {
  return unpackMessage(new Uint8Array(data));
}

/** One `slipstream.v1` server message (bytes) as an object: `{t: "tick", ...}`. */
export function decodeMessage(bytes) {
  return unpack(bytes);
}

/** The node's reason for an HTTP refusal: its JSON `{code, message}`, or the status. */
async function reasonOf(response) {
  try {
    const body = await response.json();
    return `${body.code}: ${body.message}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/**
 * One WebSocket subscription with resume.
 *
 * Options: `url` (ws://host/ws), `name` (sessionStorage key of the cursor),
 * `catalogue`, `groups` (names), `cars` (numbers or null for all), `codec`,
 * `onTick(msg, fresh, stream)`, `onEvent(msg)`, `onNotice(msg)`, `onState(state, detail)`,
 * `suspendAfterMs` (reconnecting this long turns into suspended), `storage`
 * (sessionStorage by default), `fallback` (fall back to SSE and long-poll; default: when
 * fetch can stream a response), `wsRetryMs` (probe the WebSocket this often while on a
 * lesser transport), `WebSocket` (the constructor; default: the global one),
 * `connectTimeoutMs`, `transport` (pin ws, sse or poll; default: the ladder from ws).
 */
export class Stream {
  constructor(options) {
    this.options = options;
    this.url = options.url;
    this.name = options.name;
    this.storage = "storage" in options ? options.storage : globalThis.sessionStorage;
    this.state = new StreamState(options.catalogue);
    this.cars = options.cars ?? null;
    this.groups = options.groups;
    this.codec = options.codec ?? null;
    this.status = "idle";
    this.socket = null;
    this.hello = null;
    this.ticks = []; // [race, tick] of every tick message received, in order
    this.resumes = []; // {cursor, keyframe, first} per (re)subscription
    this.attempt = 0;
    this.failingSince = null;
    this.timer = null;
    this.closed = false;
    this.bytes = 0;
    this.messages = 0;
    this.latencyMs = [];
    this.subscribed = null;
    this.heldCars = this.cars; // the cars of the last subscription sent
    // ws, sse or poll; `options.transport` pins one (no ladder, no climbing back).
    this.transport = options.transport ?? "ws";
    this.source = null; // {close} of the event stream's fetch on sse
    this.refused = null; // the node's reason when it refused (suspended until setToken)
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.polling = null; // {abort} of the long-poll loop on poll
  }

  /** The stored cursor {race, tick} (survives a reload), or null. */
  get storedCursor() {
    try {
      const text = this.storage?.getItem(`slipstream.cursor.${this.name}`);
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }

  _storeCursor() {
    try {
      const cursor = JSON.stringify({ race: this.state.race, tick: this.state.tick });
      this.storage?.setItem(`slipstream.cursor.${this.name}`, cursor);
    } catch {
      // Storage full or disabled: resume then starts from a keyframe.
    }
  }

  start() {
    this.closed = false;
    this._connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    if (this.socket) {
      if (this.socket.readyState === OPEN) this.socket.close(1000, "closed by the fan");
      else this.socket.onopen = (ev) => ev.target.close(1000, "closed by the fan");
      this.socket = null;
    }
    this._stopHttp();
    this._setStatus("closed");
  }

  /** Give up waiting and reconnect now (the suspended state's retry button). */
  retry() {
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.attempt = 0;
    this.failingSince = null;
    if (this.refused !== null) {
      this.refused = null;
      this.transport = this.options.transport ?? "ws";
    }
    if (this.socket && this.socket.readyState <= 1) return;
    if (this.source || this.polling) return;
    this._connect();
  }

  /** Change the subscription's cars over the open socket (null: every car, []: none). */
  setCars(cars) {
    this.setSubscription({ cars });
  }

  /**
   * Change cars, groups and/or codec mid-stream, on the same connection (a field left
   * out keeps its value; cars null: every car, []: none).  Returns false when nothing
   * could be sent now (poll, or not connected): the next connection or poll carries it.
   */
  setSubscription({ cars, groups, codec } = {}) {
    if (cars !== undefined) this.cars = cars === null ? null : [...cars].sort((a, b) => a - b);
    if (groups !== undefined) this.groups = groups;
    if (codec !== undefined) this.codec = codec;
    if (this.refused !== null) {
      this.retry(); // a subscription out of scope was refused: try the new one
      return false;
    }
    if (this.transport === "poll") {
      this.polling?.restart();
      return false;
    }
    if (this.transport === "sse" ? this.source && this.hello : this.socket?.readyState === OPEN && this.hello) {
      this._subscribe(false);
      return true;
    }
    return false;
  }

  /** Use `token` (sent as ?token=) from the next connection; a refused stream retries. */
  setToken(token) {
    const url = new URL(this.url, globalThis.location?.href);
    if (token) url.searchParams.set("token", token);
    else url.searchParams.delete("token");
    this.url = url.toString();
    if (this.refused !== null) this.retry();
  }

  /** The node refused: no further attempt until setToken() or retry(). */
  _refused(reason) {
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this._stopHttp();
    if (this.socket) {
      this.socket.onclose = null;
      this.socket = null;
    }
    this.refused = reason;
    this._setStatus("suspended", reason);
  }

  _setStatus(status, detail = "") {
    this.status = status;
    this.options.onState?.(status, detail, this);
  }

  _connect() {
    if (this.closed) return;
    this._setStatus(this.failingSince === null && this.attempt === 0 ? "connecting" : "reconnecting");
    if (this.transport === "sse") return this._connectSse();
    if (this.transport === "poll") return this._connectPoll();
    let socket;
    try {
      socket = new this.WebSocket(this.url, [SUBPROTOCOL]);
    } catch (err) {
      this._lost(`cannot open ${this.url}: ${err.message}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.hello = null;
    // A dead network may leave the handshake hanging: give up on it in time to
    // reconnect or to turn suspended (abandoned, not closed: closing a socket that
    // is still connecting is an error in some browsers' consoles).
    const suspendAfterMs = this.options.suspendAfterMs ?? 30000;
    const connectTimeoutMs = this.options.connectTimeoutMs ?? 8000;
    const budget = this.failingSince === null ? connectTimeoutMs : this.failingSince + suspendAfterMs - Date.now();
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.socket !== socket || socket.readyState !== CONNECTING) return;
      this.socket = null;
      socket.onmessage = null;
      socket.onclose = null;
      socket.onopen = () => socket.close(1000, "gave up waiting");
      this._lost("no answer from the server");
    }, Math.max(0, Math.min(connectTimeoutMs, budget)));
    let opened = false;
    socket.onopen = () => {
      opened = true;
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data === "string") return;
      this.bytes += ev.data.byteLength;
      this.messages++;
      this._message(unpack(ev.data));
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      const detail = ev.reason || `connection closed (${ev.code})`;
      if (FATAL_CLOSE_CODES.includes(ev.code)) {
        this._refused(`${ev.code} ${detail}`); // before the hello or after: the same
        return;
      }
      // Never opened: refused (a proxy stripping Upgrade) or unreachable; try HTTP streaming.
      if (!opened && this._fallback()) {
        clearTimeout(this.watchdog);
        this._stepDown("sse");
        return;
      }
      this._lost(detail);
    };
    // Errors are followed by close, which reconnects; nothing to log here.
    socket.onerror = () => {};
  }

  _lost(detail) {
    if (this.closed) return;
    // Start again from the best transport: what failed may have been the network.
    this._stopHttp();
    this.transport = this.options.transport ?? "ws";
    const now = Date.now();
    if (this.failingSince === null) this.failingSince = now;
    const suspendAfterMs = this.options.suspendAfterMs ?? 30000;
    if (now - this.failingSince >= suspendAfterMs) {
      this._setStatus("suspended", detail);
      return;
    }
    this._setStatus("reconnecting", detail);
    const delay = Math.min(4000, 250 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.timer = setTimeout(() => this._connect(), delay);
  }

  _send(obj) {
    if (this.transport === "sse") this._post(obj);
    else if (this.socket?.readyState === OPEN) this.socket.send(JSON.stringify(obj));
  }

  // -- HTTP streaming and long-polling (docs/protocol.md) ------------------------------

  _fallback() {
    return this.options.fallback ?? typeof globalThis.fetch === "function";
  }

  _stepDown(transport) {
    this.transport = transport;
    this._connect();
  }

  _stopHttp() {
    clearTimeout(this.climbTimer);
    this.climbTimer = null;
    if (this.source) this.source.close();
    this.source = null;
    this.polling?.stop();
    this.polling = null;
  }

  /** An HTTP URL on the node (the WebSocket URL's host, base path and ?token=). */
  _httpUrl(path, params = {}) {
    const url = new URL(this.url.replace(/^ws/, "http"), globalThis.location?.href);
    url.pathname = url.pathname.replace(/\/ws$/, "") + path;
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url.toString();
  }

  /** Query of a stream or a poll: the subscription and the cursor (as _subscribe sends). */
  _query() {
    const q = {};
    if (this.cars !== null) q.cars = this.cars.join(",");
    if (this.groups) q.groups = this.groups.join(",");
    if (this.codec) q.codec = this.codec;
    const cursor = this.state.race !== null ? { race: this.state.race, tick: this.state.tick } : this.storedCursor;
    if (cursor && cursor.race) {
      q.cursor = `${cursor.race}:${cursor.tick}`;
      const same = JSON.stringify(this.cars) === JSON.stringify(this.heldCars);
      if (!this.state.hasState || !same || this.state.needsKeyframe) q.keyframe = "1";
    }
    this.heldCars = this.cars;
    return q;
  }

  _post(obj) {
    const stream = this.hello?.stream;
    if (!stream) return;
    fetch(this._httpUrl(`/v1/stream/${encodeURIComponent(stream)}/subscribe`), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(obj),
    })
      .then((response) => {
        // Not on this node (a load balancer sent the POST elsewhere) or ended: reconnect;
        // the new stream's query carries the subscription.
        if (response.status === 404 && this.hello?.stream === stream && this.source) {
          this._stopHttp();
          this._lost("the stream is not on the node that got its subscribe");
        }
      })
      .catch(() => {}); // a dropped stream reconnects with the subscription in its query
  }

  _connected() {
    if (this.status !== "connected") {
      this.attempt = 0;
      this.failingSince = null;
      this._setStatus("connected", this.transport);
    }
    // Once per connection (not per poll): the probe comes wsRetryMs after connecting.
    if (this.transport !== "ws" && !this.climbTimer && !this.options.transport) this._scheduleClimb();
  }

  _scheduleClimb() {
    clearTimeout(this.climbTimer);
    this.climbTimer = setTimeout(() => this._probe(), this.options.wsRetryMs ?? 30000);
  }

  /** While on a lesser transport: if a WebSocket opens now, move back to it. */
  _probe() {
    this.climbTimer = null;
    if (this.closed || this.transport === "ws") return;
    let probe;
    try {
      probe = new this.WebSocket(this.url, [SUBPROTOCOL]);
    } catch {
      this._scheduleClimb();
      return;
    }
    probe.onopen = () => {
      probe.onclose = null;
      probe.close(1000, "probe");
      if (this.closed || this.transport === "ws") return;
      this._stopHttp();
      this.transport = "ws";
      this._connect();
    };
    probe.onclose = () => {
      if (!this.closed && this.transport !== "ws" && !this.climbTimer) this._scheduleClimb();
    };
    probe.onerror = () => {};
  }

  _connectSse() {
    const controller = new AbortController();
    const source = { close: () => controller.abort() };
    const cars = this.cars;
    this.source = source;
    this.hello = null;
    this.resumes.push({ cursor: null, keyframe: false, first: null });
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.source !== source || this.hello) return;
      this._stopHttp();
      this._streamRefused("no event in time"); // a proxy holding long responses back
    }, this.options.connectTimeoutMs ?? 8000);
    const onData = (text) => {
      this.bytes += text.length;
      this.messages++;
      const msg = unpack(fromBase64(text));
      if (msg.t === "hello") {
        this.hello = msg;
        clearTimeout(this.watchdog);
        this._connected();
        // The query could not say "no cars"; nor a change made while connecting.
        if (JSON.stringify(cars) !== JSON.stringify(this.cars) || (this.cars && !this.cars.length)) {
          this._subscribe(false);
        }
        return;
      }
      this._message(msg);
    };
    const read = async () => {
      const response = await fetch(this._httpUrl("/v1/stream", this._query()), {
        headers: { Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (this.source !== source) return "gone";
      if (FATAL_STATUSES.includes(response.status)) return { refused: await reasonOf(response) };
      const type = response.headers.get("content-type") ?? "";
      if (!response.ok || !type.startsWith("text/event-stream") || !response.body) return "refused";
      const reader = response.body.getReader();
      const text = new TextDecoder();
      let buffer = "";
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.source !== source) return "ended";
        buffer += text.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0 && this.source === source) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          else if (line === "" && data.length) {
            // id:, retry: (the cursor is ours) and comments (heartbeats) are skipped.
            const event = data.join("");
            data = [];
            onData(event);
          }
        }
      }
    };
    read()
      .catch(() => "ended")
      .then((end) => {
        if (this.source !== source || this.closed || end === "gone") return;
        if (end?.refused) {
          this._refused(end.refused);
          return;
        }
        const opened = this.hello !== null;
        this._stopHttp(); // our own backoff and cursor
        if (opened) this._lost("the stream was cut");
        else this._streamRefused("the stream was refused");
      });
  }

  /** The event stream never started: long-poll (on the ladder) or try again (pinned). */
  _streamRefused(detail) {
    if (this.options.transport) this._lost(detail);
    else this._stepDown("poll");
  }

  _connectPoll() {
    const loop = { stopped: false, controller: new AbortController() };
    loop.stop = () => {
      loop.stopped = true;
      loop.controller.abort();
    };
    loop.restart = () => loop.controller.abort(); // poll again now, with the new cars
    this.polling = loop;
    this.hello = null;
    this.resumes.push({ cursor: null, keyframe: false, first: null });
    const run = async () => {
      while (!loop.stopped && !this.closed) {
        let body;
        try {
          if (this.cars !== null && this.cars.length === 0) {
            await new Promise((resolve) => loop.controller.signal.addEventListener("abort", resolve));
            throw new DOMException("cars changed", "AbortError");
          }
          const response = await fetch(this._httpUrl("/v1/poll", this._query()), { signal: loop.controller.signal });
          if (FATAL_STATUSES.includes(response.status)) {
            const reason = await reasonOf(response);
            if (!loop.stopped) {
              this.polling = null;
              this._refused(reason);
            }
            return;
          }
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          const data = await response.arrayBuffer();
          this.bytes += data.byteLength;
          body = unpack(data);
        } catch (err) {
          if (loop.stopped) return;
          if (err.name === "AbortError") {
            loop.controller = new AbortController();
            continue;
          }
          this.polling = null;
          this._lost(`long-poll failed: ${err.message}`);
          return;
        }
        this._connected();
        for (const message of body.m) {
          this.messages++;
          this._message(unpack(message));
        }
      }
    };
    run();
  }

  _subscribe(resume) {
    if (this.cars !== null && this.cars.length === 0) {
      this._send({ op: "unsubscribe" });
      return;
    }
    const msg = { op: "subscribe", cars: this.cars, groups: this.groups };
    if (this.codec) msg.codec = this.codec;
    if (resume) {
      // Resume after a drop (state held: deltas apply) or a reload (no state: keyframe first).
      const cursor = this.state.race !== null ? { race: this.state.race, tick: this.state.tick } : this.storedCursor;
      if (cursor && cursor.race) {
        msg.cursor = cursor;
        // Cars added while away have no values here: deltas could not apply to them.
        const same = JSON.stringify(this.cars) === JSON.stringify(this.heldCars);
        msg.keyframe = !this.state.hasState || !same;
      }
      this.resumes.push({ cursor: msg.cursor ?? null, keyframe: !!msg.keyframe, first: null });
    }
    this.heldCars = this.cars;
    this._send(msg);
  }

  _message(msg) {
    switch (msg.t) {
      case "hello":
        this.hello = msg;
        this._subscribe(true);
        break;
      case "subscribed":
      case "unsubscribed":
        this.subscribed = msg;
        this._connected();
        break;
      case "tick": {
        const fresh = this.state.applyTick(msg);
        this.lastCars = [...new Set(msg.p.map((part) => part[0]))];
        this.ticks.push([msg.race, msg.tick]);
        if (this.ticks.length > 20000) this.ticks.splice(0, 10000);
        const resume = this.resumes[this.resumes.length - 1];
        if (resume && resume.first === null) resume.first = msg.tick;
        // Delivery latency of live ticks only: not the catch-up keyframe or replayed ticks.
        const live = this.hello && typeof this.hello.tick === "number" ? msg.tick > this.hello.tick : resume?.first !== msg.tick;
        if (live && typeof msg.ts === "number" && msg.ts > 0) {
          this.latencyMs.push(Date.now() - msg.ts / 1e6);
          if (this.latencyMs.length > 2000) this.latencyMs.splice(0, 1000);
        }
        this._storeCursor();
        if (this.state.needsKeyframe) this._send({ op: "keyframe" });
        this.options.onTick?.(msg, fresh, this);
        break;
      }
      case "event":
        this.options.onEvent?.(msg, this);
        break;
      case "notice":
        if (msg.code === "race_changed") this.state.clear();
        this.options.onNotice?.(msg, this);
        break;
      case "error":
        this.options.onNotice?.({ ...msg, error: true }, this);
        break;
      case "close":
        // An event stream's last message, where a WebSocket has its close frame.
        if (FATAL_CLOSE_CODES.includes(msg.code)) this._refused(`${msg.code} ${msg.reason}`);
        break;
      default:
        break;
    }
  }
}

/** The p-th percentile (0..100) of numbers (nearest rank), or null when empty. */
export function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** The ws:// URL of the node that served this page, with the page's ?token= if any. */
export function wsUrl(loc = globalThis.location) {
  const base = `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
  const token = new URLSearchParams(loc.search ?? "").get("token");
  return token ? `${base}?token=${encodeURIComponent(token)}` : base;
}
