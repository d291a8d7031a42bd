/**
 * The dirty cache of a pool's direct buffers: jemalloc's dirty extent cache
 * (ecache_dirty) on the large path.
 *
 * jemalloc gives an oversize extent back to the OS at once when it is freed
 * (src/extent.c, extent_record: "Shortcut to purge the oversize extent
 * eagerly") unless decay is disabled (extent_may_force_decay is false when
 * dirty_decay_ms is -1); then the extent stays in the arena's dirty cache and
 * the next large allocation reuses it (pac_alloc_real tries ecache_dirty
 * before asking for new pages). bufferd follows the same rule: a pool with
 * `dirtyDecayMs: -1` keeps the blocks of freed direct buffers, already
 * carrying the pool's cache policy, and a later direct allocation takes them
 * without touching the buddy allocator or converting a page; any other
 * decay gives them back on free, as before.
 *
 * What is kept is the freed buffer's extent — its blocks, largest first —
 * filed by size class (the largest class it holds, as jemalloc's eset
 * files extents by page-size class, eset_insert / sz_psz2ind). Such a pool
 * rounds direct buffers up to jemalloc's large size classes (sz_s2u), so a
 * request mostly finds a kept extent of exactly its class and takes it whole
 * in O(1): no block is looked at. On a miss the oldest extents of the
 * longest lists go back to the page source while the cache would keep more
 * than `spare` pages (the buddy allocator coalesces them, where jemalloc
 * coalesces neighbouring extents, extent_try_coalesce), and the request
 * takes fresh pages. Only when the page source cannot serve it does it take
 * kept pages of other classes: the smallest larger extent split
 * (extent_split_interior: the rest is filed again), or the largest ones
 * until enough, with the pages still lacking from the source. Pure: no I/O.
 */
import type { HeldBlock } from '../memory/cacheattr.js';
import { PAGE } from '../memory/physmem.js';
import { pageClassFloor as floorClass } from './sizeclasses.js';

/** A freed direct buffer's blocks (largest first) and their pages. */
interface DirtyExtent {
  blocks: HeldBlock[];
  pages: number;
}

/** Split block `b` after `npages` pages: `b` keeps the head, the tail comes back as a new block. */
export type SplitBlock = (b: HeldBlock, npages: number) => HeldBlock;

/**
 * Pages a decay-off pool's direct dirty cache may keep, per page of live
 * direct buffers, before a miss gives the oldest kept extents back: enough
 * for most requests to find a kept extent of their class (a steady mix of
 * 5–25 MiB buffers: 98 % of them), while the pool maps up to three times
 * what its live direct buffers use, plus one request (reached over a few
 * misses when many buffers go at once: EVICT below).
 */
export const DIRECT_SPARE = 2;

/** Does a pool keep its freed direct buffers' pages here? 4 KiB scatter-gather pools with decay off (`dirtyDecayMs: -1`). */
export function keepsDirect(cfg: { dirtyDecayMs: number; contiguous: boolean }, pageSize: number): boolean {
  return cfg.dirtyDecayMs === -1 && pageSize === PAGE && !cfg.contiguous;
}

/** Extent objects kept for reuse, at most. */
const RECYCLE = 64;
const NONE: HeldBlock[] = [];

/** Extents given back per miss, at most (bounds a request's time). */
const EVICT = 8;

/** Extents looked at in the request's own list (bounds a take's time). */
const SCAN = 8;

const byPagesDesc = (x: HeldBlock, y: HeldBlock) => y.npages - x.npages;

export class DirtyCache {
  /** Kept extents by floorClass of their pages. */
  private readonly lists: DirtyExtent[][] = [];
  /** Extent objects of taken extents, for the next put. */
  private readonly recycled: DirtyExtent[] = [];
  private pages_ = 0;
  private count_ = 0;

  constructor(private readonly split: SplitBlock) {}

  /** Pages kept. */
  get pages(): number {
    return this.pages_;
  }

  /** Blocks kept. */
  get count(): number {
    return this.count_;
  }

  /** Keep the blocks (largest first) of a freed buffer: one extent of `pages` pages. */
  put(blocks: HeldBlock[], pages: number): void {
    if (pages === 0) return;
    const c = floorClass(pages);
    while (this.lists.length <= c) this.lists.push([]);
    // (an extent object of an earlier hit is reused: the hot path allocates nothing here)
    const e = this.recycled.pop();
    if (e === undefined) this.lists[c]!.push({ blocks, pages });
    else {
      e.blocks = blocks;
      e.pages = pages;
      this.lists[c]!.push(e);
    }
    this.pages_ += pages;
    this.count_ += blocks.length;
  }

  private pop(list: DirtyExtent[]): DirtyExtent {
    const e = list.pop()!;
    this.pages_ -= e.pages;
    this.count_ -= e.blocks.length;
    return e;
  }

