/**
 * Pools with a cache policy. A pool hands out buffers from its page source
 * at page granularity: every buffer owns whole pages (4 KiB or hugepages),
 * zeroed when handed out. Failed requests change nothing. Pure: no I/O.
 */
import { BufferdError } from '../protocol/errors.js';
import { formatSize } from '../protocol/units.js';
import type { PoolStatus } from '../protocol/status.js';
import type { PoolConfig } from './machine-config.js';
import { PAGE, type PhysicalMemory } from './physmem.js';
import type { PageSource, AcquireRequest } from './pagesource.js';
import type { CacheAttrTracker, HeldBlock } from './cacheattr.js';

/** A physically contiguous piece of a buffer. */
export interface Segment {
  addr: number;
  len: number;
}

export interface PhysBuffer {
  readonly id: number;
  readonly pool: Pool;
  /** Bytes asked for. */
  readonly size: number;
  readonly align: number;
  /** Bytes of pages the buffer keeps busy. */
  readonly footprint: number;
  /** The buffer's bytes, in order, as physical segments (empty until populated). */
  segments: Segment[];
  blocks: HeldBlock[];
  /** Hugepages reserved and not yet backing the buffer (populate: false). */
  reservedPages: number;
  readonly owner: number;
}

/** Largest single buffer: 64 GiB. */
export const MAX_BUFFER_BYTES = 64 * 2 ** 30;

export function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Segments covering `size` bytes of the given blocks, adjacent blocks merged. */
export function segmentsOf(blocks: HeldBlock[], size: number): Segment[] {
  const out: Segment[] = [];
  let left = size;
  for (const b of blocks) {
    if (left <= 0) break;
    const len = Math.min(left, b.npages * PAGE);
    const addr = b.pfn * PAGE;
    const last = out[out.length - 1];
    if (last !== undefined && last.addr + last.len === addr) last.len += len;
    else out.push({ addr, len });
    left -= len;
  }
  return out;
}

export class Pool {
  readonly name: string;
  private allocated_ = 0;
  private footprint_ = 0;
  private buffers_ = 0;
  private pagesHeld_ = 0;
  nmalloc = 0;
  ndalloc = 0;

  constructor(
    readonly cfg: PoolConfig,
    readonly source: PageSource,
    private readonly mem: PhysicalMemory,
    private readonly attrs: CacheAttrTracker,
  ) {
    this.name = cfg.name;
  }

  get pageSize(): number {
    return this.source.pageSize;
  }

  get maxAlign(): number {
    return this.pageSize === PAGE ? 2 ** 30 : this.pageSize;
  }

  /** Check size and alignment; EINVAL naming the field and the limit. */
  checkRequest(size: number, align: number): void {
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_BUFFER_BYTES) {
      throw new BufferdError('EINVAL', `field 'size' must be between 1 and ${MAX_BUFFER_BYTES} bytes (64 GiB) (got ${size})`);
    }
    if (!isPow2(align) || align > this.maxAlign) {
      throw new BufferdError(
        'EINVAL',
        `field 'align' must be a power of two of at most ${formatSize(this.maxAlign)} for pool '${this.name}' (got ${align})`,
      );
    }
  }

  private request(size: number, align: number): AcquireRequest {
    return { count: Math.ceil(size / this.pageSize), contiguous: this.cfg.contiguous, align };
  }

  private enomem(size: number, why: string, details: Record<string, unknown>): BufferdError {
    return new BufferdError('ENOMEM', `pool '${this.name}': cannot allocate ${formatSize(size)} (${size} bytes): ${why}`, {
      pool: this.name,
      requested: size,
      ...details,
    });
  }

  private checkLimit(size: number, footprint: number): void {
    const max = this.cfg.maxBytes;
    if (max !== null && this.footprint_ + footprint > max) {
      throw this.enomem(size, `the pool's limit maxBytes ${formatSize(max)} would be exceeded (${formatSize(this.footprint_)} in use)`, {
        maxBytes: max,
        inUse: this.footprint_,
      });
    }
  }

  /** Allocate a zeroed buffer. `populate: false` reserves hugepages and backs them on first use. */
  alloc(id: number, size: number, align: number, owner: number, populate = true): PhysBuffer {
    this.checkRequest(size, align);
    const req = this.request(size, align);
    const footprint = req.count * this.pageSize;
    this.checkLimit(size, footprint);
    let blocks: HeldBlock[] = [];
    let reserved = 0;
    if (!populate && this.source.reserve !== undefined && !this.cfg.contiguous) {
      if (!this.source.reserve(req.count)) {
        const s = this.source.shortfall(req);
        throw this.enomem(size, s.text, s.details);
      }
      reserved = req.count;
    } else {
      const got = this.source.acquire(req);
      if (got === null) {
        const s = this.source.shortfall(req);
        throw this.enomem(size, s.text, s.details);
      }
      blocks = got;
    }
    const buf: PhysBuffer = { id, pool: this, size, align, footprint, segments: [], blocks, reservedPages: reserved, owner };
    this.attach(buf);
    this.allocated_ += size;
    this.footprint_ += footprint;
    this.buffers_++;
    this.nmalloc++;
    return buf;
  }

  /** Back a buffer's reserved hugepages (first touch). */
  populate(buf: PhysBuffer): void {
    if (buf.reservedPages === 0) return;
    buf.blocks = this.source.takeReserved!(buf.reservedPages);
    buf.reservedPages = 0;
    this.attach(buf);
  }

  private attach(buf: PhysBuffer): void {
    for (const b of buf.blocks) {
      b.users++;
      this.pagesHeld_ += (b.npages * PAGE) / this.pageSize;
    }
    buf.segments = segmentsOf(buf.blocks, buf.size);
    // zeroed on allocation, whatever the pages held before
    for (const b of buf.blocks) this.mem.store.zeroPages(b.pfn, b.npages);
  }

  free(buf: PhysBuffer): void {
    for (const b of buf.blocks) {
      b.users--;
      this.pagesHeld_ -= (b.npages * PAGE) / this.pageSize;
      this.source.release(b);
    }
    if (buf.reservedPages > 0) this.source.unreserve!(buf.reservedPages);
    buf.blocks = [];
    buf.segments = [];
    buf.reservedPages = 0;
    this.allocated_ -= buf.size;
    this.footprint_ -= buf.footprint;
    this.buffers_--;
    this.ndalloc++;
  }

  /** Pages (of pageSize) the pool holds from the machine. */
  get pagesHeld(): number {
    return this.pagesHeld_;
  }

  status(): PoolStatus {
    const conv = this.attrs.stats(this.name);
    return {
      name: this.name,
      cache: this.cfg.cache,
      pageSize: this.pageSize,
      region: this.cfg.region,
      contiguous: this.cfg.contiguous,
      maxAddress: this.cfg.maxAddress,
      capability: this.cfg.capability,
      maxBytes: this.cfg.maxBytes,
      pages: this.pagesHeld,
      allocated: this.allocated_,
      active: this.footprint_,
      buffers: this.buffers_,
      nmalloc: this.nmalloc,
      ndalloc: this.ndalloc,
      conversions: conv.conversions,
      conversionCostUs: Math.round(conv.costNs / 1000),
    };
  }
}
