/**
 * The three allocators the suballoc benchmark replays traces against: this
 * daemon's arena (and its pool for direct sizes), @thi.ng/malloc's MemPool,
 * and a naive first-fit free list.
 */
import { MemPool } from '@thi.ng/malloc';
import { Machine } from '../daemon/alloc/machine.js';
import type { MachineConfig } from '../daemon/config/machine-config.js';
import type { Arena } from '../daemon/alloc/arena.js';
import type { PhysBuffer, Pool } from '../daemon/alloc/pool.js';
import { SIZES, size2usize } from '../daemon/alloc/sizeclasses.js';

const MiB = 2 ** 20;
export const PAGE = 4096;

export interface Allocator {
  /** Address (opaque token for the Machine path), or −1 on failure. */
  alloc(size: number): number;
  free(addr: number, size: number): void;
  /** Bytes of pages held now (sampled after every alloc by the instrumented replay). */
  footprint(): number;
  /** Active bytes (pages touched) and allocated (usable) bytes, given the live blocks. */
  usage(addrs: number[], sizes: number[]): { active: number; allocated: number };
}

const roundUp = (x: number, k: number) => Math.ceil(x / k) * k;

/** Bytes of the distinct 4 KiB pages touched by the ranges [start, end). */
export function pagesTouched(ranges: [number, number][]): number {
  ranges.sort((x, y) => x[0] - y[0]);
  let last = -1;
  let n = 0;
  for (const [s, e] of ranges) {
    const p0 = Math.max(Math.floor(s / PAGE), last + 1);
    const p1 = Math.floor((e - 1) / PAGE);
    if (p1 >= p0) n += p1 - p0 + 1;
    last = Math.max(last, p1);
  }
  return n * PAGE;
}

/**
 * Baseline C, the textbook allocator: free ranges of one big address space
 * in two sorted arrays (start, length); alloc takes the first range that
 * fits (linear scan from the lowest address) and carves its front; free
 * finds its place by binary search and coalesces with both neighbours.
 * 16-byte granularity, no headers (it relies on the size given to free).
 */
export class FirstFit implements Allocator {
  private st = new Float64Array(1024);
  private ln = new Float64Array(1024);
  private n = 1;
  private high = 0;
  constructor(space = 2 ** 46) {
    this.ln[0] = space;
  }
  alloc(size: number): number {
    const need = (size + 15) & ~15;
    const st = this.st;
    const ln = this.ln;
    for (let i = 0; i < this.n; i++) {
      if (ln[i]! < need) continue;
      const a = st[i]!;
      if (ln[i] === need) this.remove(i);
      else {
        st[i] = a + need;
        ln[i] = ln[i]! - need;
      }
      if (a + need > this.high) this.high = a + need;
      return a;
    }
    return -1;
  }
  free(addr: number, size: number): void {
    const need = (size + 15) & ~15;
    const st = this.st;
    const ln = this.ln;
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (st[mid]! < addr) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > 0 && st[lo - 1]! + ln[lo - 1]! === addr;
    const next = lo < this.n && addr + need === st[lo];
    if (prev && next) {
      ln[lo - 1] = ln[lo - 1]! + need + ln[lo]!;
      this.remove(lo);
    } else if (prev) ln[lo - 1] = ln[lo - 1]! + need;
    else if (next) {
      st[lo] = addr;
      ln[lo] = ln[lo]! + need;
    } else this.insert(lo, addr, need);
  }
  private remove(i: number): void {
    this.st.copyWithin(i, i + 1, this.n);
    this.ln.copyWithin(i, i + 1, this.n);
    this.n--;
  }
  private insert(i: number, s: number, l: number): void {
    if (this.n === this.st.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.st = grow(this.st);
      this.ln = grow(this.ln);
    }
    this.st.copyWithin(i + 1, i, this.n);
    this.ln.copyWithin(i + 1, i, this.n);
    this.st[i] = s;
    this.ln[i] = l;
    this.n++;
  }
  footprint(): number {
    return roundUp(this.high, PAGE);
  }
  usage(addrs: number[], sizes: number[]) {
    const r: [number, number][] = addrs.map((a, i) => [a, a + ((sizes[i]! + 15) & ~15)]);
    return { active: pagesTouched(r), allocated: sizes.reduce((s, x) => s + ((x + 15) & ~15), 0) };
  }
}

