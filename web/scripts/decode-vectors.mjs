// Decode parts with the browser decoders under node, for the Python interop tests.
//
//   node scripts/decode-vectors.mjs VECTORS.json
//
// VECTORS.json is a list of {codec, kind, size, base, payload (hex)}; prints a JSON
// list of {values: [...]} or {error: "CodecError: ..."} in the same order.
import { readFileSync } from "node:fs";
import { decodeDelta, decodeKeyframe } from "@slipstream/client";

const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const results = vectors.map((v) => {
  try {
    const values =
      v.kind === "keyframe"
        ? decodeKeyframe(v.codec, hex(v.payload), v.size)
        : decodeDelta(v.codec, Int32Array.from(v.base), hex(v.payload));
    return { values: Array.from(values) };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
});
process.stdout.write(JSON.stringify(results) + "\n");
