/**
 * suballoc: the jemalloc-style sub-allocator (daemon/alloc/arena.ts) against
 * @thi.ng/malloc's MemPool (baseline B) and a naive first-fit free list
 * (baseline C, in suballoc-traces.ts), on the same deterministic seeded
 * traces, in the same process and run:
 *
 *   larson        5,000 live slots, random free + alloc of [8, 1000) B
 *   mstress       rounds of 8..512 B objects (rare ×100/×1000/×10000), half kept
 *   glibc-simple  n ∈ {25,100,400,1600} × 16/32/64 B, free in order / reverse
 *   large         20 live slots of 5–25 MiB: these never reach an arena (its
 *                 chunks are 2 MiB) but the Pool's direct path, so ours is the
 *                 real Machine path (m.alloc / m.free) on a 4 KiB pool with
 *                 decay off (freed direct pages stay dirty and are reused,
 *                 daemon/alloc/dirtycache.ts), on a 4 KiB pool with decay on
 *                 (pages back to the buddy allocator at every free:
 *                 …DecayOn figures) and on a 2 MiB hugepage pool
 *                 (…Hugepage2M figures)
 *
 * Per trace and allocator: ops/s (allocs attempted + frees, per second;
 * median of 3 timed runs, 1 with --quick, the allocators alternating, after
 * a warm-up; a run replays the whole trace on fresh allocators until at
 * least 0.25 s (0.05 s) is timed; building an allocator is not timed),
 * peak footprint (ours: peak of the pool's `mapped`, i.e. chunks held from
 * the page source — decay is off, so nothing is returned; thi.ng: peak of
 * its `top`, i.e. its brk; first-fit: peak highest address used; all rounded
 * up to 4 KiB) and active/allocated at the steady point (ours: the pool's
 * stats().active / allocated; the others: bytes of the 4 KiB pages touched
 * by live blocks / usable bytes of live blocks). Failed allocations are
 * counted (allocFailures).
 *
 * `million`: in a child process, host heap + external bytes per live
 * allocation with 1,000,000 small blocks in one Arena, and the arena's own
 * metadata estimate per allocation.
 */
import { buildConfig } from '../daemon/config/config.js';
import type { MachineConfig } from '../daemon/config/machine-config.js';
import { type BenchArgs, Reporter, median, runChildJson } from './harness.js';
import {
  FirstFit,
  glibcSimple,
  large,
  larson,
  mstress,
  Ours,
  RAW,
  OursMachine,
  probe,
  replay,
  Thing,
  type Allocator,
  type Probed,
  type Trace,
} from './suballoc-traces.js';

const MiB = 2 ** 20;
const THING = '@thi.ng/malloc';

interface Contender {
  /** Metric suffix: '' for ours, 'FirstFit', 'Hugepage2M'; THING for the baseline. */
  key: string;
  make(): Allocator;
}

interface Result extends Probed {
  opsPerSec: number;
}

/** ops/s over fresh allocators replaying the whole trace until at least minS seconds were timed. */
function timed(c: Contender, trace: Trace, minS: number): number {
  let ops = 0;
  let s = 0;
  do {
    const t = replay(c.make(), trace);
    ops += t.ops;
    s += t.seconds;
  } while (s < minS);
  return ops / s;
}

function measure(trace: Trace, cs: Contender[], warmOps: number, minS: number, reps: number): Map<string, Result> {
  for (const c of cs) {
    let w = 0;
    do w += replay(c.make(), trace, Math.min(warmOps, trace.size.length)).seconds;
    while (w < minS);
  }
  const speeds = new Map<string, number[]>(cs.map((c) => [c.key, []]));
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < cs.length; i++) {
      const c = cs[(i + r) % cs.length]!;
      speeds.get(c.key)!.push(timed(c, trace, minS));
    }
  }
  const out = new Map<string, Result>();
  for (const c of cs) out.set(c.key, { opsPerSec: median(speeds.get(c.key)!), ...probe(c.make(), trace) });
  return out;
}

