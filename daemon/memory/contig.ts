/**
 * Physically contiguous runs larger than the buddy's largest block
 * (MAX_PAGE_ORDER, 4 MiB): the alloc_contig_range / alloc_contig_pages path
 * of mm/page_alloc.c, which CMA and gigantic (1 GiB) hugepages use
 * (mm/hugetlb.c alloc_gigantic_folio → alloc_contig_pages).
 *
 * alloc_contig_pages() walks a zone's pfns in steps of the (power-of-two)
 * request, checks each candidate range (pfn_range_valid_contig), isolates it
 * and migrates the movable pages out (__alloc_contig_migrate_range); it
 * fails with -EBUSY when a page can't move. bufferd does not migrate: every
 * allocated page backs a buffer whose physical address may be pinned by a
 * driver registration (as pinned pages are unmovable in Linux), so a range
 * qualifies only when all of it is free already, and a failure names the
 * longest free run and the busy page that cut it short.
 *
 * Instead of testing every pfn (O(zone pages) on a 64 GiB machine) the scan
 * uses the free lists: a free run of n pages contains a naturally aligned
 * block of order k = floor(log2(n + 1)) − 1, and the buddy keeps a fully
 * free aligned block merged, so every such run contains a free block of
 * order ≥ k. Those blocks are the anchors; runs are found around them
 * (findContigRange), lowest address first, stopping at the first range that
 * fits: O(anchors · log anchors + groups · k), not O(pages). Pure: no I/O.
 */
import { ctz, floorLog2, type BuddyAllocator } from './buddy.js';

/** A run of free pages. */
export interface FreeRun {
  pfn: number;
  npages: number;
}

/** Why no range was found: the longest free run seen, and the busy page right after it (−1 at the zone's end). */
export interface ContigMiss {
  longest: FreeRun | null;
  busyPfn: number;
}

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

/** The free block that starts at pfn (its order), or −1. */
function blockAt(b: BuddyAllocator, pfn: number): number {
  for (let o = Math.min(ctz(pfn), b.maxOrder); o >= 0; o--) if (b.isFreeBlock(pfn, o)) return o;
  return -1;
}

/** Anchor keys: pfn × 64 + order, so one numeric sort orders them by address and keeps the order. */
const KEY = 64;
/** 2^o for the orders a buddy has (Math.pow costs in the scan's inner loop). */
const POW = Array.from({ length: KEY }, (_, o) => 2 ** o);

/**
 * Lowest pfn p (a multiple of alignPages, at or above minPfn) such that
 * [p, p + npages) is entirely free; or, when there is none, the reason.
 *
 * Anchors (free blocks of order ≥ k) are sorted by address and grouped
 * where they touch; around a group the run goes on only through smaller
 * blocks: a suffix of the aligned 2^k block before it and a prefix of the
 * one after it. The buddy keeps those merged, so their orders strictly
 * decrease away from the group: one free-list lookup per order finds each
 * end, whatever the run's length.
 */
export function findContigRange(b: BuddyAllocator, npages: number, alignPages: number, minPfn = 0): { pfn: number } | ContigMiss {
  const k = Math.min(b.maxOrder, Math.max(0, floorLog2(npages + 1) - 1));
  const keys: number[] = [];
  for (let o = k; o <= b.maxOrder; o++) for (const h of b.freeHeads(o)) keys.push(h * KEY + o);
  const sorted = Float64Array.from(keys).sort();
  let longest: FreeRun | null = null;
  let busyPfn = -1;
  const first = alignUp(minPfn, alignPages);
  for (let i = 0; i < sorted.length; ) {
    const g0 = Math.floor(sorted[i]! / KEY);
    let end = g0;
    while (i < sorted.length && Math.floor(sorted[i]! / KEY) === end) end += POW[sorted[i++]! % KEY]!;
    let start = g0;
    for (let o = k - 1; o >= 0; o--) if (start - POW[o]! >= b.startPfn && b.isFreeBlock(start - POW[o]!, o)) start -= POW[o]!;
    for (let o = k - 1; o >= 0; o--) if (b.isFreeBlock(end, o)) end += POW[o]!;
    const at = Math.max(alignUp(start, alignPages), first);
    if (at + npages <= end) return { pfn: at };
    const usable = end - Math.max(start, minPfn);
    if (usable > 0 && (longest === null || usable > longest.npages)) {
      longest = { pfn: Math.max(start, minPfn), npages: usable };
      busyPfn = end < b.endPfn ? end : -1;
    }
  }
  return { longest, busyPfn };
}

/** Take [pfn, pfn + npages) — all free — off the free lists; the rest of the blocks it cuts go back. */
export function takeRange(b: BuddyAllocator, pfn: number, npages: number): void {
  // the free block holding pfn
  let head = -1;
  let order = -1;
  for (let o = 0; o <= b.maxOrder && head < 0; o++) {
    const h = pfn - (pfn % 2 ** o);
    if (b.isFreeBlock(h, o)) [head, order] = [h, o];
  }
  if (head < 0) throw new RangeError(`takeRange: pfn ${pfn} is not free`);
  const end = pfn + npages;
  let p = head;
  let last = head;
  while (p < end) {
    const o = p === head ? order : blockAt(b, p);
    if (o < 0 || !b.takeBlock(p, o)) throw new RangeError(`takeRange: pfn ${p} is not free`);
    last = p + 2 ** o;
    p = last;
  }
  if (head < pfn) b.freeRange(head, pfn - head);
  if (last > end) b.freeRange(end, last - end);
}

/** alloc_contig_pages in one zone: the range's first pfn, or the reason it failed. Nothing changes on failure. */
export function allocContigRange(b: BuddyAllocator, npages: number, alignPages: number, minPfn = 0): { pfn: number } | ContigMiss {
  const r = findContigRange(b, npages, alignPages, minPfn);
  if ('pfn' in r) takeRange(b, r.pfn, npages);
  return r;
}
