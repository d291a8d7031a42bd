/**
 * Cache attributes of physical pages and the no-aliasing rule: a physical
 * page carries exactly one cache policy at a time.
 *
 * Pages free in the buddy allocator are write-back (the kernel's linear
 * map). Free hugepages keep the policy they last had. Pages held by a pool
 * carry the pool's policy. Moving pages between policies is an explicit,
 * counted conversion with a simulated flush cost (clean + invalidate every
 * line, then a TLB shootdown), and it is refused while any buffer or mapping
 * still uses the pages. Pure: no I/O.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { CachePolicy } from './layout.js';
import { PAGE } from './physmem.js';
import { IntMap } from '../lib/intset.js';

/** Simulated cost model of one conversion. */
export const CACHE_LINE = 64;
export const FLUSH_NS_PER_LINE = 2;
export const TLB_SHOOTDOWN_NS = 5000;

export function conversionCostNs(bytes: number): number {
  return (bytes / CACHE_LINE) * FLUSH_NS_PER_LINE + TLB_SHOOTDOWN_NS;
}

/** Pages a pool holds: one buddy extent or one hugepage. */
export interface HeldBlock {
  pfn: number;
  npages: number;
  attr: CachePolicy;
  pool: string;
  /** Buffers and mappings using pages of this block. */
  users: number;
  /** Hugepage size when the block is a hugepage, else 0. */
  hugeSize: number;
}

export interface ConversionStats {
  conversions: number;
  convertedBytes: number;
  costNs: number;
}

export class CacheAttrTracker {
  /** By first pfn (IntMap: a pool takes and gives back the same blocks over and over, where V8's Map slows down). */
  private readonly held = new IntMap<HeldBlock>();
  readonly total: ConversionStats = { conversions: 0, convertedBytes: 0, costNs: 0 };
  private readonly perPool = new Map<string, ConversionStats>();

  stats(pool: string): ConversionStats {
    let s = this.perPool.get(pool);
    if (s === undefined) {
      s = { conversions: 0, convertedBytes: 0, costNs: 0 };
      this.perPool.set(pool, s);
    }
    return s;
  }

  private count(pool: string, bytes: number): void {
    const cost = conversionCostNs(bytes);
    for (const s of [this.total, this.stats(pool)]) {
      s.conversions++;
      s.convertedBytes += bytes;
      s.costNs += cost;
    }
  }

  /**
   * A pool takes pages that currently carry `current`; they are converted to
   * the pool's policy when it differs. Returns the held block.
   */
  acquire(pool: string, policy: CachePolicy, pfn: number, npages: number, current: CachePolicy, hugeSize = 0): HeldBlock {
    if (this.held.has(pfn)) throw new BufferdError('EBUSY', `page frame ${pfn} is already held by pool '${this.held.get(pfn)!.pool}'`);
    const b: HeldBlock = { pfn, npages, attr: current, pool, users: 0, hugeSize };
    this.held.set(pfn, b);
    if (current !== policy) this.convert(b, policy);
    return b;
  }

  /** Change a held block's policy. Refused while anything uses its pages. */
  convert(b: HeldBlock, to: CachePolicy): void {
    if (b.attr === to) return;
    if (b.users > 0) {
      throw new BufferdError(
        'EBUSY',
        `cannot convert ${b.npages * PAGE} bytes at 0x${(b.pfn * PAGE).toString(16)} from ${b.attr} to ${to}: ` +
          `${b.users} buffer(s) or mapping(s) still use the pages (one physical page never carries two cache attributes)`,
      );
    }
    this.count(b.pool, b.npages * PAGE);
    b.attr = to;
  }

  /**
   * Cut an unused 4 KiB block after `npages` pages: `b` keeps the head, the
   * tail comes back as a block of its own with the same policy (no
   * conversion: the pages keep their attribute).
   */
  split(b: HeldBlock, npages: number): HeldBlock {
    if (b.users > 0 || b.hugeSize > 0 || !(npages > 0 && npages < b.npages)) {
      throw new RangeError(`cannot split block at pfn ${b.pfn} (${b.npages} pages, ${b.users} users) after ${npages} pages`);
    }
    const tail: HeldBlock = { pfn: b.pfn + npages, npages: b.npages - npages, attr: b.attr, pool: b.pool, users: 0, hugeSize: 0 };
    this.held.set(tail.pfn, tail);
    b.npages = npages;
    return tail;
  }

  /** The pool gives the block up; it leaves carrying `to` (write-back for the buddy allocator). */
  release(b: HeldBlock, to: CachePolicy): void {
    if (b.users > 0) throw new BufferdError('EBUSY', `block at pfn ${b.pfn} released while in use`);
    this.convert(b, to);
    this.held.delete(b.pfn);
  }

  /** A hugepage dissolved back to the buddy allocator while carrying `attr`. */
  dissolve(_pfn: number, npages: number, attr: CachePolicy): void {
    if (attr !== 'writeback') this.count('(hugetlb)', npages * PAGE);
  }

  heldBlocks(): IterableIterator<HeldBlock> {
    return this.held.valuesIter();
  }

  get heldCount(): number {
    return this.held.size;
  }
}
