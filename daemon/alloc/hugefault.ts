/**
 * Hugepage faults: a `populate: false` buffer's hugepages are backed one at
 * a time, when an access first touches them, as Linux does for a hugetlbfs
 * mapping without MAP_POPULATE:
 *
 * - mmap only reserves (mm/hugetlb.c, hugetlb_reserve_pages →
 *   hugetlb_acct_memory → gather_surplus_pages): resv_huge_pages += n, with
 *   surplus pages gathered when the free ones don't cover it.
 * - a fault on an address with no page (hugetlb_fault → hugetlb_no_page)
 *   allocates exactly one hugepage for that index (alloc_hugetlb_folio →
 *   dequeue_hugetlb_folio_vma: the VMA holds a reservation for the index,
 *   vma_needs_reservation says so, so resv_huge_pages-- and the page leaves
 *   the free list: free_huge_pages--), then zeroes it (folio_zero_user).
 *   A read fault allocates too: hugetlbfs has no shared zero page.
 *   Documentation/mm/hugetlbfs_reserv.rst, "Consuming Reservations/Allocating
 *   a Huge Page".
 * - teardown (hugetlb_unreserve_pages, remove_inode_hugepages) frees the
 *   backed pages one by one (free_huge_folio: free++ or, while surplus > 0,
 *   the page goes back to the buddy allocator) and gives back the
 *   reservations never consumed (hugetlb_acct_memory(h, -n) →
 *   return_unused_surplus_pages).
 *
 * A partly backed buffer keeps one slot per hugepage (null while unbacked);
 * `blocks` and `segments` then list only the backed pages, so walkers that
 * go by buffer offset use forEachBacked/chunkedBacked here. Pure: no I/O.
 */
import type { HeldBlock } from '../memory/cacheattr.js';
import { PAGE } from '../memory/physmem.js';
import { chunkedPieces, forEachPiece, segmentsOf, type Segment } from '../memory/segments.js';

/** The fields of a buffer that lazy backing reads and changes (PhysBuffer has them). */
export interface LazyBuffer {
  readonly size: number;
  readonly pool: { readonly pageSize: number };
  segments: Segment[];
  blocks: HeldBlock[];
  reservedPages: number;
  /**
   * While some of a populate:false buffer's hugepages are unbacked: slot i
   * backs bytes [i·pageSize, (i+1)·pageSize), null until first touched.
   * Absent when every page is backed (or the buffer was never lazy).
   */
  slots?: (HeldBlock | null)[];
}

/** A backed piece of a buffer: bytes [off, off + len) live at addr. */
export interface BackedPiece {
  off: number;
  addr: number;
  len: number;
}

/** A buffer of `count` hugepages, reserved and not backed: its slots. */
export function emptySlots(count: number): (HeldBlock | null)[] {
  return new Array<HeldBlock | null>(count).fill(null);
}

/** The unbacked hugepages (slot indexes) that bytes [off, off + len) lie in. */
export function unbackedIn(buf: LazyBuffer, off: number, len: number): number[] {
  const slots = buf.slots;
  if (slots === undefined || len <= 0) return [];
  const ps = buf.pool.pageSize;
  const end = Math.min(slots.length, Math.ceil((off + len) / ps));
  const out: number[] = [];
  for (let i = Math.floor(off / ps); i < end; i++) if (slots[i] === null) out.push(i);
  return out;
}

/** Hugepages backing the buffer. */
export function backedCount(buf: LazyBuffer): number {
  if (buf.slots === undefined) return buf.blocks.length;
  return buf.slots.length - buf.reservedPages;
}

/** The backed pieces of a buffer, in buffer order, each with its offset (adjacent pages of adjacent slots merged). */
export function backedPieces(buf: LazyBuffer): BackedPiece[] {
  const out: BackedPiece[] = [];
  if (buf.slots === undefined) {
    let off = 0;
    for (const s of buf.segments) {
      out.push({ off, addr: s.addr, len: s.len });
      off += s.len;
    }
    return out;
  }
  const ps = buf.pool.pageSize;
  buf.slots.forEach((b, i) => {
    if (b === null) return;
    const off = i * ps;
    const len = Math.min(ps, buf.size - off);
    const last = out[out.length - 1];
    if (last !== undefined && last.off + last.len === off && last.addr + last.len === b.pfn * PAGE) last.len += len;
    else out.push({ off, addr: b.pfn * PAGE, len });
  });
  return out;
}

/**
 * Put pages taken from the reservation into the given (unbacked) slots:
 * one hugepage per slot, in order. `blocks` and `segments` follow; once the
 * last slot is backed the buffer is an ordinary direct buffer. Returns the
 * newly backed pieces. The caller zeroes the pages and counts their users.
 */
export function backSlots(buf: LazyBuffer, idx: number[], pages: HeldBlock[]): Segment[] {
  const slots = buf.slots!;
  const ps = buf.pool.pageSize;
  const fresh: Segment[] = [];
  const bad = idx.find((i) => slots[i] !== null);
  if (bad !== undefined || pages.length !== idx.length) throw new RangeError(`cannot back slots [${idx.join(', ')}] with ${pages.length} page(s)${bad !== undefined ? `: slot ${bad} is already backed` : ''}`);
  idx.forEach((i, k) => {
    slots[i] = pages[k]!;
    fresh.push({ addr: pages[k]!.pfn * PAGE, len: Math.min(ps, buf.size - i * ps) });
  });
  buf.reservedPages -= idx.length;
  if (buf.reservedPages === 0) {
    buf.blocks = slots as HeldBlock[];
    buf.segments = segmentsOf(buf.blocks, buf.size);
    buf.slots = undefined;
  } else {
    buf.blocks = slots.filter((b): b is HeldBlock => b !== null);
    buf.segments = backedPieces(buf).map((p) => ({ addr: p.addr, len: p.len }));
  }
  return fresh;
}

/**
 * Visit the backed physical pieces of bytes [off, off + len) of a buffer:
 * fn(addr, offset in the range, bytes). Unbacked hugepages are skipped (no
 * page, so no memory and no cache lines to act on).
 */
export function forEachBacked(buf: LazyBuffer, off: number, len: number, fn: (addr: number, at: number, n: number) => void): void {
  if (buf.slots === undefined) {
    forEachPiece(buf.segments, off, len, fn);
    return;
  }
  for (const [addr, at, n] of chunkedBacked(buf, off, len, Infinity)) fn(addr, at, n);
}

/** The same as chunkedPieces (memory/segments.ts) over the backed pages: [addr, offset in the range, bytes, whether a chunk ends there]. */
export function* chunkedBacked(buf: LazyBuffer, off: number, len: number, chunk: number): Generator<[number, number, number, boolean]> {
  if (buf.slots === undefined) {
    yield* chunkedPieces(buf.segments, off, len, chunk);
    return;
  }
  const ps = buf.pool.pageSize;
  const end = Math.min(off + len, buf.size);
  for (let i = Math.floor(off / ps); i * ps < end; i++) {
    const b = buf.slots[i];
    if (b === null || b === undefined) continue;
    let lo = Math.max(off, i * ps);
    const hi = Math.min(end, (i + 1) * ps);
    while (lo < hi) {
      const boundary = off + (Math.floor((lo - off) / chunk) + 1) * chunk;
      const stop = Math.min(hi, boundary);
      yield [b.pfn * PAGE + (lo - i * ps), lo - off, stop - lo, stop === boundary];
      lo = stop;
    }
  }
}
