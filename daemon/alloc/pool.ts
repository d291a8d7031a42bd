/**
 * Pools with a cache policy. A pool serves buffers of any size:
 * - small and large requests come from an arena — one per (pool, client) by
 *   default, so a chunk (hugepage) only ever holds one client's buffers, or
 *   one shared arena for density (`arena: "shared"`);
 * - requests at or above the direct threshold (the pool's hugepage size, or
 *   2 MiB for 4 KiB pools) take whole pages straight from the page source
 *   and give them back at once on free, like jemalloc's oversize path.
 * A failed request first purges dirty chunks and retries; if it still
 * fails, nothing has changed. Buffers are zeroed when handed out. Pure.
 */
import { BufferdError } from '../../protocol/errors.js';
import { markInjected, type FaultInjector } from '../lib/faultinject.js';
import { formatSize } from '../../protocol/units.js';
import { isPowerOfTwo } from '../../protocol/attributes.js';
import type { PoolStatus } from '../../protocol/status.js';
import type { CachePolicy } from '../memory/layout.js';
import { PAGE, type PhysicalMemory } from '../memory/physmem.js';
import type { PageSource } from './pagesource.js';
import type { CacheAttrTracker, HeldBlock } from '../memory/cacheattr.js';
import { Arena, type ArenaStats, type BinStats, type ChunkMap } from './arena.js';
import { alignedUsize, isSmall } from './sizeclasses.js';
import { segmentsOf, type Segment } from '../memory/segments.js';
import { checkPlacement } from './placement.js';

export type { Segment } from '../memory/segments.js';

/** A pool as configured (the config's `pools[]`, validated). */
export interface PoolConfig {
  name: string;
  cache: CachePolicy;
  pageSize: number;
  region: string;
  contiguous: boolean;
  /** Exclusive upper bound on physical addresses, or null for the whole region. */
  maxAddress: number | null;
  capability: string | null;
  maxBytes: number | null;
  arena: 'per-client' | 'shared';
  dirtyDecayMs: number;
  /** Coherency checker mode for this pool, or null for the global mode. */
  coherency: 'off' | 'warn' | 'strict' | null;
}

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
  /** The buffer's bytes, in order, as physical segments (empty until populated). */
  segments: Segment[];
  /** Pages owned by a direct buffer. */
  blocks: HeldBlock[];
  /** Hugepages reserved and not yet backing the buffer (populate: false). */
  reservedPages: number;
  readonly owner: number;
}

/** Largest single buffer: 64 GiB. */
export const MAX_BUFFER_BYTES = 64 * 2 ** 30;
/** Chunk size of 4 KiB pools: 2 MiB. */
export const SMALL_POOL_CHUNK = 2 * 1024 * 1024;

