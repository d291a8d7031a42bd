/**
 * Extents: runs of 4 KiB pages inside an arena's chunks (a chunk is one
 * physically contiguous block the arena holds: a hugepage or a buddy
 * block). Free extents are kept coalesced per chunk and found first-fit by
 * lowest address, as jemalloc's extent sets do: free extents sit in buckets
 * by size (floor log2 of pages), each a min-heap by address, so a lookup
 * peeks a few bucket heads instead of scanning anything. Pure: no I/O.
 */
import { MinHeap } from '../lib/minheap.js';
import type { HeldBlock } from '../memory/cacheattr.js';

export interface Chunk {
  readonly pfn: number;
  readonly npages: number;
  readonly block: HeldBlock;
  /** Pages in active extents (slabs, large allocations). */
  usedPages: number;
  /** Monotonic ms when the chunk became empty, or -1. */
  dirtySince: number;
}

export interface FreeExtent {
  pfn: number;
  npages: number;
  chunk: Chunk;
}

const NBUCKETS = 48;

function bucketOf(npages: number): number {
  return Math.min(NBUCKETS - 1, Math.floor(Math.log2(npages)));
}

export class ExtentSet {
  private readonly byStart = new Map<number, FreeExtent>();
  private readonly byEnd = new Map<number, FreeExtent>();
  private readonly heaps: MinHeap[] = Array.from({ length: NBUCKETS }, () => new MinHeap());
  /** Members of each bucket (for exact first fit inside the request's own bucket). */
  private readonly members: Set<FreeExtent>[] = Array.from({ length: NBUCKETS }, () => new Set());
  private free_ = 0;

  get freePages(): number {
    return this.free_;
  }

  get count(): number {
    return this.byStart.size;
  }

  private insert(e: FreeExtent): void {
    this.byStart.set(e.pfn, e);
    this.byEnd.set(e.pfn + e.npages, e);
    const b = bucketOf(e.npages);
    this.heaps[b]!.push(e.pfn);
    this.members[b]!.add(e);
    this.free_ += e.npages;
  }

  private remove(e: FreeExtent): void {
    this.byStart.delete(e.pfn);
    this.byEnd.delete(e.pfn + e.npages);
    const b = bucketOf(e.npages);
    const m = this.members[b]!;
    m.delete(e);
    this.free_ -= e.npages;
    const h = this.heaps[b]!;
    if (h.size > 2 * m.size + 64) h.reset([...m].map((x) => x.pfn));
  }

  /** Lowest valid extent in bucket b, dropping stale heap entries. */
  private head(b: number): FreeExtent | undefined {
    const h = this.heaps[b]!;
    for (;;) {
      const pfn = h.peek();
      if (pfn === undefined) return undefined;
      const e = this.byStart.get(pfn);
      if (e !== undefined && bucketOf(e.npages) === b) return e;
      h.pop();
    }
  }

  /** Pages [pfn, pfn + n) of a chunk become free; coalesce with free neighbours in the same chunk. */
  release(chunk: Chunk, pfn: number, n: number): FreeExtent {
    let start = pfn;
    let len = n;
    const prev = this.byEnd.get(pfn);
    if (prev !== undefined && prev.chunk === chunk) {
      this.remove(prev);
      start = prev.pfn;
      len += prev.npages;
    }
    const next = this.byStart.get(pfn + n);
    if (next !== undefined && next.chunk === chunk) {
      this.remove(next);
      len += next.npages;
    }
    const e: FreeExtent = { pfn: start, npages: len, chunk };
    this.insert(e);
    return e;
  }

  private static fits(e: FreeExtent, n: number, alignPages: number): number {
    const s = Math.ceil(e.pfn / alignPages) * alignPages;
    return s + n <= e.pfn + e.npages ? s : -1;
  }

  /** Lowest-addressed free extent that can hold n pages at this alignment. */
  private firstFit(n: number, alignPages: number): FreeExtent | undefined {
    const lo = bucketOf(n);
    if (alignPages > 1) {
      // only extents of at least n pages can fit, and they sit in buckets lo and up: in each, the
      // head (lowest address) if it fits, else every member — unless none can beat the best so far
      let best: FreeExtent | undefined;
      for (let b = lo; b < NBUCKETS; b++) {
        if (this.members[b]!.size === 0) continue;
        const h = this.head(b);
        if (h === undefined || (best !== undefined && h.pfn > best.pfn)) continue;
        if (ExtentSet.fits(h, n, alignPages) >= 0) {
          best = h;
          continue;
        }
        for (const e of this.members[b]!) {
          if (ExtentSet.fits(e, n, alignPages) >= 0 && (best === undefined || e.pfn < best.pfn)) best = e;
        }
      }
      return best;
    }
    let best: FreeExtent | undefined;
    // buckets above lo hold extents of at least 2^(lo+1) > n pages: their heads are candidates
    for (let b = lo + 1; b < NBUCKETS; b++) {
      if (this.members[b]!.size === 0) continue;
      const e = this.head(b);
      if (e !== undefined && (best === undefined || e.pfn < best.pfn)) best = e;
    }
    // in bucket lo only some extents are big enough: the head if it fits, else search the bucket
    if (this.members[lo]!.size > 0) {
      const e = this.head(lo);
      if (e !== undefined && e.npages >= n) {
        if (best === undefined || e.pfn < best.pfn) best = e;
      } else if (e !== undefined && (best === undefined || e.pfn < best.pfn)) {
        for (const x of this.members[lo]!) {
          if (x.npages >= n && (best === undefined || x.pfn < best.pfn)) best = x;
        }
      }
    }
    return best;
  }

  /** Carve n pages (aligned) out of the first fitting free extent. */
  carve(n: number, alignPages = 1): { pfn: number; chunk: Chunk } | null {
    const e = this.firstFit(n, alignPages);
    if (e === undefined) return null;
    const s = ExtentSet.fits(e, n, alignPages);
    this.remove(e);
    if (s > e.pfn) this.insert({ pfn: e.pfn, npages: s - e.pfn, chunk: e.chunk });
    const end = e.pfn + e.npages;
    if (s + n < end) this.insert({ pfn: s + n, npages: end - (s + n), chunk: e.chunk });
    return { pfn: s, chunk: e.chunk };
  }

  /** Remove a whole empty chunk's extent (for purging). */
  takeChunk(chunk: Chunk): boolean {
    const e = this.byStart.get(chunk.pfn);
    if (e === undefined || e.chunk !== chunk || e.npages !== chunk.npages) return false;
    this.remove(e);
    return true;
  }

  /** Every free extent, lowest address first (for stats and invariant checks). */
  all(): FreeExtent[] {
    return [...this.byStart.values()].sort((a, b) => a.pfn - b.pfn);
  }
}
