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
}

export interface PoolStatus {
  name: string;
  cache: 'writeback' | 'writecombine' | 'uncached';
  pageSize: number;
  region: string;
  contiguous: boolean;
  capability: string | null;
  maxBytes: number | null;
  /** Pages (of pageSize) the pool holds from the machine. */
  pages: number;
  /** Bytes handed out to buffers. */
  allocated: number;
  /** Bytes of pages backing live buffers. */
  active: number;
  buffers: number;
  /** Pages converted from another cache policy before use. */
  conversions: number;
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
  clients: ClientStatus[];
  drivers: DriverStatus[];
}
