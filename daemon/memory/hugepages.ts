/**
 * Hugepage pools with Linux hugetlb semantics (Documentation/admin-guide/
 * mm/hugetlbpage.rst, mm/hugetlb.c), one pool per size:
 *
 * - total = persistent (nr_hugepages) + surplus; free pages sit in the pool.
 * - A reservation commits pages to a buffer before they back it; a
 *   reservation beyond what is free gathers surplus pages from the buddy
 *   allocator, up to nr_overcommit_hugepages. available = free − reserved.
 * - A page freed while surplus > 0 goes back to the buddy allocator.
 * - Growing nr_hugepages first promotes surplus pages to persistent, then
 *   allocates fresh ones, as far as memory allows. Shrinking frees free
 *   pages not needed for reservations; in-use (or reserved) pages that
 *   exceed the new count become surplus, even beyond the overcommit limit,
 *   and no new surplus is allowed until they are freed or limits raised.
 * - 1 GiB (gigantic) pages cannot be overcommitted, as in Linux, and come
 *   from free ranges rather than the buddy's free lists (order 18 is above
 *   MAX_PAGE_ORDER): PhysicalMemory.allocBlock takes the alloc_contig_pages
 *   path, as mm/hugetlb.c alloc_gigantic_folio does, so they fail on a
 *   fragmented region even with plenty of memory free.
 *
 * Free hugepages keep the cache attribute they last had, so a pool with the
 * same policy reuses them without conversion. Pure: no I/O.
 */
import type { FaultInjector } from '../lib/faultinject.js';
import type { CachePolicy } from './layout.js';
import { PAGE, type PhysicalMemory } from './physmem.js';
import type { HugepageStatus } from '../../protocol/status.js';
import { HugeFreeList, type Hugepage } from './hugefree.js';
export type { Hugepage } from './hugefree.js';

export const GIGANTIC = 2 ** 30;

/** Called when a hugepage goes back to the buddy allocator (convert to write-back first). */
export type ReleaseHook = (pfn: number, npages: number, attr: CachePolicy) => void;

export class HugepagePool {
  readonly size: number;
  readonly order: number;
  readonly region: string;
  private readonly pagesPer: number;
  /** Free hugepages by address, with the attribute each last carried. */
  private readonly freeList: HugeFreeList;
  private total_ = 0;
  private resv_ = 0;
  private surplus_ = 0;
  private overcommit_: number;
  /** nr_hugepages asked for at start-up or by the last resize. */
  private requested_: number;
  /** Fault injection (point `hugepage`: no surplus page to be had), or null. */
  faults: FaultInjector | null = null;

  constructor(
    private readonly mem: PhysicalMemory,
    cfg: { size: number; region: string; nr: number; overcommit: number },
    private readonly onRelease: ReleaseHook = () => {},
  ) {
    this.size = cfg.size;
    this.region = cfg.region;
    this.pagesPer = cfg.size / PAGE;
    this.order = Math.log2(this.pagesPer);
    const r = mem.region(cfg.region);
    this.freeList = new HugeFreeList(r.base / PAGE, (r.base + r.size) / PAGE, this.pagesPer);
    this.overcommit_ = this.isGigantic ? 0 : cfg.overcommit;
    this.requested_ = cfg.nr;
    this.setNr(cfg.nr);
  }

  get isGigantic(): boolean {
    return this.size >= GIGANTIC;
  }

  get total(): number {
    return this.total_;
  }
  get free(): number {
    return this.freeList.size;
  }
  get reserved(): number {
    return this.resv_;
  }
  get surplus(): number {
    return this.surplus_;
  }
  get overcommit(): number {
    return this.overcommit_;
  }
  /** nr_hugepages as read back: persistent pages. */
  get persistent(): number {
    return this.total_ - this.surplus_;
  }
  get available(): number {
    return this.freeList.size - this.resv_;
  }
  get inUse(): number {
    return this.total_ - this.freeList.size;
  }
  get requested(): number {
    return this.requested_;
  }

