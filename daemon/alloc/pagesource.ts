/**
 * Where a pool's pages come from: the buddy allocator of its region (4 KiB
 * pools) or a hugepage pool (2 MiB and 1 GiB pools). A page source hands out
 * held blocks already converted to the pool's cache policy and takes them
 * back (converting 4 KiB pages back to write-back for the buddy allocator;
 * hugepages keep their policy in the hugepage pool). All or nothing: a
 * failed request changes nothing. Pure: no I/O.
 */
import type { CachePolicy } from '../memory/layout.js';

/** What a page source needs to know of the pool it feeds. */
export interface SourcePool {
  name: string;
  cache: CachePolicy;
  region: string;
  /** Exclusive upper bound on physical addresses, or null. */
  maxAddress: number | null;
}
import { PAGE, type Extent, type PhysicalMemory } from '../memory/physmem.js';
import type { HugepagePool } from '../memory/hugepages.js';
import { MAX_PAGE_ORDER } from '../memory/buddy.js';
import type { CacheAttrTracker, HeldBlock } from '../memory/cacheattr.js';
import { formatSize } from '../../protocol/units.js';
import { contigMissReason, type HolderOf } from './contigmiss.js';

export interface AcquireRequest {
  /** Pages of the source's page size. */
  count: number;
  contiguous: boolean;
  /** Alignment of the first page, in bytes (power of two). */
  align: number;
  /** Every page at or above this physical address (a placement request; 0: anywhere). */
  minAddress?: number;
}

const hex = (a: number) => `0x${a.toString(16)}`;

/** Why a request could not be met, in figures (for ENOMEM messages). */
export interface Shortfall {
  text: string;
  details: Record<string, number | string>;
}

export interface PageSource {
  /** Bytes per page handed out (4 KiB or the hugepage size). */
  readonly pageSize: number;
  acquire(req: AcquireRequest): HeldBlock[] | null;
  release(b: HeldBlock): void;
  /** Describe what is free, for the error message of a failed acquire. */
  shortfall(req: AcquireRequest): Shortfall;
  /** Reserve hugepages now, back them later (hugepage sources only). */
  reserve?(count: number): boolean;
  unreserve?(count: number): void;
  /** Take `count` previously reserved pages. */
  takeReserved?(count: number): HeldBlock[];
}

const fmt = formatSize;

export class BuddySource implements PageSource {
  readonly pageSize = PAGE;
  constructor(
    private readonly mem: PhysicalMemory,
    private readonly pool: SourcePool,
    private readonly attrs: CacheAttrTracker,
    private readonly holder: HolderOf = () => 'a page in use',
  ) {}

  acquire(req: AcquireRequest): HeldBlock[] | null {
    const alignPages = Math.max(1, req.align / PAGE);
    const { region, maxAddress } = this.pool;
    const min = req.minAddress ?? 0;
    if (req.contiguous) {
      const e = this.mem.allocContig(region, req.count, alignPages, maxAddress, min);
      if (e === null) return null;
      return [this.attrs.acquire(this.pool.name, this.pool.cache, e.pfn, e.npages, 'writeback')];
    }
    // scatter-gather, largest blocks first (PhysicalMemory.allocScatter). An
    // alignment above a page applies to the first block: up to the buddy's
    // largest order it is the first block's minimum order; beyond it the
    // first alignment's worth comes from the contiguous path.
    // Find every extent before converting any, so a shortfall costs nothing.
    let first: Extent | null = null;
    let left = req.count;
    let firstOrder = alignPages === 1 ? 0 : Math.log2(alignPages);
    if (firstOrder > MAX_PAGE_ORDER) {
      first = this.mem.allocContig(region, Math.min(alignPages, left), alignPages, maxAddress, min);
      if (first === null) return null;
      left -= first.npages;
      firstOrder = 0;
    }
    const rest = left > 0 ? this.mem.allocScatter(region, left, maxAddress, undefined, min, firstOrder) : [];
    if (rest === null) {
      if (first !== null) this.mem.freeExtent(first);
      return null;
    }
    const out: HeldBlock[] = [];
    if (first !== null) out.push(this.hold(first));
    for (const e of rest) out.push(this.hold(e));
    return out;
  }

