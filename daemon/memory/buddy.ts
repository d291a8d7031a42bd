/**
 * A binary buddy allocator over one zone of page frames, as Linux's
 * page allocator: free lists per order, blocks of 2^order pages naturally
 * aligned by physical page frame number, split on allocation and merged
 * with their buddy (pfn ^ 2^order) on free.
 *
 * Selection is lowest address first within the smallest order that fits,
 * which keeps results deterministic and low memory compact. Each order's
 * free list is a hierarchical bitmap of the order's aligned positions
 * (lib/bittree.ts): the lowest free block, or the lowest at or above a page
 * frame, in a few word reads. Pure: no I/O.
 */
import { BitTree } from '../lib/bittree.js';

/**
 * The largest buddy order of physical memory: MAX_PAGE_ORDER in
 * include/linux/mmzone.h (10 by default, 4 MiB blocks with 4 KiB pages), so
 * /proc/buddyinfo has 11 columns. Larger physically contiguous runs come
 * from alloc_contig_range (contig.ts), not from the buddy free lists.
 */
export const MAX_PAGE_ORDER = 10;

/** 2^i for i in 0..63 (a table: `2 ** i` and `%` on doubles are library calls on the hot path). */
const POW: readonly number[] = Array.from({ length: 64 }, (_, i) => 2 ** i);

/** Is pfn a multiple of size (a power of two)? */
function isAligned(pfn: number, size: number): boolean {
  return Math.floor(pfn / size) * size === pfn;
}

export interface Block {
  pfn: number;
  order: number;
}

/** Trailing zero bits of a non-negative integer below 2^53 (53 for 0). */
export function ctz(x: number): number {
  if (x === 0) return 53;
  // (x >>> 0 is x mod 2^32 for any integer below 2^53, without a library call for %)
  const lo = x >>> 0;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Math.floor(x / 0x1_0000_0000);
  return 32 + (31 - Math.clz32(hi & -hi));
}

/** floor(log2(x)) for x ≥ 1 below 2^53. */
export function floorLog2(x: number): number {
  if (x < 0x1_0000_0000) return 31 - Math.clz32(x);
  return 32 + (31 - Math.clz32(Math.floor(x / 0x1_0000_0000)));
}

export class BuddyAllocator {
  readonly startPfn: number;
  readonly endPfn: number;
  readonly maxOrder: number;
  /**
   * Free block heads per order: position i of order o is the block at pfn
   * (base[o] + i) × 2^o. (A bitmap, not V8's Set: the Set slows down when the
   * same pfn is taken and given back over and over, and has no lowest.)
   */
  private readonly lists: BitTree[] = [];
  /** First aligned position of each order: ⌊startPfn / 2^o⌋. */
  private readonly base: number[] = [];
  private free_ = 0;

  constructor(startPfn: number, npages: number, maxOrder?: number) {
    if (!Number.isSafeInteger(startPfn) || startPfn < 0 || !Number.isSafeInteger(npages) || npages <= 0) {
      throw new RangeError(`bad zone [${startPfn}, +${npages})`);
    }
    this.startPfn = startPfn;
    this.endPfn = startPfn + npages;
    this.maxOrder = Math.min(maxOrder ?? Math.floor(Math.log2(npages)), 40);
    for (let o = 0; o <= this.maxOrder; o++) {
      const b = Math.floor(startPfn / POW[o]!);
      this.base.push(b);
      this.lists.push(new BitTree(Math.floor((this.endPfn - 1) / POW[o]!) - b + 1));
    }
    this.freeRange(startPfn, npages);
  }

  /** Free pages in the zone. */
  get freePages(): number {
    return this.free_;
  }

  get totalPages(): number {
    return this.endPfn - this.startPfn;
  }

  /** Free block counts per order (index = order), as /proc/buddyinfo. */
  freeByOrder(): number[] {
    return this.lists.map((s) => s.size);
  }

  /** Highest order with a free block, or -1. */
  largestFreeOrder(): number {
    for (let o = this.maxOrder; o >= 0; o--) if (this.lists[o]!.size > 0) return o;
    return -1;
  }