/** The least non-null value of f over items, or null. */
export function earliest<T>(items: Iterable<T>, f: (x: T) => number | null): number | null {
  let d: number | null = null;
  for (const it of items) {
    const x = f(it);
    if (x !== null && (d === null || x < d)) d = x;
  }
  return d;
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

  constructor(
    readonly cfg: PoolConfig,
    readonly source: PageSource,
    private readonly mem: PhysicalMemory,
    private readonly attrs: CacheAttrTracker,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.name = cfg.name;
    this.directThreshold = source.pageSize > PAGE ? source.pageSize : SMALL_POOL_CHUNK;
  }

  get pageSize(): number {
    return this.source.pageSize;
  }

  get maxAlign(): number {
    return this.pageSize === PAGE ? 2 ** 30 : this.pageSize;
  }

  /** Bytes of pages the pool holds from the machine. */
  get mapped(): number {
    let m = this.directBytes;
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
    const max = this.cfg.maxBytes;
    if (max !== null && this.mapped + Math.min(count * this.pageSize, this.directThreshold) > max) {
      return new BufferdError(
        'ENOMEM',
        `pool '${this.name}': cannot allocate ${formatSize(size)} (${size} bytes): the pool's limit maxBytes ${formatSize(max)} would be exceeded (${formatSize(this.mapped)} held)`,
        { pool: this.name, requested: size, maxBytes: max, inUse: this.mapped },
      );
    }
    const s = this.source.shortfall({ count, contiguous, align: 1, minAddress });
    const at = minAddress > 0 ? ` at or above 0x${minAddress.toString(16)}` : '';
    return new BufferdError('ENOMEM', `pool '${this.name}': cannot allocate ${formatSize(size)} (${size} bytes)${at}: ${s.text}`, {
      pool: this.name,
      requested: size,
      ...s.details,
    });
  }

  /** Does a request of this size class and alignment take whole pages straight from the page source? */
  private isDirect(usize: number, align: number): boolean {
    return usize >= this.directThreshold || align > this.directThreshold;
  }

  /** Usable bytes a request would take (its size class, or whole pages when direct; a placed buffer is always direct). */
  usizeFor(size: number, align: number, placed = false): number {
    const usize = alignedUsize(size, align);
    if (placed || this.isDirect(usize, align)) return Math.ceil(size / this.pageSize) * this.pageSize;
    return usize;
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
    const usize = alignedUsize(size, align);
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
    if (direct) return this.enomem(size, Math.ceil(size / this.pageSize), this.cfg.contiguous, minAddress);
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
    return { id, pool: this, size, align, usize, kind: isSmall(usize) ? 'small' : 'large', addr, arena, segments: [{ addr, len: size }], blocks: [], reservedPages: 0, owner };
  }

  private allocDirect(id: number, size: number, align: number, owner: number, populate: boolean, minAddress: number): PhysBuffer {
    const count = Math.ceil(size / this.pageSize);
    const usize = count * this.pageSize;
    const req = { count, contiguous: this.cfg.contiguous, align, minAddress };
    const lazy = !populate && this.source.reserve !== undefined && !this.cfg.contiguous;
    const attempt = (): HeldBlock[] | null => {
      if (!this.canMap(usize)) return null;
      if (lazy) return this.source.reserve!(count) ? [] : null;
      return this.source.acquire(req);
    };
    let blocks = attempt();
    if (blocks === null) {
      this.purge(true);
      blocks = attempt();
    }
    if (blocks === null) throw this.enomem(size, count, this.cfg.contiguous, minAddress);
    const buf: PhysBuffer = { id, pool: this, size, align, usize, kind: 'direct', addr: -1, arena: null, segments: [], blocks, reservedPages: lazy ? count : 0, owner };
    this.directBytes += usize;
    this.directCount++;
    if (lazy) this.reservedBytes += usize;
    else this.attach(buf);
    return buf;
  }

  private attach(buf: PhysBuffer): void {
    for (const b of buf.blocks) {
      b.users++;
      // zeroed on allocation, whatever the pages held before
      this.mem.store.zeroPages(b.pfn, b.npages);
    }
    buf.segments = segmentsOf(buf.blocks, buf.size);
  }

  /** Back a buffer's reserved hugepages (first touch). */
  populate(buf: PhysBuffer): void {
    if (buf.reservedPages === 0) return;
    buf.blocks = this.source.takeReserved!(buf.reservedPages);
    this.reservedBytes -= buf.reservedPages * this.pageSize;
    buf.reservedPages = 0;
    this.attach(buf);
  }

  free(buf: PhysBuffer): void {
    if (buf.kind === 'direct') {
      for (const b of buf.blocks) {
        b.users--;
        this.source.release(b);
      }
      if (buf.reservedPages > 0) {
        this.source.unreserve!(buf.reservedPages);
        this.reservedBytes -= buf.reservedPages * this.pageSize;
      }
      this.directBytes -= buf.usize;
      this.directCount--;
      buf.blocks = [];
    } else {
      const a = buf.arena!;
      a.free(buf.addr);
      if (a.live === 0 && a.orphan) this.dropArena(a);
    }
    buf.segments = [];
    buf.reservedPages = 0;
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
  }

  /** A client went away: its arena is purged and dropped once empty. */
  ownerGone(owner: number): void {
    if (this.cfg.arena === 'shared') return;
    const a = this.arenas.get(owner);
    if (a === undefined) return;
    a.orphan = true;
    if (a.live === 0) this.dropArena(a);
  }

  /** Purge due dirty chunks (all with force); returns pages purged. */
  purge(force = false): number {
    let n = 0;
    for (const a of this.arenas.values()) n += a.purge(force);
    return n;
  }

  nextDeadline(): number | null {
    return earliest(this.arenas.values(), (a) => a.nextDeadline());
  }

  /** The pool's memory as the dashboard draws it: every chunk and direct block, by use. */
  map(direct: Iterable<PhysBuffer>): (ChunkMap & { direct: number; owner: number })[] {
    const out: (ChunkMap & { direct: number; owner: number })[] = [];
    for (const a of this.arenas.values()) for (const c of a.chunkMap()) out.push({ ...c, direct: 0, owner: a.owner });
    for (const b of direct) {
      if (b.pool !== this || b.kind !== 'direct') continue;
      for (const blk of b.blocks) {
        const size = blk.npages * PAGE;
        out.push({ addr: blk.pfn * PAGE, size, slab: 0, large: 0, direct: size, free: 0, dirty: false, owner: b.owner, runs: [[0, blk.npages, 2, 100]] });
      }
    }
    return out.sort((x, y) => x.addr - y.addr);
  }

  allArenas(): IterableIterator<Arena> {
    return this.arenas.values();
  }

  arenaStats(): ArenaStats[] {
    return [...this.arenas.values()].map((a) => a.stats());
  }

  /** Bin statistics merged over the pool's arenas. */
  binStats(): BinStats[] {
    const merged = new Map<number, BinStats>();
    for (const a of this.arenas.values()) {
      for (const b of a.binStats()) {
        const m = merged.get(b.ind);
        if (m === undefined) merged.set(b.ind, { ...b });
        else for (const k of ['curregs', 'curslabs', 'nonfull', 'nmalloc', 'ndalloc'] as const) m[k] += b[k];
      }
    }
    return [...merged.values()].sort((x, y) => x.ind - y.ind);
  }

  status(): PoolStatus {
    const conv = this.attrs.stats(this.name);
    const arenas = this.arenaStats();
    const sum = (k: keyof ArenaStats) => arenas.reduce((acc, a) => acc + a[k], 0);
    const allocated = sum('allocated') + this.directBytes;
    const active = sum('active') + this.directBytes;
    const mapped = sum('mapped') + this.directBytes;
    return {
      name: this.name,
      cache: this.cfg.cache,
      pageSize: this.pageSize,
      region: this.cfg.region,
      contiguous: this.cfg.contiguous,
      maxAddress: this.cfg.maxAddress,
      capability: this.cfg.capability,
      maxBytes: this.cfg.maxBytes,
      arena: this.cfg.arena,
      dirtyDecayMs: this.cfg.dirtyDecayMs,
      // reserved hugepages count as mapped (and against maxBytes) but are not held until first use
      pages: Math.ceil((mapped - this.reservedBytes) / this.pageSize),
      requested: this.requested_,
      allocated,
      active,
      mapped,
      resident: mapped - this.reservedBytes,
      dirty: sum('dirty'),
      retained: sum('retained'),
      metadata: sum('metadata'),
      fragmentation: allocated === 0 ? 1 : Math.round((active / allocated) * 1000) / 1000,
      arenas: arenas.length,
      // every successful alloc counts in nmalloc, every free in ndalloc
      buffers: this.nmalloc - this.ndalloc,
      directBuffers: this.directCount,
      purges: this.droppedPurges + sum('purges'),
      nmalloc: this.nmalloc,
      ndalloc: this.ndalloc,
      conversions: conv.conversions,
      conversionCostUs: Math.round(conv.costNs / 1000),
    };
  }
}