  /** A page leaving the free list: its attribute goes with it. */
  private detach(pfn: number): Hugepage {
    return { pfn, attr: this.freeList.remove(pfn) };
  }

  /** A fresh page from the buddy allocator, added to the pool. */
  private allocFresh(): boolean {
    const pfn = this.mem.allocBlock(this.region, this.order, null);
    if (pfn < 0) return false;
    this.total_++;
    this.freeList.add(pfn, 'writeback');
    return true;
  }

  /** Give the highest free page back to the buddy allocator. */
  private releaseOneFree(): boolean {
    if (this.freeList.size === 0) return false;
    const { pfn, attr } = this.detach(this.freeList.last());
    this.onRelease(pfn, this.pagesPer, attr);
    this.mem.freeBlockOrder(pfn, this.order);
    this.total_--;
    return true;
  }

  /**
   * Commit n pages (hugetlb_acct_memory). Gathers surplus pages when free
   * ones don't cover the reservations. All or nothing.
   */
  reserve(n: number): boolean {
    return this.gather(n) !== null;
  }

  /** Free pages at or above a physical address. */
  freeFrom(minAddress: number): number {
    return this.freeList.countFrom(minAddress / PAGE);
  }

  /**
   * reserve(n), with n free pages at or above minPfn when asked; returns the
   * surplus pages gathered for it, or null (nothing changed).
   */
  private gather(n: number, minPfn = 0): number[] | null {
    if (n <= 0) return [];
    const needed = Math.max(this.resv_ + n - this.freeList.size, minPfn > 0 ? n - this.freeList.countFrom(minPfn) : 0);
    const fresh: number[] = [];
    if (needed > 0) {
      // the `hugepage` fault point fails here, as when overcommit is reached: nothing has changed yet
      if (this.surplus_ + needed > this.overcommit_ || this.faults?.shouldFail('hugepage') === true) return null;
      // gather into a side list first, so a shortfall gives back exactly these pages
      while (fresh.length < needed) {
        const pfn = this.mem.allocBlock(this.region, this.order, null, minPfn * PAGE);
        if (pfn < 0) break;
        fresh.push(pfn);
      }
      if (fresh.length < needed) {
        for (const pfn of fresh) this.mem.freeBlockOrder(pfn, this.order);
        return null;
      }
      for (const pfn of fresh) {
        this.total_++;
        this.freeList.add(pfn, 'writeback');
      }
      this.surplus_ += needed;
    }
    this.resv_ += n;
    return fresh;
  }

  /**
   * reserve(n) then take(n, contiguous, prefer), all or nothing: when no
   * contiguous run turns up, the reservation is dropped and exactly the
   * surplus pages gathered for it go back, so nothing changes. With
   * minAddress, only pages at or above it are taken (surplus ones gathered
   * there when the free ones fall short).
   */
  reserveAndTake(n: number, contiguous: boolean, prefer: CachePolicy = 'writeback', minAddress = 0): Hugepage[] | null {
    const minPfn = minAddress / PAGE;
    const fresh = this.gather(n, minPfn);
    if (fresh === null) return null;
    const pages = this.take(n, contiguous, prefer, minPfn);
    if (pages === null) {
      this.resv_ -= n;
      for (const pfn of fresh) {
        this.freeList.remove(pfn);
        this.mem.freeBlockOrder(pfn, this.order);
        this.total_--;
        this.surplus_--;
      }
    }
    return pages;
  }

  /**
   * Drop n reservations never consumed (hugetlb_unreserve_pages →
   * hugetlb_acct_memory(h, -n) → return_unused_surplus_pages, mm/hugetlb.c):
   * resv −= n, then up to min(n, surplus) free pages go back to the buddy
   * allocator as surplus ones; pages still reserved by others stay.
   */
  unreserve(n: number): void {
    const unused = Math.min(n, this.resv_);
    this.resv_ -= unused;
    this.returnUnusedSurplus(unused);
  }

