/**
 * The status object: the public contract of `status` and `bufctl status
 * --json`. Sizes and addresses are integers in bytes; times in milliseconds.
 * Later capabilities add members; none is ever removed or renamed.
 */
import type { CachePolicyName } from './attributes.js';
import type { FaultStatus } from './ops/inject.js';

export interface RegionStatus {
  name: string;
  kind: 'dram' | 'tcm' | 'carveout';
  base: number;
  size: number;
  free: number;
  /** Largest free buddy block, bytes (at most 4 MiB: MAX_PAGE_ORDER 10; longer free runs are free ranges). */
  largestFree: number;
  /** Free blocks per buddy order, as /proc/buddyinfo (index = order): 11 entries, orders 0..10. */
  freeByOrder: number[];
  /** Zones: split at 4 GiB (DMA32 / Normal) and at pools' address limits, lowest address first. */
  zones: ZoneStatus[];
}

/** One zone of a region: its own buddy allocator. */
export interface ZoneStatus {
  /** "REGION/DMA32" or "REGION/Normal" (".1", ".2" when a pool's maxAddress splits it further). */
  name: string;
  base: number;
  size: number;
  free: number;
  /** Free blocks per buddy order in this zone, as a /proc/buddyinfo line (index = order): 11 entries, orders 0..10. */
  freeByOrder: number[];
}

export interface HugepageStatus {
  /** Hugepage size in bytes (2 MiB or 1 GiB). */
  size: number;
  region: string;
  total: number;
  free: number;
  reserved: number;
  surplus: number;
  /** nr_hugepages: persistent pool size requested. */
  nr: number;
  /** nr_overcommit_hugepages. */
  overcommit: number;
  /** free − reserved. */
  available: number;
  /** total − free. */
  inUse: number;
  /** nr_hugepages last asked for (start-up or resize); `nr` is what was reached. */
  requested: number;
  /** Longest run of physically adjacent free hugepages. */
  largestFreeRun: number;
}

/** Allocator counters: a pool's totals (PoolStatus) and one arena's (ArenaStatus). */
export interface AllocatorCounters {
  /** Bytes handed out: usable sizes (size classes, whole pages for direct buffers). */
  allocated: number;
  /** Bytes of pages backing live allocations (slabs, large extents, direct pages). */
  active: number;
  /** Bytes of pages held from the page source. */
  mapped: number;
  /** Bytes physically backed: mapped minus hugepages only reserved (populate: false) and not yet touched. */
  resident: number;
  /** Bytes of empty chunks waiting for decay. */
  dirty: number;
  /** Free bytes inside chunks still in use. */
  retained: number;
  /** Allocator metadata, bytes (estimate). */
  metadata: number;
  purges: number;
  /** Buffers allocated / freed since start. */
  nmalloc: number;
  ndalloc: number;
}

export interface PoolStatus extends AllocatorCounters {
  name: string;
  cache: CachePolicyName;
  pageSize: number;
  region: string;
  contiguous: boolean;
  /** Highest physical address (exclusive) the pool may use, or null. */
  maxAddress: number | null;
  capability: string | null;
  maxBytes: number | null;
  /** "per-client" (one arena per client) or "shared". */
  arena: 'per-client' | 'shared';
  /** Decay time of empty chunks, ms (0 purges at once, −1 never). */
  dirtyDecayMs: number;
  /** Pages (of pageSize) the pool holds from the machine. */
  pages: number;
  /** Bytes asked for by live buffers. */
  requested: number;
  /** active / allocated (1 when empty). */
  fragmentation: number;
  arenas: number;
  buffers: number;
  /** Buffers served directly with whole pages (at or above the direct threshold). */
  directBuffers: number;
  /** Cache-policy conversions of this pool's pages (into its policy, and back to write-back). */
  conversions: number;
  /** Simulated cost of those conversions (clean + invalidate + TLB shootdown), microseconds. */
  conversionCostUs: number;
}

