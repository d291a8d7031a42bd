/**
 * An arena, as jemalloc's: it holds chunks of physical memory from its
 * pool's page source (hugepages, or 2 MiB buddy blocks for 4 KiB pools) and
 * carves them into slabs for small classes and page-multiple extents for
 * large ones. Frees find their slab or extent through an address map (the
 * role of jemalloc's rtree). A chunk left empty is dirty; after the pool's
 * dirtyDecayMs it is purged back to the page source (0 purges at once, −1
 * never). Clock injected; pure: no I/O, no timers.
 */
import { ExtentSet, type Chunk } from './extent.js';
import { Bin, type Slab } from './slab.js';
import { NBINS, PAGE, isSmall, size2index } from './sizeclasses.js';
import type { PageSource } from './pagesource.js';
import type { ArenaStatus, BinStatus } from '../../protocol/status.js';

/** One chunk as the dashboard draws it (see Arena.chunkMap). */
export interface ChunkMap {
  addr: number;
  size: number;
  slab: number;
  large: number;
  free: number;
  dirty: boolean;
  runs: [number, number, number, number][];
}

/** A large allocation: one extent of usize bytes. */
interface Large {
  pfn: number;
  npages: number;
  usize: number;
  chunk: Chunk;
}

export interface ArenaEnv {
  source: PageSource;
  /** Preferred chunk size in 4 KiB pages (a hugepage, or 512 for 4 KiB pools). */
  chunkPages: number;
  /** The pool's decay time in ms, read at each use (0 purges at once, −1 never). */
  dirtyDecayMs(): number;
  now(): number;
  /** May the pool map this many more bytes (maxBytes)? */
  canMap(bytes: number): boolean;
}

export type ArenaStats = ArenaStatus;
export type BinStats = BinStatus;

export class Arena {
  private readonly extents = new ExtentSet();
  private readonly bins: (Bin | undefined)[] = new Array(NBINS).fill(undefined);
  /** Page → slab (every page of a slab) or large allocation (first page). */
  private readonly rtree = new Map<number, Slab | Large>();
  private readonly chunks = new Set<Chunk>();
  /** Empty chunks by the time they became empty (insertion order = time order). */
  private readonly dirty = new Map<Chunk, number>();
  private allocated_ = 0;
  private activePages = 0;
  private mappedPages = 0;
  private dirtyPages = 0;
  private largeCount = 0;
  nmalloc = 0;
  ndalloc = 0;
  purges = 0;
  purgedPages = 0;
  /** The owner disconnected: purge and drop the arena once it is empty. */
  orphan = false;

  constructor(
    readonly id: number,
    readonly owner: number,
    private readonly env: ArenaEnv,
  ) {}

  /** Allocations not yet freed (every successful alloc counts in nmalloc, every free in ndalloc). */
  get live(): number {
    return this.nmalloc - this.ndalloc;
  }

  get mappedBytes(): number {
    return this.mappedPages * PAGE;
  }

  /** Get n pages (aligned) from free extents, taking a new chunk if needed. */
  private carve(n: number, alignPages: number): { pfn: number; chunk: Chunk } | null {
    let r = this.extents.carve(n, alignPages);
    if (r === null) {
      if (!this.grow(n, alignPages)) return null;
      r = this.extents.carve(n, alignPages)!;
    }
    const c = r.chunk;
    if (c.dirtySince >= 0) {
      this.dirty.delete(c);
      this.dirtyPages -= c.npages;
      c.dirtySince = -1;
    }
    c.usedPages += n;
    this.activePages += n;
    return r;
  }

  /** Take one more chunk from the page source. */
  private grow(n: number, alignPages: number): boolean {
    const { source, chunkPages } = this.env;
    const tries: { count: number; align: number; pages: number }[] = [];
    if (source.pageSize > PAGE) {
      tries.push({ count: 1, align: source.pageSize, pages: source.pageSize / PAGE });
    } else {
      tries.push({ count: chunkPages, align: chunkPages * PAGE, pages: chunkPages });
      if (n < chunkPages) tries.push({ count: n, align: alignPages * PAGE, pages: n });
    }
    for (const t of tries) {
      if (t.pages < n || !this.env.canMap(t.pages * PAGE)) continue;
      const blocks = source.acquire({ count: t.count, contiguous: true, align: t.align });
      if (blocks === null) continue;
      const b = blocks[0]!;
      const chunk: Chunk = { pfn: b.pfn, npages: b.npages, block: b, usedPages: 0, dirtySince: -1 };
      this.chunks.add(chunk);
      this.mappedPages += b.npages;
      this.extents.release(chunk, chunk.pfn, chunk.npages);
      return true;
    }
    return false;
  }

