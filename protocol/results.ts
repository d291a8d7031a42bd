/**
 * Result types of each op and the shapes of responses and events.
 */
import type { WireError } from './errors.js';
import type { OpName } from './requests.js';
import type { RecordInfo } from './ops/record.js';
export type { RecordInfo } from './ops/record.js';
import type { Status, PoolStatus, HugepageStatus, DriverStatus } from './status.js';
import type { InjectResults } from './ops/inject.js';
import type { HistoryResult, GraphResult } from './ops/history.js';

export interface ServerLimits {
  /** Largest frame body the daemon accepts, bytes. */
  maxFrameBytes: number;
  /** Largest `data` the daemon accepts in one request, bytes. */
  maxDataBytes: number;
  /** Handles, mappings and registrations one connection may hold together. */
  maxHandles: number;
  /** Of those, slots kept for the connection's own use: handles it did not ask for never take them. */
  reservedHandles: number;
  /** Tokens the principal may have in flight at once (over all its connections). */
  maxTokens: number;
}

/** Whom a client accepts handles from. */
export type AcceptFrom = 'any' | 'none' | (number | string)[];

export interface HelloResult {
  clientId: number;
  name: string | null;
  protocolVersion: number;
  server: { name: 'bufferd'; version: string; pid: number };
  limits: ServerLimits;
  capabilities: string[];
  /** Who the client authenticated as: "anonymous", "cookie" (the local admin) or a token's name. */
  principal: string;
  /** Byte quota of the principal (shared by all its connections), or null. */
  maxBytes: number | null;
  /** Whom this client accepts handles from (hello's `accept`, default "none"). */
  accept: AcceptFrom;
  /** Where file descriptors are exchanged (PROTOCOL §12), or null when the daemon has no shared memory. */
  fdSocket: string | null;
  /** This process as the daemon sees it (SO_PEERCRED), or null when it cannot tell. */
  peer: { pid: number; uid: number; gid: number } | null;
}

export interface PingResult {
  /** Daemon's monotonic clock, milliseconds since it started. */
  uptimeMs: number;
}

/** A physically contiguous piece of a buffer: its bytes [offset, offset+len) live at addr. */
export interface SegmentInfo {
  addr: number;
  len: number;
  /** Byte offset in the buffer: given (in `info`) only while a populate: false buffer is partly backed, its segments then being the backed hugepages only. */
  offset?: number;
}

import type { CachePolicyName, MergedAttributes, Mismatch, Constraints } from './attributes.js';
export type { CachePolicyName };

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
  /** Hugepages backing a direct buffer of a 2 MiB or 1 GiB pool (0 otherwise); with populate: false, the ones faulted in so far. */
  backedHugepages: number;
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
  /** For alloc {for}: which drivers, which pool and why. */
  placement: { for: string[]; pool: string; reason: string } | null;
  /** Drivers the buffer is registered with. */
  registrations: string[];
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
  /** The drivers it is registered with: where the device sees it, who registered it, bytes reached through bounce slots. */
  registrations: { driver: string; deviceAddress: number; registrant: number; bounced: number; direction: 'bidirectional' | 'to-device' | 'from-device' }[];
  /** Export tokens holding it until imported or expired: who exported it, the rights passed, time left. */
  tokens: { from: { id: number; name: string | null }; rights: RightName[]; expiresInMs: number }[];
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

export interface RegistrationInfo {
  driver: string;
  buffer: number;
  /** Device address of the buffer's first byte. */
  deviceAddress: number;
  /** The buffer as the device sees it: device addresses, buffer order. */
  segments: SegmentInfo[];
  /** IOMMU page-table entries this registration uses, by page size (null without an IOMMU). */
  iommu: { entries: Record<string, number>; iova: number; iovaSize: number } | null;
  /** Bytes the device reaches through swiotlb bounce slots (0: none). */
  bounced: number;
  /** The DMA direction it was mapped with. */
  direction: 'bidirectional' | 'to-device' | 'from-device';
}

export interface MergeResult {
  merged: MergedAttributes;
  pools: { name: string; fits: boolean; allowed: boolean; misfits: Mismatch[] }[];
}

