/**
 * Pools with a cache policy. A pool serves buffers of any size:
 * - small and large requests come from an arena — one per (pool, client) by
 *   default, so a chunk (hugepage) only ever holds one client's buffers, or
 *   one shared arena for density (`arena: "shared"`);
 * - requests at or above the direct threshold (the pool's hugepage size, or
 *   2 MiB for 4 KiB pools) take whole pages straight from the page source
 *   and give them back at once on free, like jemalloc's oversize path —
 *   except in a 4 KiB scatter-gather pool with `dirtyDecayMs: -1`, which
 *   keeps them dirty for the next direct buffer as jemalloc does when decay
 *   is off (dirtycache.ts).
 * A failed request first purges dirty chunks and retries; if it still
 * fails, nothing has changed. Buffers are zeroed when handed out. Pure.
 */
import { BufferdError } from '../../protocol/errors.js';
import { markInjected, type FaultInjector } from '../lib/faultinject.js';
import { formatSize } from '../../protocol/units.js';
import { isPowerOfTwo } from '../../protocol/attributes.js';
import type { PoolStatus } from '../../protocol/status.js';
import { PAGE, type PhysicalMemory } from '../memory/physmem.js';
import type { PageSource } from './pagesource.js';
import { backSlots, emptySlots } from './hugefault.js';
import type { CacheAttrTracker, HeldBlock } from '../memory/cacheattr.js';
import { Arena, mergeBinStats, type ArenaStats, type BinStats } from './arena.js';
import { alignedUsize, isSmall, LARGE_MINCLASS, size2usize } from './sizeclasses.js';
import { segmentsOf, type Segment } from '../memory/segments.js';
import { checkPlacement } from './placement.js';
import { DIRECT_SPARE, DirtyCache, keepsDirect } from './dirtycache.js';
import { poolEnomem } from './enomem.js';
import { MAX_BUFFER_BYTES, SMALL_POOL_CHUNK, type PoolConfig } from './poolconfig.js';
import { earliest } from '../lib/earliest.js';
import { poolMap, type PoolMapEntry } from './poolmap.js';
import { poolStatus } from './poolstatus.js';
export type { Segment } from '../memory/segments.js';
export type { PoolConfig } from './poolconfig.js';

/** What a freed buffer is left with (frozen: nothing may add to them). */
const NO_BLOCKS = Object.freeze([]) as unknown as HeldBlock[];
const NO_SEGMENTS = Object.freeze([]) as unknown as Segment[];
export type BufferKind = 'small' | 'large' | 'direct';

export interface PhysBuffer {
  readonly id: number;
  readonly pool: Pool;
  /** Bytes asked for. */
  readonly size: number;
  readonly align: number;
  /** Usable bytes: the size class, or whole pages for direct buffers. */
  readonly usize: number;
  readonly kind: BufferKind;
  /** Physical address of small and large buffers (−1 for direct ones). */
  readonly addr: number;
  readonly arena: Arena | null;
  /** The buffer's bytes, in order, as physical segments (only the backed hugepages' while some are unbacked). */
  segments: Segment[];
  /** Pages owned by a direct buffer (the backed ones, in buffer order). */
  blocks: HeldBlock[];
  /** Hugepages reserved and not yet backing the buffer (populate: false). */
  reservedPages: number;
  /** populate: false, while some hugepages are unbacked: one slot per hugepage (alloc/hugefault.ts). */
  slots?: (HeldBlock | null)[];
  readonly owner: number;
}

export class Pool {
  readonly name: string;
  readonly directThreshold: number;
  /** Fault injection (points `alloc`, and `hugepage` below it), or null. */
  faults: FaultInjector | null = null;
  private readonly arenas = new Map<number, Arena>();
  private nextArena = 0;
  private requested_ = 0;
  private directBytes = 0;
  /** Bytes of direct buffers' hugepages reserved and not yet backing them (part of directBytes). */
  private reservedBytes = 0;
  private directCount = 0;
  nmalloc = 0;
  ndalloc = 0;
  /** Purges done by arenas since dropped (the pool's count never goes back). */
  private droppedPurges = 0;
  /** Blocks of freed direct buffers kept for reuse (decay −1 only). */
  private readonly dirtyDirect: DirtyCache;
  /** Purges of the direct dirty cache. */
  private directPurges = 0;
  /** Does a freed direct buffer leave its pages in the pool (dirtycache.ts keepsDirect, as of the last decay change; read at every direct alloc and free)? */
  private keepDirty: boolean;

