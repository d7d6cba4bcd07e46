// The browser's client of a broadcast node: the `slipstream.v1` WebSocket stream,
// decoded into per-car channel values (docs/protocol.md, docs/dashboard.md).
//
// `Catalogue` maps channel names to (group, index, resolution); `StreamState` is the
// pure part (messages in, values out, no socket, testable in node); `Stream` owns one
// WebSocket: subscribe, resume from its cursor after a drop or a reload, reconnect with
// jittered backoff, and report its state (connecting, connected, reconnecting,
// suspended).

import { MISSING, decodeDelta, decodeKeyframe } from "./codecs.js";

export const SUBPROTOCOL = "slipstream.v1";
export const KIND_KEYFRAME = 0;
//: Close codes after which retrying as is cannot help (docs/security.md): no valid
//: token (4001), a subscription outside the token's scope (4003), an expired token
//: (4004).  The stream turns suspended with the node's reason instead of retrying.
export const FATAL_CLOSE_CODES = [4001, 4003, 4004];

/** The channel catalogue as served at /v1/channels. */
export class Catalogue {
  constructor(rows) {
    this.rows = rows;
    this.groups = [];
    this.channel = new Map(); // name -> {group, offset, resolution, row}
    const byName = new Map();
    rows.forEach((row, i) => {
      let group = byName.get(row.group);
      if (group === undefined) {
        group = { name: row.group, index: this.groups.length, start: i, stop: i, premium: !!row.premium };
        byName.set(row.group, group);
        this.groups.push(group);
      }
      group.stop = i + 1;
      this.channel.set(row.name, { group: group.index, offset: i - group.start, resolution: row.resolution, row });
    });
    for (const g of this.groups) g.size = g.stop - g.start;
    this.groupByName = byName;
  }

  static async load(base = "") {
    const response = await fetch(`${base}/v1/channels`);
    if (!response.ok) throw new Error(`GET /v1/channels: HTTP ${response.status}`);
    return new Catalogue(await response.json());
  }
}

/** Decoded state of one subscription: the values held per (car, group), and the cursor. */
export class StreamState {
  constructor(catalogue) {
    this.catalogue = catalogue;
    this.held = new Map(); // `${car}:${group}` -> {base, values}
    this.race = null;
    this.tick = -1;
    this.needsKeyframe = false;
  }

  get hasState() {
    return this.race !== null && this.held.size > 0;
  }

  clear() {
    this.held.clear();
    this.race = null;
    this.tick = -1;
  }

  /**
   * Apply a decoded `tick` message; returns the cars whose values changed at this
   * tick (a Map car -> [group indices]).
   */
  applyTick(msg) {
    if (msg.race !== this.race) {
      this.held.clear();
      this.race = msg.race;
    }
    if (msg.kf) this.needsKeyframe = false;
    const fresh = new Map();
    const groups = this.catalogue.groups;
    for (const [car, g, kind, base, payload] of msg.p) {
      const group = groups[g];
      if (group === undefined) throw new Error(`tick part names unknown group ${g}`);
      const key = `${car}:${g}`;
      if (kind === KIND_KEYFRAME) {
        this.held.set(key, { base, values: decodeKeyframe(msg.codec, payload, group.size) });
        if (base !== msg.tick) continue; // a car that sent nothing this tick: state only
      } else {
        const held = this.held.get(key);
        if (held === undefined || held.base !== base) {
          // The delta is against values we do not hold: ask for a keyframe.
          this.needsKeyframe = true;
          this.held.delete(key);
          continue;
        }
        this.held.set(key, { base: msg.tick, values: decodeDelta(msg.codec, held.values, payload) });
      }
      if (!fresh.has(car)) fresh.set(car, []);
      fresh.get(car).push(g);
    }
    this.tick = msg.tick;
    return fresh;
  }

  /** A channel's value for a car in channel units (null: unknown or missing). */
  value(car, name) {
    const ch = this.catalogue.channel.get(name);
    if (ch === undefined) throw new Error(`unknown channel ${name}`);
    const held = this.held.get(`${car}:${ch.group}`);
    if (held === undefined) return null;
    const count = held.values[ch.offset];
    return count === MISSING ? null : count * ch.resolution;
  }

  /** Cars holding values of a group. */
  cars(groupName) {
    const g = this.catalogue.groupByName.get(groupName).index;
    const out = [];
    for (const key of this.held.keys()) {
      const [car, group] = key.split(":").map(Number);
      if (group === g) out.push(car);
    }
    return out.sort((a, b) => a - b);
  }
}

function unpack(data) {
  return globalThis.MessagePack.decode(new Uint8Array(data));
}

/**
 * One WebSocket subscription with resume.
 *
 * Options: `url` (ws://host/ws), `name` (sessionStorage key of the cursor),
 * `catalogue`, `groups` (names), `cars` (numbers or null for all), `codec`,
 * `onTick(msg, fresh, stream)`, `onEvent(msg)`, `onNotice(msg)`, `onState(state, detail)`,
 * `suspendAfterMs` (reconnecting this long turns into suspended), `storage`
 * (sessionStorage by default).
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
    if (this.socket) this.socket.close(1000, "page closed");
    this._setStatus("closed");
  }

  /** Give up waiting and reconnect now (the suspended state's retry button). */
  retry() {
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.attempt = 0;
    this.failingSince = null;
    if (this.socket && this.socket.readyState <= 1) return;
    this._connect();
  }

  /** Change the subscription's cars over the open socket (null: every car, []: none). */
  setCars(cars) {
    this.cars = cars === null ? null : [...cars].sort((a, b) => a - b);
    if (this.socket?.readyState === WebSocket.OPEN && this.hello) this._subscribe(false);
  }

  _setStatus(status, detail = "") {
    this.status = status;
    this.options.onState?.(status, detail, this);
  }

  _connect() {
    if (this.closed) return;
    this._setStatus(this.failingSince === null && this.attempt === 0 ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url, [SUBPROTOCOL]);
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
      if (this.socket !== socket || socket.readyState !== WebSocket.CONNECTING) return;
      this.socket = null;
      socket.onmessage = null;
      socket.onclose = null;
      socket.onopen = () => socket.close(1000, "gave up waiting");
      this._lost("no answer from the server");
    }, Math.max(0, Math.min(connectTimeoutMs, budget)));
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
        clearTimeout(this.watchdog);
        this._setStatus("suspended", detail);
        return;
      }
      this._lost(detail);
    };
    // Errors are followed by close, which reconnects; nothing to log here.
    socket.onerror = () => {};
  }

  _lost(detail) {
    if (this.closed) return;
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
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(obj));
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
        if (this.status !== "connected") {
          this.attempt = 0;
          this.failingSince = null;
          this._setStatus("connected");
        }
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