export interface ViolationInfo {
  seq: number;
  timeMs: number;
  kind: string;
  client: { id: number; name: string | null };
  buffer: number;
  driver: string | null;
  op: string;
  range: { offset: number; length: number };
  mode: 'off' | 'warn' | 'strict';
  message: string;
}

export interface ViolationEvent extends ViolationInfo {
  event: 'violation';
}

export interface ReloadInfo {
  source: string;
  /** What changed. */
  applied: string[];
  /** What needs a restart (the running values stay). */
  ignored: string[];
}

/** Something happened (a subscribed topic). */
export interface ActivityEvent {
  event: 'activity';
  topic: string;
  kind: string;
  timeMs: number;
  [field: string]: unknown;
}

export interface SnapshotEvent {
  event: 'snapshot';
  timeMs: number;
  status: Status;
}

/** The daemon stopped this connection's subscription (it read too slowly). */
export interface SubscriptionDroppedEvent {
  event: 'subscription-dropped';
  reason: string;
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
  /** Why fewer pages than requested were reached (absent when all were): no free 2 MiB buddy block, or for 1 GiB pages no free contiguous range (alloc_contig_pages). */
  reason?: string;
}

export interface Results extends InjectResults {
  hello: HelloResult;
  ping: PingResult;
  status: Status;
  pools: { pools: PoolStatus[] };
  alloc: HandleInfo;
  info: HandleInfo;
  accept: { accept: AcceptFrom };
  dup: { handle: number; rights: RightName[] };
  close: { handle: number; closed: true };
  send: { to: number; toName: string | null; rights: RightName[] };
  export: { token: string; expiresInMs: number; rights: RightName[] };
  import: HandleInfo;
  buffers: { buffers: BufferListing[]; more: boolean };
  drivers: { drivers: DriverStatus[] };
  constraints: { driver: string; kind: 'builtin' | 'client'; description: string; constraints: Constraints };
  merge: MergeResult;
  register: RegistrationInfo;
  unregister: { driver: string; buffer: number; unregistered: true };
  'driver.attach': { name: string; constraints: Constraints };
  'driver.detach': { name: string; leaks: number };
  'device.write': { written: number };
  'device.read': { data: Uint8Array };
  'device.fill': { filled: number };
  'device.copy': { copied: number };
  sync: { phase: 'start' | 'end'; access: 'read' | 'write' | 'rw'; cleaned: number; invalidated: number; flushed: number };
  map: { mapping: number; cache: CachePolicyName; size: number; rights: RightName[]; bytes: number; fd: boolean };
  exportFd: { buffer: number; size: number; bytes: number; rights: RightName[]; readOnly: boolean };
  importFd: HandleInfo;
  unmap: { mapping: number; unmapped: true };
  fence: { flushed: number };
  violations: { mode: 'off' | 'warn' | 'strict'; total: number; byKind: Record<string, number>; violations: ViolationInfo[] };
  subscribe: { topics: string[]; intervalMs: number };
  unsubscribe: { unsubscribed: boolean };
  reload: ReloadInfo;
  'hugepages.set': HugepagesSetResult;
  write: { written: number };
  read: { data: Uint8Array };
  history: HistoryResult;
  graph: GraphResult;
  record: RecordInfo;
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

/** A client driver got a registration: `handle` is new in its table. */
export interface RegistrationEvent {
  event: 'registration';
  driver: string;
  handle: number;
  buffer: number;
  size: number;
  deviceAddress: number;
  segments: SegmentInfo[];
  registrant: number;
  rights: RightName[];
  /** The DMA direction the buffer was registered with. */
  direction: 'bidirectional' | 'to-device' | 'from-device';
}

export interface UnregistrationEvent {
  event: 'unregistration';
  driver: string;
  handle: number;
  buffer: number;
  /** The daemon closed the handle (false: the driver had closed it already). */
  closed: boolean;
}

/** A registration was dropped without unregister (driver detached, registrant gone). */
export interface LeakEvent {
  event: 'leak';
  driver: string;
  buffer: number;
  registrant: number;
  reason: string;
}

/** Events are pushed by the daemon and carry `event` instead of `id`. */
export type DaemonEvent = ShutdownEvent | HandleEvent | RegistrationEvent | UnregistrationEvent | LeakEvent | ViolationEvent | ActivityEvent | SnapshotEvent | SubscriptionDroppedEvent;

export type EventName = DaemonEvent['event'];
