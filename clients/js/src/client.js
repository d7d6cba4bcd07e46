// connect(): the fan-app API of @slipstream/client (docs/clients.md).
//
//   const client = connect(nodeUrl, { cars: [24], groups: ["tyres"] });
//   client.on("frame", (f) => console.log(f.tick, f.car, f.values.tyre_temp_lf_middle));
//   for await (const item of client) { ... }   // or iterate: {type: "frame", ...}
//
// Values are in channel units (the catalogue of /v1/channels).  `client.cursor`
// ({race, tick}) is what to persist and pass back as `cursor` to resume.

import { Catalogue, FATAL_STATUSES, Stream } from "./stream.js";

const KINDS = ["frame", "event", "notice", "state"];

/** The node's HTTP base and WebSocket URLs, given either (scheme http, https, ws or wss). */
export function nodeUrls(url) {
  const parsed = new URL(url, globalThis.location?.href);
  const scheme = { "ws:": "http:", "wss:": "https:" }[parsed.protocol] ?? parsed.protocol;
  if (scheme !== "http:" && scheme !== "https:") {
    throw new TypeError(`expected an http, https, ws or wss URL, got ${url}`);
  }
  const base = parsed.pathname.replace(/\/+$/, "").replace(/\/ws$/, "");
  const http = new URL(`${scheme}//${parsed.host}${base}`);
  const ws = new URL(`${scheme === "https:" ? "wss:" : "ws:"}//${parsed.host}${base}/ws`);
  return { http: http.toString().replace(/\/$/, ""), ws: ws.toString() };
}

function digits(resolution) {
  const text = String(resolution);
  if (text.includes("e-")) return Number(text.split("e-")[1]);
  return text.includes(".") ? text.split(".")[1].length : 0;
}

/** A fan's connection to a node; made by `connect()`. */
export class Client {
  constructor(url, options = {}) {
    const { cars = null, groups = null, codec = null, token = null, cursor = null } = options;
    this.urls = nodeUrls(url);
    this.options = options;
    this.state = "connecting";
    this.reason = "";
    this.transport = null;
    this._cars = cars;
    this._groups = groups;
    this._codec = codec;
    this._token = token;
    this._cursor = cursor;
    this._listeners = new Map(KINDS.map((k) => [k, new Set()]));
    this._queue = [];
    this._waiters = [];
    this._iterating = false;
    this._acks = [];
    this.stream = null;
    this.catalogue = null;
    this._ready = this._start();
  }

  /** `on("frame" | "event" | "notice" | "state", listener)`; returns an unsubscribe function. */
  on(kind, listener) {
    const set = this._listeners.get(kind);
    if (set === undefined) throw new TypeError(`unknown event ${kind}; one of ${KINDS.join(", ")}`);
    set.add(listener);
    return () => set.delete(listener);
  }

  off(kind, listener) {
    this._listeners.get(kind)?.delete(listener);
  }

  /** Race and last tick applied ({race, tick}), or the starting cursor, or null. */
  get cursor() {
    const s = this.stream?.state;
    if (s && s.race !== null && s.tick >= 0) return { race: s.race, tick: s.tick };
    return this._cursor;
  }

  /** The node's reason when it refused (state `suspended` until `setToken`), or null. */
  get refused() {
    return this.stream?.refused ?? null;
  }