export interface ArenaStatus extends AllocatorCounters {
  id: number;
  /** Client id owning the arena (0: shared). */
  owner: number;
  chunks: number;
  purged: number;
  live: number;
}

export interface BinStatus {
  ind: number;
  size: number;
  nregs: number;
  slabSize: number;
  curregs: number;
  curslabs: number;
  nonfull: number;
  nmalloc: number;
  ndalloc: number;
}

/** `status {pool}`: one pool's arenas and bins (merged over arenas). */
export interface PoolDetail {
  name: string;
  directThreshold: number;
  arenas: ArenaStatus[];
  bins: BinStatus[];
}

export interface ClientStatus {
  id: number;
  name: string | null;
  handles: number;
  /** "anonymous", "cookie" or a token name. */
  principal: string;
  capabilities: string[];
  /** Usable bytes of live buffers this client allocated. */
  bytes: number;
  /** Its principal's quota use: usable bytes of live buffers allocated by all of the principal's connections (past ones included while their buffers live). */
  principalBytes: number;
  /** The principal's byte quota, or null. */
  maxBytes: number | null;
  connectedMs: number;
  /** Mappings and registrations it holds (counted with handles against maxHandles). */
  mappings: number;
  registrations: number;
  /** Whom it accepts handles from. */
  accept: 'any' | 'none' | (number | string)[];
  /** Violation and leak reports dropped because it was not reading. */
  eventsDropped: number;
  /** The connected process as the kernel tells it (SO_PEERCRED), null when it cannot be told. */
  pid: number | null;
  uid: number | null;
  gid: number | null;
}

export interface DriverStatus {
  name: string;
  /** "builtin" (from config) or "client" (a client attached as a driver). */
  kind: 'builtin' | 'client';
  /** Client id of a client driver, else null. */
  owner: number | null;
  description: string;
  coherent: boolean;
  iommu: boolean;
  /** Live registrations and their bytes. */
  registrations: number;
  bytes: number;
  /** IOVA space used / total, bytes (0 without an IOMMU). */
  iovaUsed: number;
  iovaTotal: number;
  /** Live IOMMU page-table entries by page size (bytes → count). */
  iommuEntries: Record<string, number>;
  /** swiotlb slots this device uses / slots in the bounce pool. */
  bounceSlots: { used: number; total: number };
  /** Registrations made, refused, and dropped as leaks since start. */
  registered: number;
  refused: number;
  leaks: number;
}

export interface Status {
  version: string;
  protocolVersion: number;
  pid: number;
  uptimeMs: number;
  socket: string;
  /** The dashboard's URL (`--http`), or null when it is off. */
  dashboard: string | null;
  memory: { total: number; free: number; regions: RegionStatus[] };
  hugepages: HugepageStatus[];
  pools: PoolStatus[];
  /** Machine-wide cache-policy conversions (pools and dissolved hugepages). */
  conversions: { total: number; bytes: number; costUs: number };
  clients: ClientStatus[];
  /** Live buffers and export tokens. */
  buffers: { live: number; tokensInFlight: number; tokensIssued: number; tokensImported: number; tokensExpired: number };
  drivers: DriverStatus[];
  /** The CPU cache model and the coherency checker. */
  coherency: {
    mode: 'off' | 'warn' | 'strict';
    prefetch: 'none' | 'always' | 'random';
    cache: { lineSize: number; cachedLines: number; dirtyLines: number; cleans: number; invalidates: number; prefetches: number; wcFlushes: number; wcPendingLines: number; evictions: number };
    violations: { total: number; byKind: Record<string, number> };
  };
  /** The live event bus: subscribers now, events published and subscribers dropped since start. */
  events: { subscribers: number; published: number; dropped: number };
  /** DMA: registrations leaked since start, and the swiotlb bounce pool (null when none). */
  dma: { leaks: number; bounce: { base: number; size: number; slots: number; used: number; full: number } | null };
  /** Fault injection: the armed points and the failures injected per point since start. */
  faults: FaultStatus;
  /** Present when status was asked with `pool`. */
  pool?: PoolDetail;
}
