/**
 * Helpers of the `suballoc` benchmark: a seeded PRNG, the deterministic
 * traces (generated once as arrays of ops, then replayed on every
 * allocator), the three allocators behind one small interface, and the
 * replay loops (a bare timed one, and an instrumented one for footprint and
 * fragmentation).
 */
import type { Allocator } from './suballoc-allocators.js';
import { prng } from './harness.js';

export { prng };
export * from './suballoc-allocators.js';


/** One 64 GiB DRAM region; `p`: 4 KiB write-back pool, `h`: 2 MiB hugepage pool; decay off. `q`: as `p` with decay on (0: pages go back at once). */
export const RAW = {
  memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64G', kind: 'dram' }] },
  hugepages: [{ size: '2M', region: 'dram', nr: 320 }],
  pools: [
    { name: 'p', cache: 'writeback', pageSize: '4K', region: 'dram', dirtyDecayMs: -1 },
    { name: 'h', cache: 'writeback', pageSize: '2M', region: 'dram', dirtyDecayMs: -1 },
    { name: 'q', cache: 'writeback', pageSize: '4K', region: 'dram', dirtyDecayMs: 0 },
  ],
};

const MiB = 2 ** 20;



/**
 * A trace: op i allocates size[i] bytes into slot[i] (size > 0) or frees
 * the block in slot[i], of −size[i] bytes (size < 0; every allocator may use
 * the size, as C's free_sized). Slots are storage indices recycled by the
 * generator. `steadyAt`: fragmentation is measured after this many ops.
 */
export interface Trace {
  name: string;
  size: Int32Array;
  slot: Int32Array;
  nslots: number;
  steadyAt: number;
}

class Builder {
  private readonly sizes: number[] = [];
  private readonly slots: number[] = [];
  private readonly spare: number[] = [];
  private readonly live: number[] = [];
  private nslots = 0;
  mark = -1;
  alloc(size: number): number {
    const s = this.spare.pop() ?? this.nslots++;
    this.sizes.push(size);
    this.slots.push(s);
    this.live[s] = size;
    return s;
  }
  free(s: number): void {
    this.sizes.push(-this.live[s]!);
    this.slots.push(s);
    this.spare.push(s);
  }
  get length(): number {
    return this.sizes.length;
  }
  build(name: string): Trace {
    const steadyAt = this.mark < 0 ? this.sizes.length : this.mark;
    return { name, size: Int32Array.from(this.sizes), slot: Int32Array.from(this.slots), nslots: this.nslots, steadyAt };
  }
}

/** larson-like: 5,000 live slots; each step frees a random one and refills it with [8, 1000) bytes. */
export function larson(steps: number, seed = 1): Trace {
  const r = prng(seed);
  const b = new Builder();
  const live = Array.from({ length: 5000 }, () => b.alloc(8 + Math.floor(r() * 992)));
  for (let i = 0; i < steps; i++) {
    const k = Math.floor(r() * live.length);
    b.free(live[k]!);
    live[k] = b.alloc(8 + Math.floor(r() * 992));
  }
  return b.build('larson');
}

/**
 * mstress-like (after mimalloc-bench's mstress): rounds of BATCH objects of
 * 8..512 B (powers of two), 1% of them ×100 larger, of those 10% ×1000 and
 * 1% ×10000 (up to 5 MiB); each round frees a random half of its batch and
 * keeps the other half in a retained set of RETAIN slots, replacing (and
 * freeing) a random earlier survivor each time.
 */
export function mstress(rounds: number, seed = 2): Trace {
  const RETAIN = 5000;
  const BATCH = 2000;
  const r = prng(seed);
  const b = new Builder();
  const size = () => {
    let s = 8 << Math.floor(r() * 7);
    if (r() < 0.01) {
      const u = r();
      s *= u < 0.01 ? 10000 : u < 0.1 ? 1000 : 100;
    }
    return s;
  };
  const retained = new Int32Array(RETAIN).fill(-1);
  for (let round = 0; round < rounds; round++) {
    const batch = Array.from({ length: BATCH }, () => b.alloc(size()));
    for (let i = BATCH - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [batch[i], batch[j]] = [batch[j]!, batch[i]!];
    }
    for (let i = 0; i < BATCH / 2; i++) b.free(batch[i]!);
    for (let i = BATCH / 2; i < BATCH; i++) {
      const q = Math.floor(r() * RETAIN);
      if (retained[q]! >= 0) b.free(retained[q]!);
      retained[q] = batch[i]!;
    }
  }
  return b.build('mstress');
}