  /** The pool holds an extent, converted from write-back to its policy. */
  private hold(e: Extent): HeldBlock {
    return this.attrs.acquire(this.pool.name, this.pool.cache, e.pfn, e.npages, 'writeback');
  }

  release(b: HeldBlock): void {
    this.attrs.release(b, 'writeback');
    this.mem.freeExtent({ pfn: b.pfn, npages: b.npages });
  }

  shortfall(req: AcquireRequest): Shortfall {
    const { region, maxAddress } = this.pool;
    const min = req.minAddress ?? 0;
    const free = this.mem.freePagesFor(region, maxAddress, min) * PAGE;
    const largest = this.mem.largestFreeFor(region, maxAddress, min) * PAGE;
    const where = `region '${region}'${min > 0 ? ` at or above ${hex(min)}` : ''}${maxAddress !== null ? ` below ${hex(maxAddress)}` : ''}`;
    const miss = req.contiguous ? contigMissReason(this.mem, this.holder, { region, npages: req.count, alignPages: Math.max(1, req.align / PAGE), maxAddress, minAddress: min }) : null;
    if (miss !== null) {
      return {
        text: `${fmt(free)} free in ${where}, but ${miss.text}`,
        details: { free, largestFree: largest, requestedPages: req.count, ...miss.details, ...(min > 0 ? { minAddress: min } : {}) },
      };
    }
    return {
      text: `${fmt(free)} free in ${where}, largest contiguous free block ${fmt(largest)}`,
      details: { free, largestFree: largest, requestedPages: req.count, ...(min > 0 ? { minAddress: min } : {}) },
    };
  }
}

export class HugeSource implements PageSource {
  readonly pageSize: number;
  constructor(
    private readonly hp: HugepagePool,
    private readonly pool: SourcePool,
    private readonly attrs: CacheAttrTracker,
  ) {
    this.pageSize = hp.size;
  }

  private hold(pfn: number, attr: CachePolicy): HeldBlock {
    return this.attrs.acquire(this.pool.name, this.pool.cache, pfn, this.hp.size / PAGE, attr, this.hp.size);
  }

  acquire(req: AcquireRequest): HeldBlock[] | null {
    if (req.align > this.hp.size && req.count > 0) return null;
    const pages = this.hp.reserveAndTake(req.count, req.contiguous, this.pool.cache, req.minAddress ?? 0);
    if (pages === null) return null;
    return pages.map((p) => this.hold(p.pfn, p.attr));
  }

  reserve(count: number): boolean {
    return this.hp.reserve(count);
  }

  unreserve(count: number): void {
    this.hp.unreserve(count);
  }

  takeReserved(count: number): HeldBlock[] {
    const pages = this.hp.take(count, false, this.pool.cache)!;
    return pages.map((p) => this.hold(p.pfn, p.attr));
  }

  release(b: HeldBlock): void {
    // the hugepage keeps this pool's policy while it waits in the hugepage pool
    const attr = b.attr;
    this.attrs.release(b, attr);
    this.hp.put(b.pfn, attr);
  }

  shortfall(req: AcquireRequest): Shortfall {
    const s = this.hp.status();
    const size = fmt(this.hp.size);
    const surplusRoom = Math.max(0, s.overcommit - s.surplus);
    const min = req.minAddress ?? 0;
    return {
      text:
        `${s.available} of ${s.total} ${size} hugepages available (free ${s.free}, reserved ${s.reserved}, ` +
        `surplus ${s.surplus} of overcommit ${s.overcommit})` +
        (min > 0 ? `, ${this.hp.freeFrom(min)} of the free ones at or above ${hex(min)}` : '') +
        (req.contiguous ? `, longest run of adjacent free hugepages ${s.largestFreeRun}` : '') +
        (surplusRoom > 0 ? `, up to ${surplusRoom} more as surplus if region '${s.region}' has contiguous ${size} blocks` : ''),
      details: {
        hugepagesFree: s.free,
        hugepagesReserved: s.reserved,
        hugepagesAvailable: s.available,
        hugepagesTotal: s.total,
        largestFreeRun: s.largestFreeRun,
        hugepagesSurplus: s.surplus,
        hugepagesOvercommit: s.overcommit,
        requestedHugepages: req.count,
        ...(min > 0 ? { minAddress: min, hugepagesFreeAbove: this.hp.freeFrom(min) } : {}),
      },
    };
  }
}