  private returnUnusedSurplus(unused: number): void {
    for (let nr = Math.min(unused, this.surplus_); nr > 0 && this.freeList.size > this.resv_; nr--) {
      if (!this.releaseOneFree()) break;
      this.surplus_--;
    }
  }

  /** Longest run of adjacent free pages. */
  largestRun(): number {
    return this.freeList.largestRun();
  }

  /** Can n reserved pages be taken as one contiguous run right now? */
  hasRun(n: number): boolean {
    return n <= 1 ? this.freeList.size >= n : this.freeList.findRun(n, 0) >= 0;
  }

  /**
   * Consume n reserved pages (dequeue): free −n, resv −n, as
   * alloc_hugetlb_folio → dequeue_hugetlb_folio_vma does for each fault on
   * an index the VMA holds a reservation for (mm/hugetlb.c). Pages already carrying `prefer`
   * come first (no conversion needed), then the rest, lowest addresses
   * first; or one physically contiguous run; only pages at or above minPfn
   * when given. The caller reserved them; returns null (and changes
   * nothing) when a contiguous run is asked for and none exists, or fewer
   * than n pages lie at or above minPfn.
   */
  take(n: number, contiguous: boolean, prefer: CachePolicy = 'writeback', minPfn = 0): Hugepage[] | null {
    if (n > this.resv_ || n > this.freeList.size) throw new RangeError(`take(${n}) without reservation`);
    if (minPfn > 0 && this.freeList.countFrom(minPfn) < n) return null;
    let out: Hugepage[];
    if (contiguous && n > 1) {
      const start = this.freeList.findRun(n, minPfn);
      if (start < 0) return null;
      out = [];
      for (let i = 0; i < n; i++) out.push(this.detach(start + i * this.pagesPer));
    } else {
      // the first n pages carrying `prefer` go, then the lowest of the others (all at or above minPfn)
      out = this.freeList.takeLowest(n, prefer, minPfn);
    }
    this.resv_ -= n;
    return out;
  }

  /** A page leaves use (free_huge_folio): surplus pages dissolve, others rejoin the pool. */
  put(pfn: number, attr: CachePolicy): void {
    if (this.surplus_ > 0) {
      this.onRelease(pfn, this.pagesPer, attr);
      this.mem.freeBlockOrder(pfn, this.order);
      this.surplus_--;
      this.total_--;
      return;
    }
    this.freeList.add(pfn, attr);
  }

  /** set_max_huge_pages: returns the persistent count reached. */
  setNr(count: number): number {
    this.requested_ = count;
    // promote surplus pages to persistent
    while (count > this.persistent && this.surplus_ > 0) this.surplus_--;
    // allocate fresh pages as far as memory allows
    while (count > this.persistent) if (!this.allocFresh()) break;
    // free pages not needed for use or reservations
    const minCount = Math.max(count, this.resv_ + this.inUse);
    while (minCount < this.persistent) if (!this.releaseOneFree()) break;
    // the balance of in-use pages becomes surplus
    while (count < this.persistent) this.surplus_++;
    return this.persistent;
  }

  /** nr_overcommit_hugepages. Gigantic pages refuse any non-zero value. */
  setOvercommit(n: number): boolean {
    if (this.isGigantic && n !== 0) return false;
    this.overcommit_ = n;
    return true;
  }

  /** Free hugepages and their attributes (for invariant checks and maps). */
  freePages(): Hugepage[] {
    return this.freeList.pages();
  }

  status(): HugepageStatus {
    return {
      size: this.size,
      region: this.region,
      total: this.total_,
      free: this.freeList.size,
      reserved: this.resv_,
      surplus: this.surplus_,
      nr: this.persistent,
      overcommit: this.overcommit_,
      available: this.available,
      inUse: this.inUse,
      requested: this.requested_,
      largestFreeRun: this.largestRun(),
    };
  }
}
