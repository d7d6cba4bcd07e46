// Slipstream's frame decoders for the browser (and node): full, sparse, vcdiff.
//
// The byte formats are specified in docs/codecs.md and produced by the Python
// encoders in slipstream/codecs/; both sides are tested against the shared
// vectors in tests/fixtures/codec_vectors.json.  A part holds one (car, channel
// group) of a tick; values are the group's quantised int32 counts, with
// MISSING (-2^31) meaning "no value".
//
// vcdiff deltas are decoded by npm's @ably/vcdiff-decoder.  In the browser the
// page loads its bundle (node_modules/@ably/vcdiff-decoder/dist/vcdiff-decoder.min.js,
// served locally) with a <script> tag, which defines the global `vcdiffDecoder`;
// elsewhere call setVcdiffDecoder(decode) with the package's `decode` function.
//
// Every decoder throws CodecError rather than return a wrong frame for a part it
// can tell is bad (truncated, left-over bytes, malformed varint, non-zero padding,
// bitmap/varint count mismatch, unsupported VCDIFF features, wrong size).

export const MISSING = -2147483648;
const INT32_MAX = 2147483647;
const MAX_NIBBLES = 11; // 33 bits: the zigzag of any difference of two int32 values
const VCDIFF_MAGIC = [0xd6, 0xc3, 0xc4, 0x00];
const VCD_SOURCE = 0x01;

/** A part could not be decoded. */
export class CodecError extends Error {
  constructor(message) {
    super(message);
    this.name = "CodecError";
  }
}

let vcdiffDecode = null;

/** Use `decode(delta, source) -> Uint8Array` (from @ably/vcdiff-decoder) for vcdiff. */
export function setVcdiffDecoder(decode) {
  vcdiffDecode = decode;
}

function bytesOf(payload) {
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) {
    return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  throw new TypeError("payload must be a Uint8Array, ArrayBuffer or typed array view");
}

