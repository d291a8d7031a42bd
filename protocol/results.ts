/**
 * Result types of each op and the shapes of responses and events.
 */
import type { WireError } from './errors.js';
import type { OpName } from './requests.js';
import type { Status, PoolStatus, HugepageStatus } from './status.js';

export interface ServerLimits {
  /** Largest frame body the daemon accepts, bytes. */
  maxFrameBytes: number;
  /** Largest `data` the daemon accepts in one request, bytes. */
  maxDataBytes: number;
  /** Handles one connection may hold. */
  maxHandles: number;
}

export interface HelloResult {
  clientId: number;
  name: string | null;
  protocolVersion: number;
  server: { name: 'bufferd'; version: string; pid: number };
  limits: ServerLimits;
  capabilities: string[];
  /** Who the client authenticated as: "anonymous", "cookie" (the local admin) or a token's name. */
  principal: string;
  /** Byte quota, or null. */
  maxBytes: number | null;
}

export interface PingResult {
  /** Daemon's monotonic clock, milliseconds since it started. */
  uptimeMs: number;
}

/** A physically contiguous piece of a buffer: its bytes [offset, offset+len) live at addr. */
export interface SegmentInfo {
  addr: number;
  len: number;
}

export type CachePolicyName = 'writeback' | 'writecombine' | 'uncached';

export interface BufferInfo {
  /** Daemon-wide buffer id. */
  buffer: number;
  pool: string;
  cache: CachePolicyName;
  /** Page size of the pool (4 KiB, 2 MiB or 1 GiB). */
  pageSize: number;
  region: string;
  /** Bytes asked for. */
  size: number;
  align: number;
  /** Usable bytes: the size class, or whole pages for direct buffers. */
  usize: number;
  /** How the pool served it: a slab region, a large extent, or whole pages. */
  kind: 'small' | 'large' | 'direct';
  /** Physical segments in buffer order; empty while hugepages are only reserved. */
  segments: SegmentInfo[];
  contiguous: boolean;
  populated: boolean;
  /** Hugepages reserved for the buffer and not yet backing it. */
  reservedHugepages: number;
  /** Client id of the allocating client. */
  owner: number;
}

export type RightName = 'read' | 'write' | 'share';

/** A handle and its buffer (alloc, info, import). */
export interface HandleInfo extends BufferInfo {
  handle: number;
  rights: RightName[];
  /** References keeping the buffer alive, by kind. */
  refs: { handles: number; inflight: number; registrations: number; mappings: number };
  /** Clients holding handles on the buffer. */
  holders: number;
  /** Client id that allocated the buffer. */
  creator: number;
}

export interface BufferListing {
  buffer: number;
  pool: string;
  cache: CachePolicyName;
  size: number;
  usize: number;
  kind: 'small' | 'large' | 'direct';
  creator: number;
  holders: { client: number; name: string | null; handles: number }[];
  refs: { handles: number; inflight: number; registrations: number; mappings: number };
}

export interface HandleEvent {
  event: 'handle';
  /** The new handle number in the receiver's table. */
  handle: number;
  rights: RightName[];
  from: { id: number; name: string | null };
  buffer: number;
  size: number;
  pool: string;
  cache: CachePolicyName;
}

export interface HugepagesSetResult {
  /** Hugepage size in bytes. */
  size: number;
  /** nr_hugepages asked for. */
  requested: number;
  /** Persistent pages reached (less than requested when memory ran short). */
  reached: number;
  overcommit: number;
  status: HugepageStatus;
}

export interface Results {
  hello: HelloResult;
  ping: PingResult;
  status: Status;
  pools: { pools: PoolStatus[] };
  alloc: HandleInfo;
  info: HandleInfo;
  dup: { handle: number; rights: RightName[] };
  close: { handle: number; closed: true };
  send: { to: number; toName: string | null; rights: RightName[] };
  export: { token: string; expiresInMs: number; rights: RightName[] };
  import: HandleInfo;
  buffers: { buffers: BufferListing[] };
  'hugepages.set': HugepagesSetResult;
  write: { written: number };
  read: { data: Uint8Array };
}

export type ResultOf<K extends OpName> = K extends keyof Results ? Results[K] : never;

/** A response: same `id` as the request, and `result` or `error`. */
export type Response =
  | { id: number; result: unknown }
  | { id: number | null; error: WireError };

export interface ShutdownEvent {
  event: 'shutdown';
  reason: string;
}

/** Events are pushed by the daemon and carry `event` instead of `id`. */
export type DaemonEvent = ShutdownEvent | HandleEvent;

export type EventName = DaemonEvent['event'];