  /** Is the whole block [pfn, pfn + 2^order) free (as one block or inside a larger one)? */
  isFree(pfn: number, order = 0): boolean {
    for (let o = order; o <= this.maxOrder; o++) {
      if (this.lists[o]!.has(Math.floor(pfn / POW[o]!) - this.base[o]!)) return true;
    }
    return false;
  }

  private add(pfn: number, order: number): void {
    this.lists[order]!.add(pfn / POW[order]! - this.base[order]!);
  }

  /** Take a free block off its list (pfn aligned to the order: every caller's is); false when it is not there. */
  private remove(pfn: number, order: number): boolean {
    return this.lists[order]!.delete(pfn / POW[order]! - this.base[order]!);
  }

  /** Is [pfn, pfn + 2^order) a free block of exactly this order (on the order's free list)? */
  isFreeBlock(pfn: number, order: number): boolean {
    return order >= 0 && order <= this.maxOrder && isAligned(pfn, POW[order]!) && this.lists[order]!.has(pfn / POW[order]! - this.base[order]!);
  }

  /** First pfns of the free blocks of one order, lowest first (for range scans like alloc_contig_range's). */
  *freeHeads(order: number): Iterable<number> {
    const list = this.lists[order];
    if (list === undefined) return;
    const size = POW[order]!;
    const base = this.base[order]!;
    for (const i of list) yield (base + i) * size;
  }

  /** The lowest free block of this order whose head is at or above pfn, or −1. */
  private nextHead(order: number, pfn: number): number {
    const size = POW[order]!;
    const i = this.lists[order]!.next(Math.ceil(pfn / size) - this.base[order]!);
    return i < 0 ? -1 : (this.base[order]! + i) * size;
  }

  /** Take one given free block off its free list (del_page_from_free_list); false when it is not free. */
  takeBlock(pfn: number, order: number): boolean {
    if (!this.isFreeBlock(pfn, order) || !this.remove(pfn, order)) return false;
    this.free_ -= POW[order]!;
    return true;
  }

  /** Pop the lowest-addressed free block of this order, or -1. */
  private take(order: number): number {
    const list = this.lists[order]!;
    const i = list.first();
    if (i < 0) return -1;
    list.delete(i);
    return (this.base[order]! + i) * POW[order]!;
  }

  /**
   * Allocate one naturally aligned block of 2^order pages; returns its pfn
   * or -1. With minPfn, the block lies at or above it (a placement request:
   * the free lists are scanned, smallest order first, lowest address).
   */
  alloc(order: number, minPfn = 0): number {
    if (order < 0 || order > this.maxOrder) return -1;
    if (minPfn > this.startPfn) return this.allocFrom(order, minPfn);
    let o = order;
    while (o <= this.maxOrder && this.lists[o]!.size === 0) o++;
    if (o > this.maxOrder) return -1;
    const pfn = this.take(o);
    // split down, keeping the low half, returning the high halves
    while (o > order) {
      o--;
      this.add(pfn + POW[o]!, o);
    }
    this.free_ -= POW[order]!;
    return pfn;
  }

  /** alloc(order) at or above minPfn: carve the block out of the smallest free block that holds one there. */
  private allocFrom(order: number, minPfn: number): number {
    const n = POW[order]!;
    const first = Math.ceil(minPfn / n) * n;
    for (let o = order; o <= this.maxOrder; o++) {
      const size = POW[o]!;
      // the block holding `first` (its aligned run of n pages lies inside), else the lowest block above it
      let head = Math.floor(first / size) * size;
      if (!this.isFreeBlock(head, o)) head = this.nextHead(o, first);
      if (head < 0) continue;
      const at = Math.max(head, first);
      this.remove(head, o);
      this.free_ -= size;
      // the rest of the block goes back: pieces below and above, coalescing only among themselves
      if (at > head) this.freeRange(head, at - head);
      if (at + n < head + size) this.freeRange(at + n, head + size - at - n);
      return at;
    }
    return -1;
  }