  /**
   * Change cars, groups or codec on the same connection; resolves once the node
   * acknowledged it (WebSocket, SSE) or once it is queued for the next poll.
   */
  async subscribe({ cars, groups, codec } = {}, { timeoutMs = 10000 } = {}) {
    if (cars !== undefined) this._cars = cars;
    if (groups !== undefined) this._groups = groups;
    if (codec !== undefined) this._codec = codec;
    await this._ready;
    if (this.stream === null) return;
    const acked = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no acknowledgement in ${timeoutMs} ms`)), timeoutMs);
      this._acks.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (!this.stream.setSubscription({ cars, groups, codec })) {
      this._acks.pop()?.();
    }
    return acked;
  }

  /** Use a new token; a client suspended by a refusal connects again. */
  setToken(token) {
    this._token = token;
    this.stream?.setToken(token);
  }

  /** Close the connection (the node is told: a WebSocket close 1000) and end iterators. */
  close() {
    this._closed = true;
    this.stream?.close();
    if (this.state !== "closed") this._setState("closed", "closed by the fan", this.transport);
    for (const waiter of this._waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    this._iterating = true;
    return {
      next: () => {
        if (this._queue.length) return Promise.resolve({ value: this._queue.shift(), done: false });
        if (this._closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this._waiters.push(resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  _emit(kind, item) {
    for (const listener of this._listeners.get(kind)) listener(item);
    if (!this._iterating) return;
    const entry = { type: kind, ...item };
    const waiter = this._waiters.shift();
    if (waiter) waiter({ value: entry, done: false });
    else {
      this._queue.push(entry);
      // A reader far behind loses the oldest items, not the process its memory.
      if (this._queue.length > (this.options.queueItems ?? 10000)) this._queue.shift();
    }
  }

  _setState(state, reason, transport) {
    this.state = state;
    this.reason = reason ?? "";
    this.transport = transport;
    this._emit("state", { state, reason: this.reason, transport, refused: state === "suspended" && this.refused !== null });
  }

  async _loadCatalogue() {
    const headers = this._token ? { Authorization: `Bearer ${this._token}` } : {};
    for (let attempt = 0; !this._closed; attempt++) {
      try {
        const response = await fetch(`${this.urls.http}/v1/channels`, { headers });
        if (FATAL_STATUSES.includes(response.status)) {
          return { refused: `GET /v1/channels: HTTP ${response.status}` };
        }
        if (!response.ok) throw new Error(`GET /v1/channels: HTTP ${response.status}`);
        return new Catalogue(await response.json());
      } catch (err) {
        this._setState("reconnecting", String(err.message ?? err), null);
        const delay = Math.min(10000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    return null;
  }

  async _start() {
    this.catalogue = this.options.catalogue ?? (await this._loadCatalogue());
    if (this.catalogue === null || this._closed) return;
    if (this.catalogue.refused) {
      this._setState("suspended", this.catalogue.refused, null);
      return;
    }
    const url = new URL(this.urls.ws);
    if (this._token) url.searchParams.set("token", this._token);
    const cursor = this._cursor;
    // The stream reads its starting cursor from a storage: the app's, or ours in memory.
    const memory = new Map();
    if (cursor) memory.set("slipstream.cursor.client", JSON.stringify(cursor));
    const storage = this.options.storage ?? { getItem: (k) => memory.get(k) ?? null, setItem: (k, v) => memory.set(k, v) };
    this._digits = this.catalogue.rows.map((row) => digits(row.resolution));
    this.stream = new Stream({
      url: url.toString(),
      name: this.options.name ?? "client",
      catalogue: this.catalogue,
      cars: this._cars,
      groups: this._groups,
      codec: this._codec,
      storage,
      // "auto" (default): the ladder WebSocket -> SSE -> long-poll and back; else pinned.
      transport: (this.options.transport ?? "auto") === "auto" ? undefined : this.options.transport,
      fallback: (this.options.transport ?? "auto") === "auto",
      WebSocket: this.options.WebSocket ?? (await webSocketClass()),
      suspendAfterMs: this.options.suspendAfterMs,
      wsRetryMs: this.options.wsRetryMs,
      connectTimeoutMs: this.options.connectTimeoutMs,
      onTick: (msg, fresh) => this._frames(msg, fresh),
      onEvent: (msg) => this._emit("event", { race: msg.race, tick: msg.tick, kind: msg.kind, t_ns: msg.t_ns, cars: msg.cars, data: msg.data }),
      onNotice: (msg) => {
        const notice = { code: msg.code, message: msg.message, race: msg.race ?? null, from: msg.from ?? null, to: msg.to ?? null, error: !!msg.error };
        this._emit("notice", notice);
      },
      onState: (state, detail, stream) => {
        if (state === "connected") for (const ack of this._acks.splice(0)) ack();
        if (state === "idle") return;
        this._setState(state, state === "connected" ? "" : detail, stream.transport);
      },
    });
    const message = this.stream._message.bind(this.stream);
    this.stream._message = (msg) => {
      message(msg);
      if (msg.t === "subscribed" || msg.t === "unsubscribed") for (const ack of this._acks.splice(0)) ack();
    };
    this.stream.start();
  }

  _frames(msg, fresh) {
    const { catalogue, stream } = this;
    for (const [car, groups] of fresh) {
      const values = {};
      for (const g of groups) {
        const group = catalogue.groups[g];
        for (let i = group.start; i < group.stop; i++) {
          const name = catalogue.rows[i].name;
          const value = stream.state.value(car, name);
          values[name] = value === null ? null : Number(value.toFixed(this._digits[i]));
        }
      }
      this._emit("frame", { race: msg.race, tick: msg.tick, car, values });
    }
  }
}

/** The WebSocket class: the global one (browsers, node >= 22), else the `ws` package. */
async function webSocketClass() {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  const name = "ws"; // not a static import: browsers and bundlers never load it
  const module = await import(/* @vite-ignore */ name);
  return module.WebSocket ?? module.default;
}

/**
 * Connect to a node.  Options: `cars` (numbers, null: all), `groups` (names, null: all),
 * `codec` (sparse, vcdiff, full), `token`, `cursor` ({race, tick} to resume after),
 * `transport` ("auto", "ws", "sse" or "poll"), `suspendAfterMs`, `wsRetryMs`, `connectTimeoutMs`,
 * `WebSocket` (a constructor), `storage` (e.g. sessionStorage, to keep the cursor).
 */
export function connect(url, options = {}) {
  return new Client(url, options);
}