  /**
   * Blocks of min(`pages`, pages kept) pages, largest first: a kept extent
   * of exactly that size whole (the most recently kept: its lines are the
   * likeliest cached), else the smallest larger one split, else the
   * largest ones until enough.
   */
  take(pages: number): HeldBlock[] {
    if (this.count_ === 0 || pages <= 0) return [];
    const lists = this.lists;
    const want = floorClass(pages);
    // extents of the request's class or above: the first list that has one holds the smallest that fit
    for (let c = Math.max(0, want); c < lists.length; c++) {
      const list = lists[c]!;
      if (list.length === 0) continue;
      const top = list[list.length - 1]!;
      if (top.pages === pages) return this.pop(list).blocks;
      // the request's own list may hold extents just below it: look at the top few
      let i = list.length - 1;
      const stop = Math.max(-1, i - SCAN);
      while (i > stop && list[i]!.pages < pages) i--;
      if (i === stop) continue;
      const e = list[i]!;
      list[i] = top;
      list[list.length - 1] = e;
      return this.carve(this.pop(list), pages);
    }
    // none large enough: the largest first until the request is met
    const out: HeldBlock[] = [];
    let need = pages;
    for (let c = Math.min(want, lists.length - 1); c >= 0 && need > 0; c--) {
      const list = lists[c]!;
      while (list.length > 0 && need > 0) {
        const e = this.pop(list);
        const got = e.pages <= need ? e.blocks : this.carve(e, need);
        for (const b of got) out.push(b);
        need -= Math.min(need, e.pages);
      }
    }
    return out.sort(byPagesDesc);
  }

  /** `need` pages of extent e (not kept any more): its largest blocks that fit, one split if needed; the rest is kept again. */
  private carve(e: DirtyExtent, need: number): HeldBlock[] {
    const out: HeldBlock[] = [];
    const rest: HeldBlock[] = [];
    let left = need;
    for (const b of e.blocks) {
      if (b.npages <= left) {
        out.push(b);
        left -= b.npages;
      } else rest.push(b);
    }
    if (left > 0) {
      // the largest block left over is cut: its head completes the request, its tail stays
      const b = rest[0]!;
      rest[0] = this.split(b, left);
      out.push(b);
    }
    rest.sort(byPagesDesc);
    this.put(rest, e.pages - need);
    return out.sort(byPagesDesc);
  }

  /** The most recently kept extent of exactly `pages` pages, whole, or null: O(1). */
  takeExact(pages: number): HeldBlock[] | null {
    if (this.count_ === 0) return null;
    const list = this.lists[floorClass(pages)];
    if (list === undefined || list.length === 0 || list[list.length - 1]!.pages !== pages) return null;
    const e = this.pop(list);
    const blocks = e.blocks;
    if (this.recycled.length < RECYCLE) {
      e.blocks = NONE;
      this.recycled.push(e);
    }
    return blocks;
  }

  /**
   * Blocks for a direct request of `count` pages, largest block first as a
   * fresh scatter-gather allocation: a kept extent of exactly `count`
   * pages; else the oldest kept extents go back through `release` (at
   * most EVICT) while the cache would keep more than `spare` pages beside
   * the request, and fresh pages come from `acquire`; when `acquire` fails
   * (null), kept pages of other classes (take) and the rest from
   * `acquire`. Null: nothing taken, the kept blocks stay.
   */
  serve(count: number, acquire: (pages: number) => HeldBlock[] | null, release: (b: HeldBlock) => void, spare = 0): HeldBlock[] | null {
    const hit = this.takeExact(count);
    if (hit !== null) return hit;
    // a miss: the oldest extents of the longest lists go back until the cache keeps at most `spare` pages with the new ones, then fresh pages
    // (at most EVICT extents a request: a pool whose live buffers just went away catches up over the next misses)
    for (let n = 0; n < EVICT && this.pages_ > 0 && this.pages_ + count > spare; n++) for (const b of this.evict()) release(b);
    const fresh = acquire(count);
    if (fresh !== null) return fresh;
    const kept = this.take(count);
    let got = 0;
    for (const b of kept) got += b.npages;
    if (got === count) return kept;
    const more = acquire(count - got);
    if (more === null) {
      this.put(kept, got);
      return null;
    }
    for (const b of more) kept.push(b);
    return kept.sort(byPagesDesc);
  }

  /** The oldest extent of the longest list, no longer kept. */
  private evict(): HeldBlock[] {
    let longest: DirtyExtent[] | null = null;
    for (const l of this.lists) if (l.length > 0 && (longest === null || l.length > longest.length)) longest = l;
    const e = longest!.shift()!;
    this.pages_ -= e.pages;
    this.count_ -= e.blocks.length;
    return e.blocks;
  }

  /** Every kept block, emptying the cache (a purge). */
  drain(): HeldBlock[] {
    const out: HeldBlock[] = [];
    for (const l of this.lists) {
      for (const e of l) for (const b of e.blocks) out.push(b);
      l.length = 0;
    }
    this.pages_ = 0;
    this.count_ = 0;
    return out;
  }

  /** Kept blocks as the dashboard's memory map draws them: dirty, free. */
  *mapEntries(): IterableIterator<{ addr: number; size: number; slab: 0; large: 0; direct: 0; free: number; dirty: true; owner: 0; runs: [] }> {
    for (const l of this.lists) {
      for (const e of l) {
        for (const b of e.blocks) yield { addr: b.pfn * PAGE, size: b.npages * PAGE, slab: 0, large: 0, direct: 0, free: b.npages * PAGE, dirty: true, owner: 0, runs: [] };
      }
    }
  }
}