/**
 * glibc-simple-like (after glibc's bench-malloc-simple): for n in {25, 100,
 * 400, 1600} and sizes 16/32/64 B, `reps` times: allocate n blocks, free them
 * in order, allocate n again, free them in reverse order. Fragmentation is
 * measured with the last 1,600 × 64 B blocks live.
 */
export function glibcSimple(reps: number): Trace {
  const b = new Builder();
  for (const n of [25, 100, 400, 1600]) {
    for (const size of [16, 32, 64]) {
      for (let rep = 0; rep < reps; rep++) {
        let ids = Array.from({ length: n }, () => b.alloc(size));
        for (const s of ids) b.free(s);
        ids = Array.from({ length: n }, () => b.alloc(size));
        b.mark = b.length;
        for (let i = n - 1; i >= 0; i--) b.free(ids[i]!);
      }
    }
  }
  return b.build('glibc-simple');
}

/** large: 20 live slots, `steps` replacements, sizes uniform in [5, 25) MiB. */
export function large(steps: number, seed = 4): Trace {
  const r = prng(seed);
  const b = new Builder();
  const sz = () => 5 * MiB + Math.floor(r() * 20 * MiB);
  const live = Array.from({ length: 20 }, () => b.alloc(sz()));
  for (let i = 0; i < steps; i++) {
    const k = Math.floor(r() * live.length);
    b.free(live[k]!);
    live[k] = b.alloc(sz());
  }
  return b.build('large');
}

export interface Timed {
  ops: number;
  failures: number;
  seconds: number;
}

/** Replay the first `limit` ops as fast as possible. Ops = allocs attempted + frees done. */
export function replay(a: Allocator, t: Trace, limit = t.size.length): Timed {
  const addr = new Float64Array(t.nslots);
  const { size, slot } = t;
  let ops = 0;
  let failures = 0;
  const t0 = performance.now();
  for (let i = 0; i < limit; i++) {
    const s = size[i]!;
    const k = slot[i]!;
    if (s > 0) {
      const p = a.alloc(s);
      addr[k] = p;
      if (p < 0) failures++;
      ops++;
    } else {
      const p = addr[k]!;
      if (p >= 0) {
        a.free(p, -s);
        ops++;
      }
    }
  }
  return { ops, failures, seconds: (performance.now() - t0) / 1000 };
}

export interface Probed {
  failures: number;
  peakFootprint: number;
  active: number;
  allocated: number;
}

/** Replay with the footprint sampled after every alloc and usage taken at t.steadyAt (untimed). */
export function probe(a: Allocator, t: Trace): Probed {
  const addr = new Float64Array(t.nslots).fill(-1);
  const cur = new Int32Array(t.nslots);
  const { size, slot } = t;
  let failures = 0;
  let peak = a.footprint();
  let u = { active: 0, allocated: 0 };
  for (let i = 0; i <= size.length; i++) {
    if (i === t.steadyAt) {
      const addrs: number[] = [];
      const sizes: number[] = [];
      for (let k = 0; k < t.nslots; k++) {
        if (addr[k]! >= 0) {
          addrs.push(addr[k]!);
          sizes.push(cur[k]!);
        }
      }
      u = a.usage(addrs, sizes);
    }
    if (i === size.length) break;
    const s = size[i]!;
    const k = slot[i]!;
    if (s > 0) {
      addr[k] = a.alloc(s);
      cur[k] = s;
      if (addr[k]! < 0) failures++;
      peak = Math.max(peak, a.footprint());
    } else if (addr[k]! >= 0) {
      a.free(addr[k]!, -s);
      addr[k] = -1;
    }
  }
  return { failures, peakFootprint: peak, ...u };
}
