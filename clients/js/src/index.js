// @slipstream/client: a fan's client of a Slipstream broadcast node, for browsers and
// node >= 20 (docs/clients.md).  `connect()` is the fan-app API; `Stream`, `StreamState`
// and `Catalogue` are the parts it is built from (the node's own pages use them).

import { decode as vcdiffDecode } from "@ably/vcdiff-decoder";
import { setVcdiffDecoder } from "./codecs.js";

setVcdiffDecoder(vcdiffDecode);

export { Client, connect, nodeUrls } from "./client.js";
export { CodecError, MISSING, decodeDelta, decodeKeyframe } from "./codecs.js";
export {
  Catalogue,
  FATAL_CLOSE_CODES,
  FATAL_STATUSES,
  Stream,
  StreamState,
  SUBPROTOCOL,
  decodeMessage,
  percentile,
  wsUrl,
} from "./stream.js";