/** Values of a `full` part (also a vcdiff keyframe): little-endian int32 per channel. */
export function decodeFull(payload, size) {
  const bytes = bytesOf(payload);
  if (bytes.length !== 4 * size) {
    throw new CodecError(`full part holds ${bytes.length} bytes, expected ${4 * size}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int32Array(size);
  for (let i = 0; i < size; i++) out[i] = view.getInt32(4 * i, true);
  return out;
}

/**
 * Values of a vcdiff part's bytes: each value zigzag-mapped to uint32, in byte
 * planes: the low bytes of every channel, then the second bytes, the third, the
 * high bytes.
 */
export function decodePlanes(payload, size) {
  const bytes = bytesOf(payload);
  if (bytes.length !== 4 * size) {
    throw new CodecError(`vcdiff part holds ${bytes.length} bytes, expected ${4 * size}`);
  }
  const out = new Int32Array(size);
  for (let i = 0; i < size; i++) {
    const z = bytes[i] | (bytes[size + i] << 8) | (bytes[2 * size + i] << 16) | (bytes[3 * size + i] << 24);
    out[i] = (z >>> 1) ^ -(z & 1);
  }
  return out;
}

function encodePlanes(values) {
  const size = values.length;
  const out = new Uint8Array(4 * size);
  for (let i = 0; i < size; i++) {
    const v = values[i] | 0;
    const z = (v << 1) ^ (v >> 31);
    out[i] = z & 0xff;
    out[size + i] = (z >>> 8) & 0xff;
    out[2 * size + i] = (z >>> 16) & 0xff;
    out[3 * size + i] = (z >>> 24) & 0xff;
  }
  return out;
}

// Sizes of the instructions of each opcode of RFC 3284's default code table (0: explicit).
const CODE_SIZES = (() => {
  const table = [[0]];
  for (let size = 0; size < 18; size++) table.push([size]);
  for (let mode = 0; mode < 9; mode++) {
    table.push([0]);
    for (let size = 4; size <= 18; size++) table.push([size]);
  }
  for (let mode = 0; mode < 6; mode++) {
    for (let add = 1; add <= 4; add++) for (let copy = 4; copy <= 6; copy++) table.push([add, copy]);
  }
  for (let mode = 6; mode < 9; mode++) for (let add = 1; add <= 4; add++) table.push([add, 4]);
  for (let mode = 0; mode < 9; mode++) table.push([4, 1]);
  return table;
})();

// Refuse instruction sizes that do not add up to the window: the decoder would
// otherwise execute a corrupted size as given.
function checkSizes(bytes, start, end, windowSize) {
  let total = 0;
  let pos = start;
  while (pos < end) {
    for (let size of CODE_SIZES[bytes[pos++]]) {
      if (size === 0) [size, pos] = readVarint(bytes, pos, end);
      total += size;
      if (total > windowSize) throw new CodecError("vcdiff instructions overrun the target window");
    }
  }
  if (total !== windowSize) {
    throw new CodecError(`vcdiff instructions rebuild ${total} bytes of a ${windowSize}-byte window`);
  }
}

/**
 * Values of a `sparse` part against `base` (an Int32Array; null for a keyframe,
 * which is the same layout against zeros): a bitmap of ceil(size/8) bytes, bit i
 * (LSB first) set when channel i changed, then one zigzag nibble varint of the
 * difference per set bit (3 value bits per nibble, bit 3 set on all but the last,
 * least significant group first), nibbles packed low nibble first, a zero nibble
 * padding an odd count.  Differences reach 33 bits, so they are Numbers.
 */
export function decodeSparse(base, payload, size) {
  const bytes = bytesOf(payload);
  const nbytes = (size + 7) >> 3;
  if (bytes.length < nbytes) {
    throw new CodecError(`sparse part of ${bytes.length} bytes is shorter than its bitmap`);
  }
  const out = new Int32Array(size);
  if (base !== null) {
    if (base.length !== size) throw new CodecError(`base holds ${base.length} values, expected ${size}`);
    out.set(base);
  }
  const end = 2 * bytes.length; // in nibbles
  let pos = 2 * nbytes;
  const nibbleAt = (at) => (at & 1 ? bytes[at >> 1] >> 4 : bytes[at >> 1] & 0xf);
  for (let i = 0; i < nbytes * 8; i++) {
    if (!(bytes[i >> 3] & (1 << (i & 7)))) continue;
    if (i >= size) throw new CodecError("sparse part has bitmap bits set past the group's channels");
    let z = 0;
    let scale = 1;
    let length = 0;
    for (;;) {
      if (pos >= end) throw new CodecError("sparse part has a truncated or missing varint");
      const nibble = nibbleAt(pos++);
      length++;
      if (length > MAX_NIBBLES) throw new CodecError("sparse part has an over-long varint");
      z += (nibble & 0x7) * scale;
      scale *= 8;
      if (nibble < 0x8) {
        if (length > 1 && nibble === 0) throw new CodecError("sparse part has a non-canonical varint");
        break;
      }
    }
    const d = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    if (d === 0) throw new CodecError("sparse part marks a channel changed by zero");
    const value = out[i] + d;
    if (value < MISSING || value > INT32_MAX) {
      throw new CodecError("sparse part leads to values outside int32 (wrong base?)");
    }
    out[i] = value;
  }
  if (end - pos > 1) throw new CodecError("sparse part has bytes left over after its varints");
  if (pos < end && nibbleAt(pos) !== 0) throw new CodecError("sparse part has a non-zero padding nibble");
  return out;
}

function readVarint(bytes, pos, end = bytes.length) {
  let value = 0;
  let scale = 1;
  for (let k = 0; k < 9; k++) {
    if (pos >= end) throw new CodecError("vcdiff delta is truncated inside a header field");
    const byte = bytes[pos++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if (byte < 0x80) return [value, pos];
  }
  throw new CodecError("vcdiff delta has an over-long varint");
}

/** Check a delta's file and window headers; returns the total target length. */
export function checkVcdiff(bytes, sourceSize) {
  if (bytes.length < 5 || VCDIFF_MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new CodecError("not a VCDIFF delta (bad magic or version)");
  }
  if (bytes[4] !== 0) {
    throw new CodecError(
      "VCDIFF header indicator is not 0: secondary compression, custom code tables and " +
        "application headers are not supported (encode with -S none -A)",
    );
  }
  let pos = 5;
  let targetSize = 0;
  let windows = 0;
  while (pos < bytes.length) {
    const indicator = bytes[pos++];
    // The Adler-32 extension (VCD_ADLER32) is refused: @ably/vcdiff-decoder mis-decodes it.
    if (indicator & ~VCD_SOURCE) {
      throw new CodecError(`VCDIFF window indicator ${indicator} is not supported`);
    }
    if (indicator & VCD_SOURCE) {
      let size, where;
      [size, pos] = readVarint(bytes, pos);
      [where, pos] = readVarint(bytes, pos);
      if (where + size > sourceSize) {
        throw new CodecError(`VCDIFF source segment ${where}+${size} exceeds the ${sourceSize}-byte base`);
      }
    }
    let length, windowSize;
    [length, pos] = readVarint(bytes, pos);
    const end = pos + length;
    if (end > bytes.length) throw new CodecError("vcdiff delta is truncated");
    [windowSize, pos] = readVarint(bytes, pos);
    if (pos >= end) throw new CodecError("vcdiff window is truncated");
    if (bytes[pos] !== 0) throw new CodecError("VCDIFF window uses secondary compression (encode with -S none)");
    let dataLength, instLength;
    [dataLength, pos] = readVarint(bytes, pos + 1, end);
    [instLength, pos] = readVarint(bytes, pos, end);
    [, pos] = readVarint(bytes, pos, end);
    pos += dataLength;
    if (pos + instLength > end) throw new CodecError("vcdiff window sections overrun the window");
    checkSizes(bytes, pos, pos + instLength, windowSize);
    targetSize += windowSize;
    windows++;
    pos = end;
  }
  if (windows === 0) throw new CodecError("vcdiff delta has no window");
  return targetSize;
}

/** Values of a `vcdiff` delta part (RFC 3284 of the byte planes) against `base`. */
export function decodeVcdiff(base, payload) {
  const decode = vcdiffDecode ?? globalThis.vcdiffDecoder?.decode;
  if (typeof decode !== "function") {
    throw new CodecError("no VCDIFF decoder: load @ably/vcdiff-decoder or call setVcdiffDecoder()");
  }
  const bytes = bytesOf(payload);
  const source = encodePlanes(base);
  const size = checkVcdiff(bytes, source.length);
  if (size !== source.length) {
    throw new CodecError(`vcdiff delta rebuilds ${size} bytes, expected ${source.length}`);
  }
  let target;
  try {
    target = decode(bytes, source);
  } catch (err) {
    throw new CodecError(`vcdiff delta does not decode: ${err.message ?? err}`);
  }
  if (target.length !== source.length) {
    throw new CodecError(`vcdiff delta rebuilt ${target.length} bytes, expected ${source.length}`);
  }
  return decodePlanes(target, base.length);
}

/** Values of a keyframe part of `codec` ("full", "sparse" or "vcdiff"). */
export function decodeKeyframe(codec, payload, size) {
  switch (codec) {
    case "full":
      return decodeFull(payload, size);
    case "sparse":
      return decodeSparse(null, payload, size);
    case "vcdiff":
      return decodePlanes(payload, size);
    default:
      throw new CodecError(`unknown codec ${codec}`);
  }
}

/** Values of a delta part of `codec` against `base` (Int32Array of the same group). */
export function decodeDelta(codec, base, payload) {
  switch (codec) {
    case "full":
      return decodeFull(payload, base.length);
    case "sparse":
      return decodeSparse(base, payload, base.length);
    case "vcdiff":
      return decodeVcdiff(base, payload);
    default:
      throw new CodecError(`unknown codec ${codec}`);
  }
}