  private releasePages(chunk: Chunk, pfn: number, n: number): void {
    chunk.usedPages -= n;
    this.activePages -= n;
    this.extents.release(chunk, pfn, n);
    if (chunk.usedPages === 0) {
      chunk.dirtySince = this.env.now();
      this.dirty.set(chunk, chunk.dirtySince);
      this.dirtyPages += chunk.npages;
      if (this.env.dirtyDecayMs() === 0) this.purgeChunk(chunk);
    }
  }

  /**
   * Allocate usize bytes (a size class: small ≤ 14 KiB, else a page
   * multiple) aligned to `align`. Returns the physical address, or −1 when
   * no chunk could be had.
   */
  alloc(usize: number, align: number): number {
    let addr: number;
    let chunk: Chunk;
    if (isSmall(usize)) {
      const ind = size2index(usize);
      // a bin is kept once it has had a slab: a failed request leaves no trace
      const bin = this.bins[ind] ?? new Bin(ind);
      let r = bin.alloc();
      if (r === null) {
        const c = this.carve(bin.slabPages, 1);
        if (c === null) return -1;
        this.bins[ind] = bin;
        const slab = bin.addSlab(c.pfn, c.chunk);
        for (let i = 0; i < bin.slabPages; i++) this.rtree.set(c.pfn + i, slab);
        r = bin.alloc()!;
      }
      addr = r.slab.addr + r.reg * bin.size;
      chunk = r.slab.chunk;
    } else {
      const npages = Math.ceil(usize / PAGE);
      const c = this.carve(npages, Math.max(1, Math.floor(align / PAGE)));
      if (c === null) return -1;
      this.rtree.set(c.pfn, { pfn: c.pfn, npages, usize, chunk: c.chunk });
      this.largeCount++;
      addr = c.pfn * PAGE;
      chunk = c.chunk;
    }
    chunk.block.users++;
    this.allocated_ += usize;
    this.nmalloc++;
    return addr;
  }

  /** Free an allocation by address; returns its usable size. */
  free(addr: number): number {
    const pfn = Math.floor(addr / PAGE);
    const o = this.rtree.get(pfn);
    if (o === undefined) throw new RangeError(`free of 0x${addr.toString(16)}: not allocated in arena ${this.id}`);
    let usize: number;
    if ('bin' in o) {
      const bin = o.bin;
      const off = addr - o.addr;
      if (off % bin.size !== 0) throw new RangeError(`free of 0x${addr.toString(16)}: not a region start`);
      usize = bin.size;
      const emptied = bin.free(o, off / bin.size);
      // the block loses its user before the pages are released: with decay 0 they may be purged at once
      o.chunk.block.users--;
      if (emptied) {
        for (let i = 0; i < bin.slabPages; i++) this.rtree.delete(o.pfn + i);
        this.releasePages(o.chunk, o.pfn, bin.slabPages);
      }
    } else {
      if (addr !== o.pfn * PAGE) throw new RangeError(`free of 0x${addr.toString(16)}: not an allocation start`);
      this.rtree.delete(o.pfn);
      this.largeCount--;
      usize = o.usize;
      o.chunk.block.users--;
      this.releasePages(o.chunk, o.pfn, o.npages);
    }
    this.allocated_ -= usize;
    this.ndalloc++;
    return usize;
  }

  private purgeChunk(c: Chunk): void {
    if (!this.extents.takeChunk(c)) throw new RangeError(`chunk at pfn ${c.pfn} is not empty`);
    this.chunks.delete(c);
    this.dirty.delete(c);
    this.dirtyPages -= c.npages;
    this.mappedPages -= c.npages;
    this.purges++;
    this.purgedPages += c.npages;
    this.env.source.release(c.block);
  }

