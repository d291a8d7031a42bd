/**
 * The dirty cache of a pool's direct buffers: jemalloc's dirty extent cache
 * (ecache_dirty) on the oversize path.
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
 * Blocks are kept in lists by floor(log2(pages)) and taken largest first, so
 * a buffer built from them keeps the largest-block-first layout of a fresh
 * scatter-gather allocation (drivers/dma-buf/heaps/system_heap.c). A request
 * takes only blocks that fit inside it; the pages it still lacks come from
 * the page source. Pure: no I/O.
 */
import type { HeldBlock } from '../memory/cacheattr.js';
import { floorLog2 } from '../memory/buddy.js';
import { PAGE } from '../memory/physmem.js';

/** Blocks looked at per list and request: bounds a take to O(orders × SCAN). */
const SCAN = 8;

export class DirtyCache {
  private readonly lists: HeldBlock[][] = [];
  private pages_ = 0;
  private count_ = 0;

  /** Pages kept. */
  get pages(): number {
    return this.pages_;
  }

  /** Blocks kept. */
  get count(): number {
    return this.count_;
  }

  /** Keep the blocks of a freed buffer (no users left). */
  put(blocks: readonly HeldBlock[]): void {
    for (const b of blocks) {
      const o = floorLog2(b.npages);
      while (this.lists.length <= o) this.lists.push([]);
      this.lists[o]!.push(b);
      this.pages_ += b.npages;
    }
    this.count_ += blocks.length;
  }

  /**
   * Take blocks of at most `pages` pages in total, largest first (the
   * most recently retained within a list: its lines are likeliest cached).
   * Returns the blocks and leaves `pages − taken` to the caller.
   */
  take(pages: number): HeldBlock[] {
    const out: HeldBlock[] = [];
    if (this.count_ === 0) return out;
    let need = pages;
    for (let o = Math.min(this.lists.length - 1, floorLog2(need)); o >= 0 && need > 0; o--) {
      const list = this.lists[o]!;
      // blocks of list o have 2^o .. 2^(o+1)-1 pages: look at the top few for ones that fit
      for (let i = list.length - 1, seen = 0; i >= 0 && need >= 1 << o && seen < SCAN; i--, seen++) {
        const b = list[i]!;
        if (b.npages > need) continue;
        list[i] = list[list.length - 1]!;
        list.pop();
        out.push(b);
        need -= b.npages;
      }
    }
    this.pages_ -= pages - need;
    this.count_ -= out.length;
    return out;
  }

  /**
   * Blocks for a direct request of `count` pages: kept ones first, the
   * rest from `acquire` (null: nothing taken, the kept blocks stay).
   * Largest block first, as a fresh scatter-gather allocation.
   */
  serve(count: number, acquire: (pages: number) => HeldBlock[] | null): HeldBlock[] | null {
    const kept = this.take(count);
    let got = 0;
    for (const b of kept) got += b.npages;
    if (got === count) return kept;
    const more = acquire(count - got);
    if (more === null) {
      this.put(kept);
      return null;
    }
    for (const b of more) kept.push(b);
    return kept.sort((x, y) => y.npages - x.npages);
  }

  /** Every kept block, emptying the cache (a purge). */
  drain(): HeldBlock[] {
    const out: HeldBlock[] = [];
    for (const l of this.lists) {
      for (const b of l) out.push(b);
      l.length = 0;
    }
    this.pages_ = 0;
    this.count_ = 0;
    return out;
  }

  /** Kept blocks as the dashboard's memory map draws them: dirty, free. */
  *mapEntries(): IterableIterator<{ addr: number; size: number; slab: 0; large: 0; direct: 0; free: number; dirty: true; owner: 0; runs: [] }> {
    for (const l of this.lists) {
      for (const b of l) yield { addr: b.pfn * PAGE, size: b.npages * PAGE, slab: 0, large: 0, direct: 0, free: b.npages * PAGE, dirty: true, owner: 0, runs: [] };
    }
  }
}
