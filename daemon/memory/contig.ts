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
 * order ≥ k. Those blocks are the anchors; each run is grown from its lowest
 * anchor block by block (one free-list lookup per order per step), lowest
 * address first, stopping at the first range that fits. Pure: no I/O.
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

/** The free block that ends at pfn (its first pfn and order), or null. */
function blockBefore(b: BuddyAllocator, pfn: number): { pfn: number; order: number } | null {
  for (let o = 0; o <= b.maxOrder; o++) {
    const head = pfn - 2 ** o;
    if (head < b.startPfn) break;
    if (head % 2 ** o === 0 && b.isFreeBlock(head, o)) return { pfn: head, order: o };
  }
  return null;
}

/**
 * Lowest pfn p (a multiple of alignPages, at or above minPfn) such that
 * [p, p + npages) is entirely free; −1 and the reason when there is none.
 */
export function findContigRange(b: BuddyAllocator, npages: number, alignPages: number, minPfn = 0): { pfn: number } | ContigMiss {
  const k = Math.min(b.maxOrder, Math.max(0, floorLog2(npages + 1) - 1));
  const anchors: number[] = [];
  for (let o = k; o <= b.maxOrder; o++) for (const h of b.freeHeads(o)) anchors.push(h);
  const sorted = Float64Array.from(anchors).sort();
  let longest: FreeRun | null = null;
  let busyPfn = -1;
  let walked = -1; // end of the last run walked: anchors below it are inside it
  for (const anchor of sorted) {
    if (anchor < walked) continue;
    // grow down to the run's start (only blocks below order k there: a bigger one would be an earlier anchor)
    let start = anchor;
    for (let prev = blockBefore(b, start); prev !== null; prev = blockBefore(b, start)) start = prev.pfn;
    const at = Math.max(alignUp(start, alignPages), alignUp(minPfn, alignPages));
    // grow up until the range fits or the run ends
    let end = start;
    for (let o = blockAt(b, end); o >= 0; o = blockAt(b, end)) {
      end += 2 ** o;
      if (at + npages <= end) return { pfn: at };
    }
    walked = end;
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
