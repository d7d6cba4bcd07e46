// The browser decoders against the shared vectors (tests/fixtures/codec_vectors.json),
// which the Python suite reads too.  Run: cd clients/js && npm ci && npm test
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { decode as ablyDecode } from "@ably/vcdiff-decoder";
import { CodecError, MISSING, decodeDelta, decodeKeyframe, setVcdiffDecoder } from "../src/codecs.js";

setVcdiffDecoder(ablyDecode);

const fixture = JSON.parse(
  readFileSync(new URL("../../../tests/fixtures/codec_vectors.json", import.meta.url), "utf8"),
);

function hex(s) {
  return Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
}

function decode(v) {
  return v.kind === "keyframe"
    ? decodeKeyframe(v.codec, hex(v.payload), v.size)
    : decodeDelta(v.codec, Int32Array.from(v.base), hex(v.payload));
}

test("the fixture has vectors of every codec and kind", () => {
  const seen = new Set(fixture.valid.map((v) => `${v.codec}/${v.kind}`));
  for (const codec of ["full", "sparse", "vcdiff"]) {
    assert.ok(seen.has(`${codec}/keyframe`), codec);
    assert.ok(seen.has(`${codec}/delta`), codec);
  }
  assert.ok(fixture.invalid.length > 0);
});

for (const codec of ["full", "sparse", "vcdiff"]) {
  test(`${codec}: every valid vector decodes to the Python values`, () => {
    const vectors = fixture.valid.filter((v) => v.codec === codec);
    assert.ok(vectors.length > 0);
    for (const v of vectors) {
      assert.deepEqual(Array.from(decode(v)), v.values, `${v.case} ${v.group} ${v.kind}`);
    }
  });
}

test("every invalid vector throws CodecError", () => {
  for (const v of fixture.invalid) {
    assert.throws(() => decode(v), CodecError, `${v.codec}: ${v.reason}`);
  }
});

test("vcdiff without a decoder says how to get one", () => {
  setVcdiffDecoder(null);
  try {
    const v = fixture.valid.find((x) => x.codec === "vcdiff" && x.kind === "delta");
    assert.throws(() => decode(v), /no VCDIFF decoder/);
  } finally {
    setVcdiffDecoder(ablyDecode);
  }
});

test("corrupted vcdiff and sparse parts throw CodecError or decode to the right size", () => {
  const samples = fixture.valid.filter((v) => v.kind === "delta" && v.codec !== "full").slice(0, 120);
  for (const v of samples) {
    const payload = hex(v.payload);
    for (let i = 0; i < payload.length; i++) {
      for (const value of [0x00, 0x01, 0x7f, 0x80, 0xff]) {
        const bad = payload.slice();
        bad[i] = value;
        try {
          const out = decodeDelta(v.codec, Int32Array.from(v.base), bad);
          assert.equal(out.length, v.size);
        } catch (err) {
          assert.ok(err instanceof CodecError, `${v.codec} byte ${i}=${value}: ${err}`);
        }
      }
    }
  }
});

test("sparse nibble varints: the documented example and the longest varint", () => {
  // tyres-sized group (21 channels): +1, -3, +10 at channels 0, 4, 20 (docs/codecs.md).
  const base = Int32Array.from({ length: 21 }, (_, i) => i);
  const out = decodeDelta("sparse", base, hex("110010522c"));
  const want = Array.from(base);
  want[0] += 1;
  want[4] -= 3;
  want[20] += 10;
  assert.deepEqual(Array.from(out), want);
  // 11 nibbles: zigzag(2^32 - 1) = 2^33 - 2, MISSING -> int32 max, and back.
  const up = new Int32Array(21);
  up[0] = MISSING;
  assert.equal(decodeDelta("sparse", up, hex("010000feffffffff07"))[0], 2147483647);
  const down = new Int32Array(21);
  down[0] = 2147483647;
  assert.equal(decodeDelta("sparse", down, hex("010000fdffffffff07"))[0], MISSING);
  // A 12th nibble is refused even when its value would fit.
  assert.throws(() => decodeDelta("sparse", up, hex("010000888888888818")), CodecError);
});