/** Baseline B: @thi.ng/malloc's MemPool over one ArrayBuffer (reused between runs; a new MemPool resets it). */
export class Thing implements Allocator {
  readonly pool: MemPool;
  constructor(buf: ArrayBuffer) {
    this.pool = new MemPool({ buf });
  }
  alloc(size: number): number {
    const p = this.pool.malloc(size);
    return p === 0 ? -1 : p;
  }
  free(addr: number): void {
    this.pool.free(addr);
  }
  /** `top` (its brk) is protected in the typings, public at run time. */
  private get inner() {
    return this.pool as unknown as { top: number; u32: Uint32Array };
  }
  footprint(): number {
    return roundUp(this.inner.top, PAGE);
  }
  usage(addrs: number[]) {
    // a block is an 8-byte header (size, next) at addr − 8, then the data
    const u32 = this.inner.u32;
    const r: [number, number][] = addrs.map((a) => [a - 8, a - 8 + u32[(a - 8) >>> 2]!]);
    return { active: pagesTouched(r), allocated: r.reduce((s, [b, e]) => s + (e - b - 8), 0) };
  }
}

/** Smallest request the Pool would serve on its direct path (usize ≥ 2 MiB). */
const DIRECT = 2 * MiB;
const DIRECT_FROM = SIZES[SIZES.indexOf(DIRECT) - 1]! + 1;

/** A fresh machine and the Arena of pool `p` (4 KiB pages, no decay), taken from a first buffer. */
export function freshArena(cfg: MachineConfig): { m: Machine; pool: Pool; arena: Arena } {
  const m = new Machine(cfg, () => 0);
  const buf = m.alloc({ pool: 'p', size: 8, owner: 1 });
  m.free(buf);
  return { m, pool: m.pool('p'), arena: buf.arena! };
}

/**
 * A: this allocator's Arena, driven directly (alloc(size2usize(size), 1),
 * free(addr)). Requests the Pool would not give to an arena (usize ≥ 2 MiB:
 * mstress's ×10000 objects) take the Pool's direct path, as in the daemon.
 * Footprint = the pool's `mapped` (chunks held + direct pages); usage =
 * the pool's active / allocated (arena stats plus direct pages).
 */
export class Ours implements Allocator {
  private readonly pool: Pool;
  private readonly arena: Arena;
  private readonly direct = new Map<number, PhysBuffer>();
  private id = 1e9;
  constructor(cfg: MachineConfig) {
    ({ pool: this.pool, arena: this.arena } = freshArena(cfg));
  }
  alloc(size: number): number {
    if (size < DIRECT_FROM) return this.arena.alloc(size2usize(size), 1);
    const b = this.pool.alloc(this.id++, size, 1, 1);
    this.direct.set(b.segments[0]!.addr, b);
    return b.segments[0]!.addr;
  }
  free(addr: number, size: number): void {
    if (size < DIRECT_FROM) this.arena.free(addr);
    else {
      this.pool.free(this.direct.get(addr)!);
      this.direct.delete(addr);
    }
  }
  footprint(): number {
    return this.pool.mapped;
  }
  usage() {
    const s = this.pool.status();
    return { active: s.active, allocated: s.allocated };
  }
}

/**
 * A for the large trace: the real Machine path, m.alloc / m.free (buffer
 * objects, ENOMEM checks, zeroing) on pool `p` (4 KiB pages: 5–25 MiB goes
 * the direct path, scatter-gathered from the buddy allocator) or `h` (2 MiB
 * hugepages, direct too). An arena never sees these sizes: its chunks are
 * 2 MiB. The address handed back is the buffer id.
 */
export class OursMachine implements Allocator {
  private readonly m: Machine;
  constructor(
    cfg: MachineConfig,
    private readonly poolName: string,
  ) {
    this.m = new Machine(cfg, () => 0);
  }
  alloc(size: number): number {
    try {
      return this.m.alloc({ pool: this.poolName, size, owner: 1 }).id;
    } catch {
      return -1;
    }
  }
  /** The buffer by id from the machine's own table (as the daemon finds it), not a second map of the bench's. */
  free(id: number): void {
    this.m.free(this.m.buffer(id)!);
  }
  footprint(): number {
    return this.m.pool(this.poolName).mapped;
  }
  usage() {
    const s = this.m.pool(this.poolName).status();
    return { active: s.active, allocated: s.allocated };
  }
}

