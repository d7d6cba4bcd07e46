// Types of @slipstream/client (docs/clients.md).

/** Where a fan is: the race and the last tick it applied. */
export interface Cursor {
  race: string;
  tick: number;
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "suspended" | "closed";
export type Transport = "ws" | "sse" | "poll";
export type Codec = "sparse" | "vcdiff" | "full";

/** One car's values at one tick, in channel units (null: no value). */
export interface Frame {
  race: string;
  tick: number;
  car: number;
  values: Record<string, number | null>;
}

/** A race-control event (flag, pit stop, lap, lead change...). */
export interface RaceEvent {
  race: string;
  tick: number;
  kind: string;
  t_ns: number;
  cars: number[];
  data: Record<string, unknown>;
}

/** Something the fan should know: a gap, a race change, a refused request. */
export interface Notice {
  code: string;
  message: string;
  race: string | null;
  from: number | null;
  to: number | null;
  error: boolean;
}

/** A connection state change; `refused` when the node refused (see `setToken`). */
export interface StateChange {
  state: ConnectionState;
  reason: string;
  transport: Transport | null;
  refused: boolean;
}

export type Item =
  | ({ type: "frame" } & Frame)
  | ({ type: "event" } & RaceEvent)
  | ({ type: "notice" } & Notice)
  | ({ type: "state" } & StateChange);

export interface Subscription {
  /** Car numbers; null: every car; []: none. */
  cars?: number[] | null;
  /** Channel group names (see /v1/channels); null: every group. */
  groups?: string[] | null;
  codec?: Codec | null;
}

export interface ConnectOptions extends Subscription {
  /** Access token (sent as ?token=); see `slipstream token`. */
  token?: string | null;
  /** Resume after this cursor (persist `client.cursor` to use it). */
  cursor?: Cursor | null;
  /** "auto" (default): WebSocket, then SSE, then long-poll, climbing back; or pin one. */
  transport?: "auto" | Transport;
  /** Reconnecting this long turns into `suspended` (default 30000). */
  suspendAfterMs?: number;
  /** On a lesser transport, try the WebSocket again this often (default 30000). */
  wsRetryMs?: number;
  /** Longest wait for a connection to answer (default 8000). */
  connectTimeoutMs?: number;
  /** A WebSocket constructor (default: the global one, else the `ws` package). */
  WebSocket?: unknown;
  /** Items held for a slow async iterator before the oldest are dropped (default 10000). */
  queueItems?: number;
  /** Keeps the cursor across page reloads, e.g. sessionStorage. */
  storage?: Pick<Storage, "getItem" | "setItem">;
  /** Key of the cursor in `storage` (default "client"). */
  name?: string;
}

export interface EventMap {
  frame: Frame;
  event: RaceEvent;
  notice: Notice;
  state: StateChange;
}

export declare class Client implements AsyncIterable<Item> {
  /** The last state and its reason. */
  readonly state: ConnectionState;
  readonly reason: string;
  readonly transport: Transport | null;
  /** Race and last tick applied, or the starting cursor, or null. */
  readonly cursor: Cursor | null;
  /** The node's reason when it refused, or null. */
  readonly refused: string | null;
  on<K extends keyof EventMap>(kind: K, listener: (item: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(kind: K, listener: (item: EventMap[K]) => void): void;
  /** Change the subscription on the same connection; resolves when the node acknowledged it. */
  subscribe(subscription: Subscription, options?: { timeoutMs?: number }): Promise<void>;
  /** Use a new token; a client suspended by a refusal connects again. */
  setToken(token: string | null): void;
  /** Close, telling the node (WebSocket close 1000); iterators end. */
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<Item>;
}

/** Connect to a node: `http(s)://host[:port][/base]` or `ws(s)://host[:port][/base]/ws`. */
export declare function connect(url: string, options?: ConnectOptions): Client;

/** The node's HTTP base URL and WebSocket URL. */
export declare function nodeUrls(url: string): { http: string; ws: string };

// -- lower level: the parts connect() is built from (the node's pages use them) --------

export declare const SUBPROTOCOL: "slipstream.v1";
export declare const FATAL_CLOSE_CODES: readonly number[];
export declare const FATAL_STATUSES: readonly number[];
export declare const MISSING: number;

export declare class CodecError extends Error {}

export declare function decodeKeyframe(codec: Codec, payload: Uint8Array, size: number): Int32Array;
export declare function decodeDelta(codec: Codec, base: Int32Array, payload: Uint8Array): Int32Array;
/** One server message (bytes) as an object: `{t: "tick", ...}`. */
export declare function decodeMessage(bytes: ArrayBuffer | Uint8Array): Record<string, unknown>;

export interface CatalogueRow {
  name: string;
  group: string;
  unit: string;
  min: number;
  max: number;
  resolution: number;
  agg: string;
  description: string;
  premium?: boolean;
}

export declare class Catalogue {
  constructor(rows: CatalogueRow[]);
  readonly rows: CatalogueRow[];
  readonly groups: { name: string; index: number; start: number; stop: number; size: number }[];
  static load(base?: string): Promise<Catalogue>;
}

export declare class StreamState {
  constructor(catalogue: Catalogue);
  readonly race: string | null;
  readonly tick: number;
  readonly needsKeyframe: boolean;
  applyTick(msg: Record<string, unknown>): Map<number, number[]>;
  value(car: number, name: string): number | null;
  cars(groupName: string): number[];
}

export declare class Stream {
  constructor(options: Record<string, unknown>);
  readonly status: ConnectionState | "idle";
  readonly transport: Transport;
  readonly refused: string | null;
  readonly state: StreamState;
  start(): void;
  close(): void;
  retry(): void;
  setCars(cars: number[] | null): void;
  setSubscription(subscription: Subscription): boolean;
  setToken(token: string | null): void;
}

export declare function percentile(values: number[], p: number): number | null;
export declare function wsUrl(loc?: { protocol: string; host: string; search?: string }): string;