function report(rep: Reporter, c: string, res: Map<string, Result>): void {
  const b = res.get(THING)!;
  const aoa = (r: Result) => (r.allocated === 0 ? 0 : r.active / r.allocated);
  for (const [key, r] of res) {
    if (key === THING) continue;
    rep.figure(c, `opsPerSec${key}`, r.opsPerSec, 'ops/s', { name: THING, value: b.opsPerSec });
    rep.figure(c, `peakFootprint${key}`, r.peakFootprint, 'bytes', { name: THING, value: b.peakFootprint });
    rep.figure(c, `activeOverAllocated${key}`, aoa(r), 'ratio', { name: THING, value: aoa(b) });
    rep.figure(c, `allocFailures${key}`, r.failures, 'count', { name: THING, value: b.failures });
  }
}

interface ChildResult {
  n: number;
  before: number;
  after: number;
  hostBytesPerAllocation: number;
  metadataBytesPerAllocation: number;
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const q = args.quick;
  const smoke = args.smoke === true;
  const rep = new Reporter('suballoc');
  const cfg: MachineConfig = buildConfig(RAW, 'bench').machine;
  // as in the memory bench: one timed run per allocator in quick mode
  const reps = q ? 1 : 3;
  const small = (bytes: number): Contender[] => {
    const buf = new ArrayBuffer(bytes);
    return [
      { key: '', make: () => new Ours(cfg) },
      { key: THING, make: () => new Thing(buf) },
      { key: 'FirstFit', make: () => new FirstFit() },
    ];
  };
  const log = (s: string) => process.stderr.write(`suballoc: ${s}\n`);
  const traces: [string, () => Trace, () => Contender[]][] = [
    ['larson', () => larson(smoke ? 1_000 : q ? 30_000 : 200_000), () => small(64 * MiB)],
    ['mstress', () => mstress(smoke ? 1 : q ? 10 : 60), () => small(256 * MiB)],
    ['glibc-simple', () => glibcSimple(smoke ? 1 : q ? 4 : 30), () => small(64 * MiB)],
    [
      'large',
      () => large(smoke ? 10 : q ? 300 : 2000),
      () => {
        let buf: ArrayBuffer | null = null;
        // thi.ng addresses blocks with signed 32-bit shifts: 2 GiB is its ceiling
        try {
          buf = new ArrayBuffer(2 ** 31);
        } catch (e) {
          log(`@thi.ng/malloc: cannot get a 2 GiB ArrayBuffer (${(e as Error).message}); its figures are recorded as 0`);
        }
        const none: Allocator = { alloc: () => -1, free: () => {}, footprint: () => 0, usage: () => ({ active: 0, allocated: 0 }) };
        return [
          { key: '', make: () => new OursMachine(cfg, 'p') },
          { key: THING, make: () => (buf === null ? none : new Thing(buf)) },
          { key: 'FirstFit', make: () => new FirstFit() },
          { key: 'DecayOn', make: () => new OursMachine(cfg, 'q') },
          { key: 'Hugepage2M', make: () => new OursMachine(cfg, 'h') },
        ];
      },
    ],
  ];
  for (const [name, gen, contenders] of traces) {
    const t0 = performance.now();
    const trace = gen();
    const res = measure(trace, contenders(), smoke ? 100 : q ? 5_000 : 20_000, smoke ? 0 : q ? 0.05 : 0.25, reps);
    report(rep, name, res);
    log(`${name}: ${trace.size.length} ops, ${Math.round(performance.now() - t0)} ms`);
  }
  const m = await runChildJson<ChildResult>('suballoc-child.js', [String(smoke ? 10_000 : 1_000_000)]); // smoke: 'million' in name only
  rep.figure('million', 'hostBytesPerAllocation', m.hostBytesPerAllocation, 'bytes');
  rep.figure('million', 'metadataBytesPerAllocation', m.metadataBytesPerAllocation, 'bytes');
  rep.table(
    'suballoc: Arena (ours) vs @thi.ng/malloc (ratio = value / baseline); …FirstFit: the naive first-fit, …Hugepage2M: ours on a 2 MiB pool. ' +
      'peakFootprint: ours = pool mapped (2 MiB chunks), thi.ng = top, first-fit = highest address. ' +
      'Floors from the issue: larson opsPerSec ratio ≥ 5, larson activeOverAllocated ≤ 1.10',
  );
  return rep;
}