  /** Free pages at or above minPfn. */
  freePagesFrom(minPfn: number): number {
    if (minPfn <= this.startPfn) return this.free_;
    let n = 0;
    for (let o = 0; o <= this.maxOrder; o++) {
      // the block holding minPfn counts its part above it, every block after it whole
      const size = POW[o]!;
      const head = Math.floor(minPfn / size) * size;
      if (this.isFreeBlock(head, o)) n += head + size - minPfn;
      for (let h = this.nextHead(o, head + 1); h >= 0; h = this.nextHead(o, h + 1)) n += size;
    }
    return n;
  }

  /** Pages of the longest free run inside one free block at or above minPfn. */
  largestFreeFrom(minPfn: number): number {
    let best = 0;
    for (let o = 0; o <= this.maxOrder; o++) {
      const size = POW[o]!;
      const head = Math.floor(minPfn / size) * size;
      if (this.isFreeBlock(head, o)) best = Math.max(best, head + size - minPfn);
      if (this.nextHead(o, head + 1) >= 0) best = Math.max(best, size);
    }
    return best;
  }

  /** Free a block previously allocated with alloc(order) (or a piece from allocExact). */
  free(pfn: number, order: number): void {
    if (!Number.isInteger(order) || order < 0 || order > this.maxOrder) {
      throw new RangeError(`free of block ${pfn}/${order}: order outside 0..${this.maxOrder}`);
    }
    if (pfn < this.startPfn || pfn + POW[order]! > this.endPfn || !isAligned(pfn, POW[order]!)) {
      throw new RangeError(`free of block ${pfn}/${order} outside zone or misaligned`);
    }
    this.free_ += POW[order]!;
    let p = pfn;
    let o = order;
    while (o < this.maxOrder) {
      // p ^ 2^o, without 32-bit bitwise ops (pfns reach 2^40, orders 40)
      const size = POW[o]!;
      const buddy = (Math.floor(p / size) & 1) === 0 ? p + size : p - size;
      if (buddy < this.startPfn || buddy + POW[o]! > this.endPfn) break;
      if (!this.remove(buddy, o)) break;
      p = Math.min(p, buddy);
      o++;
    }
    this.add(p, o);
  }

  /** Free an arbitrary page range, decomposed into maximal aligned blocks. */
  freeRange(pfn: number, npages: number): void {
    let p = pfn;
    const end = pfn + npages;
    while (p < end) {
      // the largest order allowed by p's alignment, the range left, and maxOrder
      const o = Math.min(ctz(p), floorLog2(end - p), this.maxOrder);
      this.free(p, o);
      p += POW[o]!;
    }
  }

  /**
   * Allocate exactly npages physically contiguous pages whose first pfn is a
   * multiple of alignPages (a power of two). The tail of the rounded-up
   * block goes straight back (like alloc_pages_exact). Returns pfn or -1.
   */
  allocExact(npages: number, alignPages = 1, minPfn = 0): number {
    const order = Math.max(Math.ceil(Math.log2(npages)), Math.ceil(Math.log2(alignPages)));
    const pfn = this.alloc(order, minPfn);
    if (pfn < 0) return -1;
    const extra = POW[order]! - npages;
    if (extra > 0) this.freeRange(pfn + npages, extra);
    return pfn;
  }

  /**
   * Allocate npages as a scatter-gather list of blocks, largest blocks
   * first (at most 2^maxSegOrder pages each), at or above minPfn. All or
   * nothing: returns null without changing anything when fewer than npages
   * are free there.
   */
  allocScatter(npages: number, maxSegOrder = this.maxOrder, minPfn = 0): Block[] | null {
    if (npages > this.freePagesFrom(minPfn)) return null;
    const out: Block[] = [];
    let left = npages;
    let o = Math.min(Math.floor(Math.log2(left)), maxSegOrder, this.maxOrder);
    while (left > 0) {
      while (POW[o]! > left) o--;
      const pfn = this.alloc(o, minPfn);
      if (pfn < 0) {
        o--;
        continue;
      }
      out.push({ pfn, order: o });
      left -= POW[o]!;
    }
    return out;
  }

  /** Every free block, lowest address first (for invariant checks and maps). */
  freeBlocks(): Block[] {
    const out: Block[] = [];
    for (let order = 0; order <= this.maxOrder; order++) for (const pfn of this.freeHeads(order)) out.push({ pfn, order });
    return out.sort((a, b) => a.pfn - b.pfn);
  }
}