  /** Purge dirty chunks whose decay time has passed (all of them with force). Returns pages purged. */
  purge(force = false): number {
    const decay = this.env.dirtyDecayMs();
    if (!force && decay < 0) return 0;
    const now = this.env.now();
    let n = 0;
    for (const [c, since] of this.dirty) {
      if (!force && since + decay > now) break;
      n += c.npages;
      this.purgeChunk(c);
    }
    return n;
  }

  /** When the next dirty chunk becomes due, or null. */
  nextDeadline(): number | null {
    const decay = this.env.dirtyDecayMs();
    if (decay < 0) return null;
    for (const since of this.dirty.values()) return since + decay;
    return null;
  }

  /** Held chunks (for maps and invariant checks). */
  allChunks(): IterableIterator<Chunk> {
    return this.chunks.values();
  }

  freeExtents() {
    return this.extents.all();
  }

  /**
   * Each chunk's layout for the dashboard map: totals by use, whether it is
   * dirty (empty, decaying), and its used runs as [first page offset, pages,
   * kind (0 slab, 1 large extent), fill % (slabs: regions in use)].
   */
  chunkMap(): ChunkMap[] {
    const byChunk = new Map<Chunk, ChunkMap>();
    const seen = new Set<object>();
    for (const c of this.chunks) byChunk.set(c, { addr: c.pfn * PAGE, size: c.npages * PAGE, slab: 0, large: 0, free: 0, dirty: c.dirtySince >= 0, runs: [] });
    for (const o of this.rtree.values()) {
      if (seen.has(o)) continue;
      seen.add(o);
      const m = byChunk.get(o.chunk);
      if (m === undefined) continue;
      if ('bin' in o) {
        m.slab += o.bin.slabPages * PAGE;
        m.runs.push([o.pfn - o.chunk.pfn, o.bin.slabPages, 0, Math.round((100 * (o.bin.nregs - o.nfree)) / o.bin.nregs)]);
      } else {
        m.large += o.npages * PAGE;
        m.runs.push([o.pfn - o.chunk.pfn, o.npages, 1, 100]);
      }
    }
    const out = [...byChunk.values()].sort((a, b) => a.addr - b.addr);
    for (const m of out) {
      m.free = m.size - m.slab - m.large;
      m.runs.sort((a, b) => a[0] - b[0]);
    }
    return out;
  }

  metadataBytes(): number {
    let m = 256 + this.rtree.size * 40 + this.extents.count * 120 + this.chunks.size * 96 + this.largeCount * 64 + this.dirty.size * 40;
    for (const b of this.bins) if (b !== undefined) m += b.metadataBytes();
    return m;
  }

  stats(): ArenaStats {
    const mapped = this.mappedPages * PAGE;
    const active = this.activePages * PAGE;
    const dirty = this.dirtyPages * PAGE;
    return {
      id: this.id,
      owner: this.owner,
      allocated: this.allocated_,
      active,
      mapped,
      resident: mapped,
      dirty,
      retained: mapped - active - dirty,
      metadata: this.metadataBytes(),
      chunks: this.chunks.size,
      purges: this.purges,
      purged: this.purgedPages * PAGE,
      nmalloc: this.nmalloc,
      ndalloc: this.ndalloc,
      live: this.live,
    };
  }

  binStats(): BinStats[] {
    const out: BinStats[] = [];
    for (const b of this.bins) {
      if (b === undefined) continue;
      out.push({
        ind: b.ind,
        size: b.size,
        nregs: b.nregs,
        slabSize: b.slabPages * PAGE,
        curregs: b.curregs,
        curslabs: b.curslabs,
        nonfull: b.nonfullSlabs,
        nmalloc: b.nmalloc,
        ndalloc: b.ndalloc,
      });
    }
    return out;
  }
}

/** Bin statistics of several arenas merged by size class (a pool's view). */
export function mergeBinStats(arenas: Iterable<Arena>): BinStats[] {
  const merged = new Map<number, BinStats>();
  for (const a of arenas) {
    for (const b of a.binStats()) {
      const m = merged.get(b.ind);
      if (m === undefined) merged.set(b.ind, { ...b });
      else for (const k of ['curregs', 'curslabs', 'nonfull', 'nmalloc', 'ndalloc'] as const) m[k] += b[k];
    }
  }
  return [...merged.values()].sort((x, y) => x.ind - y.ind);
}