  constructor(
    readonly cfg: PoolConfig,
    readonly source: PageSource,
    private readonly mem: PhysicalMemory,
    private readonly attrs: CacheAttrTracker,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.name = cfg.name;
    this.dirtyDirect = new DirtyCache((b, n) => attrs.split(b, n));
    this.directThreshold = source.pageSize > PAGE ? source.pageSize : SMALL_POOL_CHUNK;
    this.keepDirty = keepsDirect(cfg, source.pageSize);
  }

  get pageSize(): number {
    return this.source.pageSize;
  }

  get maxAlign(): number {
    return this.pageSize === PAGE ? 2 ** 30 : this.pageSize;
  }

  /** Bytes of pages the pool holds from the machine. */
  get mapped(): number {
    let m = this.directBytes + this.dirtyDirect.pages * PAGE;
    for (const a of this.arenas.values()) m += a.mappedBytes;
    return m;
  }

  private canMap = (bytes: number): boolean => this.cfg.maxBytes === null || this.mapped + bytes <= this.cfg.maxBytes;

  /** Check size and alignment; EINVAL naming the field and the limit. */
  checkRequest(size: number, align: number): void {
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_BUFFER_BYTES) {
      throw new BufferdError('EINVAL', `field 'size' must be between 1 and ${MAX_BUFFER_BYTES} bytes (64 GiB) (got ${size})`);
    }
    if (!isPowerOfTwo(align) || align > this.maxAlign) {
      throw new BufferdError(
        'EINVAL',
        `field 'align' must be a power of two of at most ${formatSize(this.maxAlign)} for pool '${this.name}' (got ${align})`,
      );
    }
  }

  /** The arena key of an owner: 0 for a shared arena. */
  private arenaKey(owner: number): number {
    return this.cfg.arena === 'shared' ? 0 : owner;
  }

  private arenaFor(owner: number): Arena {
    const key = this.arenaKey(owner);
    let a = this.arenas.get(key);
    if (a === undefined) {
      a = new Arena(this.nextArena++, key, {
        source: this.source,
        chunkPages: this.directThreshold / PAGE,
        // read at each use, so a reload's setDecay reaches every arena
        dirtyDecayMs: () => this.cfg.dirtyDecayMs,
        now: this.now,
        canMap: this.canMap,
      });
      this.arenas.set(key, a);
    }
    return a;
  }

  private enomem(size: number, count: number, contiguous: boolean, minAddress = 0): BufferdError {
    return poolEnomem(this, size, count, contiguous, minAddress);
  }

  /** Does a request of this size class and alignment take whole pages straight from the page source? */
  private isDirect(usize: number, align: number): boolean {
    return usize >= this.directThreshold || align > this.directThreshold;
  }

  /** Usable bytes a request would take (its size class, or whole pages when direct; a placed buffer is always direct). */
  usizeFor(size: number, align: number, placed = false): number {
    const usize = alignedUsize(size, align);
    if (placed || this.isDirect(usize, align)) return this.directUsize(size);
    return usize;
  }

  /**
   * Usable bytes of a direct buffer: whole pages (as the system dma-buf heap
   * allocates PAGE_ALIGN(len)), or, in a pool that keeps freed direct pages
   * (decay off), jemalloc's large size class (sz_s2u: four classes per
   * doubling, at most 25 % over), so a kept extent fits the next request of
   * its class whole (dirtycache.ts).
   */
  private directUsize(size: number): number {
    // (classes from 16 KiB up are whole pages; a smaller direct buffer, direct for its alignment, takes whole pages)
    if (size > LARGE_MINCLASS && this.keepDirty) return size2usize(size);
    return Math.ceil(size / this.pageSize) * this.pageSize;
  }

  /**
   * Allocate a zeroed buffer. `populate: false` reserves hugepages for a
   * direct buffer and backs them on first use. `minAddress` places every
   * page at or above it: such a buffer takes whole pages of its own (direct),
   * as an arena's chunks may lie anywhere.
   */
  alloc(id: number, size: number, align: number, owner: number, populate = true, minAddress = 0): PhysBuffer {
    this.checkRequest(size, align);
    checkPlacement(this.cfg, this.mem, minAddress, populate);
    // a request of the direct threshold or more is direct whatever its class: skip the class lookup
    const usize = size >= this.directThreshold ? size : alignedUsize(size, align);
    const direct = minAddress > 0 || this.isDirect(usize, align);
    // the `alloc` fault point: fails on the real path (purge, no arena left behind, the same ENOMEM and figures)
    if (this.faults?.shouldFail('alloc') === true) throw markInjected(this.injectedEnomem(size, usize, direct, minAddress));
    const buf = direct ? this.allocDirect(id, size, align, owner, populate, minAddress) : this.allocArena(id, size, usize, align, owner);
    this.requested_ += size;
    this.nmalloc++;
    return buf;
  }

  private injectedEnomem(size: number, usize: number, direct: boolean, minAddress: number): BufferdError {
    this.purge(true);
    if (direct) return this.enomem(size, this.directUsize(size) / this.pageSize, this.cfg.contiguous, minAddress);
    return this.enomem(size, Math.max(1, Math.ceil(Math.min(usize, this.directThreshold) / this.pageSize)), true);
  }

  private allocArena(id: number, size: number, usize: number, align: number, owner: number): PhysBuffer {
    const created = !this.arenas.has(this.arenaKey(owner));
    const arena = this.arenaFor(owner);
    let addr = arena.alloc(usize, align);
    if (addr < 0) {
      this.purge(true);
      addr = arena.alloc(usize, align);
    }
    if (addr < 0) {
      // only an arena made for this request goes again; an existing one (and its history) stays
      if (created) {
        this.arenas.delete(arena.owner);
        this.nextArena--;
      }
      throw this.enomem(size, Math.max(1, Math.ceil(Math.min(usize, this.directThreshold) / this.pageSize)), true);
    }
    this.mem.store.zeroBytes(addr, usize);
    return { id, pool: this, size, align, usize, kind: isSmall(usize) ? 'small' : 'large', addr, arena, segments: [{ addr, len: size }], blocks: [], reservedPages: 0, slots: undefined, owner };
  }

  private allocDirect(id: number, size: number, align: number, owner: number, populate: boolean, minAddress: number): PhysBuffer {
    let usize = this.directUsize(size);
    let count = usize / this.pageSize;
    const lazy = !populate && this.source.reserve !== undefined && !this.cfg.contiguous;
    const cached = !lazy && align <= PAGE && minAddress === 0 && this.keepDirty;
    // a kept extent of the request's class is taken whole (dirtycache.ts), else the page source is asked
    let blocks = cached ? this.dirtyDirect.takeExact(count) : null;
    if (blocks === null) {
      blocks = this.acquireDirect(usize, count, align, minAddress, lazy, cached);
      if (blocks === null) {
        this.purge(true);
        blocks = this.acquireDirect(usize, count, align, minAddress, lazy, cached);
      }
      const exact = Math.ceil(size / this.pageSize);
      if (blocks === null && exact < count) {
        // the size class does not fit, the pages asked for may: no buffer fails for its rounding
        usize = exact * this.pageSize;
        count = exact;
        blocks = this.acquireDirect(usize, count, align, minAddress, lazy, cached);
      }
      if (blocks === null) throw this.enomem(size, count, this.cfg.contiguous, minAddress);
    }
    // (segments are filled below: NO_SEGMENTS until then, not a fresh empty array)
    const buf: PhysBuffer = { id, pool: this, size, align, usize, kind: 'direct', addr: -1, arena: null, segments: NO_SEGMENTS, blocks, reservedPages: lazy ? count : 0, slots: undefined, owner };
    this.directBytes += usize;
    this.directCount++;
    if (lazy) {
      this.reservedBytes += usize;
      buf.slots = emptySlots(count);
    } else {
      this.attach(buf.blocks);
      buf.segments = segmentsOf(buf.blocks, buf.size);
    }
    return buf;
  }

  /** Pages for a direct buffer from the page source (reserved only, when lazy), through the dirty cache when it keeps some; null: not now. */
  private acquireDirect(usize: number, count: number, align: number, minAddress: number, lazy: boolean, cached: boolean): HeldBlock[] | null {
    if (lazy) return this.canMap(usize) && this.source.reserve!(count) ? [] : null;
    const req = { count, contiguous: this.cfg.contiguous, align, minAddress };
    if (cached && this.dirtyDirect.count > 0) {
      // the cache keeps at most DIRECT_SPARE × the live direct pages before a miss gives the oldest back
      return this.dirtyDirect.serve(
        count,
        (n) => {
          if (!this.canMap(n * PAGE)) return null;
          req.count = n;
          return this.source.acquire(req);
        },
        (b) => this.source.release(b),
        DIRECT_SPARE * (this.directBytes / PAGE),
      );
    }
    if (!this.canMap(usize)) return null;
    return this.source.acquire(req);
  }

  private attach(blocks: HeldBlock[]): void {
    for (const b of blocks) {
      b.users++;
      // zeroed on allocation, whatever the pages held before (hugetlb_no_page: folio_zero_user)
      this.mem.store.zeroPages(b.pfn, b.npages);
    }
  }

  /** Fault in the given unbacked hugepages (slot indexes) of a populate: false buffer; returns the new pieces. */
  fault(buf: PhysBuffer, idx: number[]): Segment[] {
    if (idx.length === 0) return [];
    const pages = this.source.takeReserved!(idx.length);
    this.reservedBytes -= idx.length * this.pageSize;
    this.attach(pages);
    return backSlots(buf, idx, pages);
  }

  free(buf: PhysBuffer): void {
    if (buf.kind === 'direct') {
      for (const b of buf.blocks) b.users--;
      if (this.keepDirty) this.dirtyDirect.put(buf.blocks, buf.usize / PAGE);
      else for (const b of buf.blocks) this.source.release(b);
      if (buf.reservedPages > 0) {
        this.source.unreserve!(buf.reservedPages);
        this.reservedBytes -= buf.reservedPages * this.pageSize;
      }
      this.directBytes -= buf.usize;
      this.directCount--;
      buf.blocks = NO_BLOCKS;
    } else {
      const a = buf.arena!;
      a.free(buf.addr);
      if (a.live === 0 && a.orphan) this.dropArena(a);
    }
    buf.segments = NO_SEGMENTS;
    buf.reservedPages = 0;
    // (assigned, not deleted: a delete turns the object into a slow dictionary)
    buf.slots = undefined;
    this.requested_ -= buf.size;
    this.ndalloc++;
  }

  private dropArena(a: Arena): void {
    a.purge(true);
    if (this.arenas.get(a.owner) === a) this.arenas.delete(a.owner);
    this.droppedPurges += a.purges;
  }

  /** A reload changed the decay time: every arena reads it from the pool's config. */
  setDecay(ms: number): void {
    this.cfg.dirtyDecayMs = ms;
    this.keepDirty = keepsDirect(this.cfg, this.source.pageSize);
  }

  /** A client went away: its arena is purged and dropped once empty. */
  ownerGone(owner: number): void {
    if (this.cfg.arena === 'shared') return;
    const a = this.arenas.get(owner);
    if (a === undefined) return;
    a.orphan = true;
    if (a.live === 0) this.dropArena(a);
  }

  /** Purge due dirty chunks (all with force), and the direct dirty cache with force or once decay is on again; returns pages purged. */
  purge(force = false): number {
    let n = 0;
    for (const a of this.arenas.values()) n += a.purge(force);
    if (this.dirtyDirect.count > 0 && (force || !this.keepDirty)) {
      n += this.dirtyDirect.pages;
      for (const b of this.dirtyDirect.drain()) this.source.release(b);
      this.directPurges++;
    }
    return n;
  }

  nextDeadline(): number | null {
    // the direct dirty cache waits for no deadline, unless a reload turned decay back on
    if (this.dirtyDirect.count > 0 && !this.keepDirty) return this.now();
    return earliest(this.arenas.values(), (a) => a.nextDeadline());
  }

  /** The pool's memory as the dashboard draws it: every chunk and direct block, by use. */
  map(direct: Iterable<PhysBuffer>): PoolMapEntry[] {
    return poolMap(this, this.arenas.values(), this.dirtyDirect.mapEntries(), direct);
  }

  allArenas(): IterableIterator<Arena> {
    return this.arenas.values();
  }

  arenaStats(): ArenaStats[] {
    return [...this.arenas.values()].map((a) => a.stats());
  }

  /** Bin statistics merged over the pool's arenas. */
  binStats(): BinStats[] {
    return mergeBinStats(this.arenas.values());
  }

  status(): PoolStatus {
    return poolStatus({
      cfg: this.cfg,
      pageSize: this.pageSize,
      arenas: this.arenaStats(),
      conversions: this.attrs.stats(this.name),
      directBytes: this.directBytes,
      dirtyDirect: this.dirtyDirect.pages * PAGE,
      reservedBytes: this.reservedBytes,
      requested: this.requested_,
      directCount: this.directCount,
      purges: this.droppedPurges + this.directPurges,
      nmalloc: this.nmalloc,
      ndalloc: this.ndalloc,
    });
  }
}
