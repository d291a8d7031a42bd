/**
 * The free list of a hugepage pool: free hugepages in address order, each
 * with the cache attribute it last carried (free hugepages keep it, so a
 * pool with the same policy takes them without conversion).
 *
 * One hierarchical bitmap (lib/bittree.ts) per cache policy over the
 * region's hugepage-aligned positions, and one of them all: taking n pages
 * that carry a policy, the lowest first, is n lookups of the policy's
 * bitmap — not a walk over every free page — and a freed page goes back in
 * O(1), with no array to shift. hugetlb keeps a list per node
 * (hugepage_freelists, mm/hugetlb.c enqueue_hugetlb_folio /
 * dequeue_hugetlb_folio_node_exact); bufferd orders it by address so
 * results are deterministic. Pure: no I/O.
 */
import { BitTree } from '../lib/bittree.js';
import { CACHE_POLICIES, type CachePolicy } from './layout.js';

/** A hugepage taken from the pool: its first pfn and the attribute it carries. */
export interface Hugepage {
  pfn: number;
  attr: CachePolicy;
}

export class HugeFreeList {
  /** Position of pfn p: p / pagesPer − base. */
  private readonly base: number;
  private readonly all: BitTree;
  /** One per policy, in CACHE_POLICIES order. */
  private readonly byAttr: BitTree[] = [];

  /** Free hugepages of `pagesPer` pages among the page frames [startPfn, endPfn). */
  constructor(
    startPfn: number,
    endPfn: number,
    private readonly pagesPer: number,
  ) {
    this.base = Math.floor(startPfn / pagesPer);
    const n = Math.max(0, Math.ceil(endPfn / pagesPer) - this.base);
    this.all = new BitTree(n);
    for (let k = 0; k < CACHE_POLICIES.length; k++) this.byAttr.push(new BitTree(n));
  }

  get size(): number {
    return this.all.size;
  }

  private pos(pfn: number): number {
    return pfn / this.pagesPer - this.base;
  }

  private pfnAt(i: number): number {
    return i < 0 ? -1 : (i + this.base) * this.pagesPer;
  }

  add(pfn: number, attr: CachePolicy): void {
    const i = this.pos(pfn);
    if (!this.all.add(i)) throw new RangeError(`hugepage at pfn ${pfn} is already free`);
    this.byAttr[CACHE_POLICIES.indexOf(attr)]!.add(i);
  }

  /** Take a free page off the list; its attribute. */
  remove(pfn: number): CachePolicy {
    const i = this.pos(pfn);
    if (!this.all.delete(i)) throw new RangeError(`hugepage at pfn ${pfn} is not free`);
    for (let k = 0; k < this.byAttr.length; k++) if (this.byAttr[k]!.delete(i)) return CACHE_POLICIES[k]!;
    throw new RangeError(`hugepage at pfn ${pfn} had no attribute`);
  }

  /** The lowest free page at or above pfn, or −1. */
  next(pfn: number): number {
    return this.pfnAt(this.all.next(Math.max(0, Math.ceil(pfn / this.pagesPer) - this.base)));
  }

  /** The highest free page, or −1. */
  last(): number {
    return this.pfnAt(this.all.last());
  }

  /** Free pages at or above pfn. */
  countFrom(pfn: number): number {
    if (pfn <= this.base * this.pagesPer) return this.all.size;
    let n = 0;
    for (let p = this.next(pfn); p >= 0; p = this.next(p + this.pagesPer)) n++;
    return n;
  }

  /**
   * n pages at or above minPfn, taken off the list: those carrying `prefer`
   * first, lowest first, then the lowest of the others. The caller knows
   * at least n lie there.
   */
  takeLowest(n: number, prefer: CachePolicy, minPfn: number): Hugepage[] {
    const out: Hugepage[] = [];
    const pref = this.byAttr[CACHE_POLICIES.indexOf(prefer)]!;
    const from = Math.max(0, Math.ceil(minPfn / this.pagesPer) - this.base);
    for (let i = pref.next(from); i >= 0 && out.length < n; i = pref.next(i + 1)) out.push({ pfn: this.pfnAt(i), attr: prefer });
    // (the preferred ones go first, so the rest of the walk sees only the others)
    for (const p of out) this.remove(p.pfn);
    for (let i = this.all.next(from); i >= 0 && out.length < n; i = this.all.next(i + 1)) {
      const pfn = this.pfnAt(i);
      out.push({ pfn, attr: this.remove(pfn) });
    }
    return out;
  }

  /** The first pfn of the lowest run of n adjacent free pages at or above minPfn, or −1. */
  findRun(n: number, minPfn: number): number {
    let start = -1;
    let len = 0;
    for (let p = this.next(minPfn); p >= 0; p = this.next(p + this.pagesPer)) {
      if (len > 0 && p === start + len * this.pagesPer) len++;
      else {
        start = p;
        len = 1;
      }
      if (len >= n) return start;
    }
    return -1;
  }

  /** Pages in the longest run of adjacent free pages. */
  largestRun(): number {
    let best = 0;
    let len = 0;
    let prev = -1;
    for (let p = this.next(0); p >= 0; p = this.next(p + this.pagesPer)) {
      len = prev >= 0 && p === prev + this.pagesPer ? len + 1 : 1;
      best = Math.max(best, len);
      prev = p;
    }
    return best;
  }

  /** Free pages in address order, with their attributes. */
  pages(): Hugepage[] {
    const out: Hugepage[] = [];
    for (const i of this.all) {
      let attr: CachePolicy = 'writeback';
      for (let k = 0; k < this.byAttr.length; k++) if (this.byAttr[k]!.has(i)) attr = CACHE_POLICIES[k]!;
      out.push({ pfn: this.pfnAt(i), attr });
    }
    return out;
  }
}
