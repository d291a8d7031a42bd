/**
 * Slabs and bins for small size classes, as jemalloc's: a slab is one
 * extent of lcm(page, class size) bytes cut into equal regions with a
 * bitmap; a bin holds the slabs of one class and allocates from the
 * lowest-addressed nonfull slab, lowest free region first. Metadata is one
 * small object and one Uint32Array per slab, never one per region. Pure.
 */
import { MinHeap } from '../lib/minheap.js';
import { index2size, nregs as nregsOf, slabSize, PAGE } from './sizeclasses.js';
import type { Chunk } from './extent.js';

export class Slab {
  /** 1 = free region. */
  readonly bitmap: Uint32Array;
  nfree: number;
  inNonfull = false;
  constructor(
    readonly pfn: number,
    readonly chunk: Chunk,
    readonly bin: Bin,
  ) {
    const n = bin.nregs;
    this.bitmap = new Uint32Array(Math.ceil(n / 32));
    this.bitmap.fill(0xffffffff);
    if (n % 32 !== 0) this.bitmap[this.bitmap.length - 1] = (2 ** (n % 32) - 1) >>> 0;
    this.nfree = n;
  }

  get addr(): number {
    return this.pfn * PAGE;
  }

  /** Take the lowest free region; returns its index. */
  take(): number {
    const bm = this.bitmap;
    for (let w = 0; w < bm.length; w++) {
      const word = bm[w]!;
      if (word !== 0) {
        const low = word & -word;
        const bit = 31 - Math.clz32(low);
        bm[w] = (word & ~low) >>> 0;
        this.nfree--;
        return w * 32 + bit;
      }
    }
    throw new RangeError('slab is full');
  }

  give(reg: number): void {
    const w = reg >>> 5;
    const m = 1 << (reg & 31);
    if ((this.bitmap[w]! & m) !== 0) throw new RangeError(`double free of region ${reg} in slab at pfn ${this.pfn}`);
    this.bitmap[w] = (this.bitmap[w]! | m) >>> 0;
    this.nfree++;
  }
}

export class Bin {
  readonly size: number;
  readonly nregs: number;
  /** Pages per slab. */
  readonly slabPages: number;
  private readonly nonfull = new MinHeap();
  private readonly slabs = new Map<number, Slab>();
  private nonfullCount = 0;
  nmalloc = 0;
  ndalloc = 0;

  constructor(readonly ind: number) {
    this.size = index2size(ind);
    this.nregs = nregsOf(ind);
    this.slabPages = slabSize(ind) / PAGE;
  }

  /** Regions in use (every alloc counts in nmalloc, every free in ndalloc). */
  get curregs(): number {
    return this.nmalloc - this.ndalloc;
  }

  get curslabs(): number {
    return this.slabs.size;
  }

  get nonfullSlabs(): number {
    return this.nonfullCount;
  }

  /** Lowest-addressed slab with a free region, or undefined. */
  private lowestNonfull(): Slab | undefined {
    const h = this.nonfull;
    for (;;) {
      const pfn = h.peek();
      if (pfn === undefined) return undefined;
      const s = this.slabs.get(pfn);
      if (s !== undefined && s.inNonfull && s.nfree > 0) return s;
      h.pop();
    }
  }

  private markNonfull(s: Slab): void {
    if (s.inNonfull) return;
    s.inNonfull = true;
    this.nonfullCount++;
    this.nonfull.push(s.pfn);
    if (this.nonfull.size > 2 * this.nonfullCount + 64) {
      this.nonfull.reset([...this.slabs.values()].filter((x) => x.inNonfull).map((x) => x.pfn));
    }
  }

  private markFull(s: Slab): void {
    if (!s.inNonfull) return;
    s.inNonfull = false;
    this.nonfullCount--;
  }

  /** Allocate a region from an existing slab: [slab, region] or null when a new slab is needed. */
  alloc(): { slab: Slab; reg: number } | null {
    const s = this.lowestNonfull();
    if (s === undefined) return null;
    const reg = s.take();
    if (s.nfree === 0) this.markFull(s);
    this.nmalloc++;
    return { slab: s, reg };
  }

  /** Add a fresh slab (all regions free). */
  addSlab(pfn: number, chunk: Chunk): Slab {
    const s = new Slab(pfn, chunk, this);
    this.slabs.set(pfn, s);
    this.markNonfull(s);
    return s;
  }

  /** Free a region; returns true when the slab became empty and was removed from the bin. */
  free(s: Slab, reg: number): boolean {
    s.give(reg);
    this.ndalloc++;
    if (s.nfree === this.nregs) {
      this.markFull(s);
      this.slabs.delete(s.pfn);
      return true;
    }
    this.markNonfull(s);
    return false;
  }

  /** Bytes of metadata: the slab objects and their bitmaps (estimate). */
  metadataBytes(): number {
    // live heap entries only: stale ones are dropped lazily by lookups, which must not change the figure
    return this.slabs.size * (72 + 64 + Math.ceil(this.nregs / 32) * 4) + this.nonfullCount * 8 + 160;
  }
}
