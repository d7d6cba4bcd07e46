// Decode a recorded slipstream.v1 stream with the page's client (@slipstream/client)
// under node, for the Python cross-check (tests/browser/test_stream_js.py).
//
//   node scripts/decode-stream.mjs STREAM.json
//
// STREAM.json is {catalogue: [rows of /v1/channels], messages: [hex of each server
// message]}; prints a JSON list, per tick message, of {race, tick, cars: {car: {channel:
// value}}} holding every channel of the groups that changed at that tick.
import { readFileSync } from "node:fs";
import { Catalogue, StreamState, decodeMessage } from "@slipstream/client";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const catalogue = new Catalogue(input.catalogue);
const state = new StreamState(catalogue);
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const out = [];
for (const text of input.messages) {
  const msg = decodeMessage(hex(text));
  if (msg.t !== "tick") continue;
  const fresh = state.applyTick(msg);
  const cars = {};
  for (const [car, groups] of fresh) {
    const values = {};
    for (const g of groups) {
      const group = catalogue.groups[g];
      for (const row of catalogue.rows.slice(group.start, group.stop)) values[row.name] = state.value(car, row.name);
    }
    cars[car] = values;
  }
  out.push({ race: msg.race, tick: msg.tick, cars, needsKeyframe: state.needsKeyframe });
}
process.stdout.write(JSON.stringify(out) + "\n");
