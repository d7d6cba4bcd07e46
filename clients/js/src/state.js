// The pure part of the client: the channel catalogue, and the decoded state of one
// subscription (messages in, values out; no socket, no clock), testable anywhere.

import { MISSING, decodeDelta, decodeKeyframe } from "./codecs.js";

export const KIND_KEYFRAME = 0;

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
