/**
 * The status object: the public contract of `status` and `bufctl status
 * --json`. Sizes and addresses are integers in bytes; times in milliseconds.
 * Later capabilities add members; none is ever removed or renamed.
 */

export interface RegionStatus {
  name: string;
  kind: 'dram' | 'tcm' | 'carveout';
  base: number;
  size: number;
  free: number;
  /** Largest physically contiguous free block, bytes. */
  largestFree: number;
  /** Free blocks per buddy order, as /proc/buddyinfo (index = order). */
  freeByOrder: number[];
  /** Zones: split at 4 GiB (DMA32 / Normal) and at pools' address limits. */
  zones: { name: string; base: number; size: number; free: number }[];
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

export interface PoolStatus {
  name: string;
  cache: 'writeback' | 'writecombine' | 'uncached';
  pageSize: number;
  region: string;
  contiguous: boolean;
  /** Highest physical address (exclusive) the pool may use, or null. */
  maxAddress: number | null;
  capability: string | null;
  maxBytes: number | null;
  /** Pages (of pageSize) the pool holds from the machine. */
  pages: number;
  /** Bytes handed out to buffers. */
  allocated: number;
  /** Bytes of pages backing live buffers. */
  active: number;
  buffers: number;
  /** Buffers allocated / freed since start. */
  nmalloc: number;
  ndalloc: number;
  /** Cache-policy conversions of this pool's pages (into its policy, and back to write-back). */
  conversions: number;
  /** Simulated cost of those conversions (clean + invalidate + TLB shootdown), microseconds. */
  conversionCostUs: number;
}

export interface ClientStatus {
  id: number;
  name: string | null;
  handles: number;
  connectedMs: number;
}

export interface DriverStatus {
  name: string;
  registrations: number;
}

export interface Status {
  version: string;
  protocolVersion: number;
  pid: number;
  uptimeMs: number;
  socket: string;
  memory: { total: number; free: number; regions: RegionStatus[] };
  hugepages: HugepageStatus[];
  pools: PoolStatus[];
  /** Machine-wide cache-policy conversions (pools and dissolved hugepages). */
  conversions: { total: number; bytes: number; costUs: number };
  clients: ClientStatus[];
  drivers: DriverStatus[];
}
