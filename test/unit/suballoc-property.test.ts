/**
 * Property tests of the sub-allocator: random alloc/free/align sequences
 * with several owners, clock ticks, forced purges and departing owners, on
 * a small machine with a 4 KiB pool, an address-limited 4 KiB pool, a 2 MiB
 * hugepage pool, a contiguous carveout pool and a shared-arena pool.
 */
import t from 'tap';
import fc from 'fast-check';
import { Machine } from '../../daemon/alloc/machine.js';
import { buildConfig } from '../../daemon/config/config.js';
import type { MachineConfig } from '../../daemon/config/machine-config.js';
import type { PhysBuffer } from '../../daemon/alloc/pool.js';
import { SMALL_MAXCLASS } from '../../daemon/alloc/sizeclasses.js';
import { BufferdError } from '../../protocol/errors.js';

const MiB = 2 ** 20;
const H = 2 * MiB;

const RAW = {
  memory: {
    regions: [
      { name: 'dram', base: '0x80000000', size: '48M', kind: 'dram' },
      { name: 'carve', base: '0x40000000', size: '8M', kind: 'carveout' },
    ],
  },
  hugepages: [{ size: '2M', region: 'dram', nr: 6, overcommit: 4 }],
  pools: [
    { name: 'p4k', cache: 'writeback', region: 'dram', dirtyDecayMs: 1000 },
    { name: 'plow', cache: 'writeback', region: 'dram', maxAddress: '0x80800000', maxBytes: '6M', dirtyDecayMs: 500 },
    { name: 'p2m', cache: 'writeback', pageSize: '2M', region: 'dram', dirtyDecayMs: 1000 },
    { name: 'pcon', cache: 'writecombine', region: 'carve', contiguous: true, dirtyDecayMs: 0 },
    { name: 'pshr', cache: 'uncached', region: 'dram', arena: 'shared', dirtyDecayMs: -1 },
  ],
};
const MAX_DECAY = 1000;

type Op =
  | { k: 'alloc'; pool: number; kind: number; size: number; align: number; who: number }
  | { k: 'free'; i: number }
  | { k: 'tick'; ms: number }
  | { k: 'purge'; pool: number }
  | { k: 'gone'; who: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant('alloc' as const),
      pool: fc.nat(4),
      kind: fc.nat(9),
      size: fc.nat(),
      align: fc.nat(22),
      who: fc.nat(2),
    }),
  },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('free' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 1500 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('purge' as const), pool: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('gone' as const), who: fc.nat(2) }) },
);

/** What a failed allocation must not change. */
const counters = (m: Machine) =>
  JSON.stringify({
    p: m.poolStatus().map((p) => [p.requested, p.allocated, p.buffers, p.nmalloc, p.directBuffers]),
    h: m.hugepageStatus().map((h) => h.reserved),
  });

function run(cfg: MachineConfig, ops: Op[], endByDecay: boolean): void {
  const clk = { t: 0 };
  const m = new Machine(cfg, () => clk.t);
  const fail = (what: string, step: number) => {
    throw new Error(`step ${step} (${JSON.stringify(ops[step])}): ${what}`);
  };
  const pools = [...m.pools.values()];
  const regionFree0 = new Map(m.regionStatus().map((r) => [r.name, r.free]));
  const hpView = () => JSON.stringify(m.hugepageStatus().map((h) => [h.total, h.free, h.surplus, h.reserved, h.inUse]));
  const hp0 = hpView();
  const owners = [1, 2, 3];
  let nextOwner = 4;
  const live: PhysBuffer[] = [];
  let allocated = 0;
  ops.forEach((o, step) => {
    if (o.k === 'alloc') {
      const pool = pools[o.pool]!;
      const region = m.mem.region(pool.cfg.region);
      const size =
        o.kind < 5
          ? 1 + (o.size % SMALL_MAXCLASS)
          : o.kind < 8
            ? SMALL_MAXCLASS + 1 + (o.size % (H - SMALL_MAXCLASS - 1))
            : 1 + (o.size % (3 * H));
      const align = 2 ** (o.align % (Math.log2(Math.min(pool.maxAlign, 4 * MiB)) + 1));
      const before = counters(m);
      let b: PhysBuffer;
      try {
        b = m.alloc({ pool: pool.name, size, align, owner: owners[o.who]! });
      } catch (e) {
        if (!(e instanceof BufferdError) || e.code !== 'ENOMEM') throw e;
        if (counters(m) !== before) fail(`failed alloc changed counters\n${before}\n${counters(m)}`, step);
        return;
      }
      allocated++;
      live.push(b);
      if (b.usize < size || b.segments.reduce((a, s) => a + s.len, 0) !== size) fail(`usize ${b.usize} / segments for size ${size}`, step);
      if (b.segments[0]!.addr % align !== 0) fail(`not aligned to ${align}: 0x${b.segments[0]!.addr.toString(16)}`, step);
      if (b.kind !== 'direct' && b.addr % align !== 0) fail(`addr not aligned to ${align}`, step);
      if (b.kind !== 'direct' && b.arena!.owner !== (pool.cfg.arena === 'shared' ? 0 : b.owner)) fail('buffer in a wrong arena', step);
      if (pool.cfg.contiguous && b.segments.length !== 1) fail('contiguous pool gave several segments', step);
      const limit = Math.min(region.base + region.size, pool.cfg.maxAddress ?? Infinity);
      for (const s of b.segments) if (s.addr < region.base || s.addr + s.len > limit) fail(`segment 0x${s.addr.toString(16)}+${s.len} outside the pool's memory`, step);
    } else if (o.k === 'free') {
      if (live.length === 0) return;
      m.free(live.splice(o.i % live.length, 1)[0]!);
    } else if (o.k === 'tick') {
      clk.t += o.ms;
      m.purgeExpired();
      const d = m.nextDecayDeadline();
      if (d !== null && d <= clk.t) fail(`deadline ${d} already passed after purgeExpired at ${clk.t}`, step);
    } else if (o.k === 'purge') {
      const p = pools[o.pool]!;
      p.purge(true);
      if (p.status().dirty !== 0) fail('dirty left after a forced purge', step);
    } else {
      m.ownerGone(owners[o.who]!);
      owners[o.who] = nextOwner++;
    }
    const bad = m.checkInvariants();
    if (bad.length > 0) fail(bad.join('; '), step);
  });
  for (const b of live.splice(0)) m.free(b);
  if (endByDecay) {
    clk.t += MAX_DECAY;
    m.purgeExpired();
    // decay −1: only a forced purge gives the chunks back
    m.pool('pshr').purge(true);
  } else for (const p of pools) p.purge(true);
  for (const p of m.poolStatus()) {
    if (p.mapped !== 0 || p.dirty !== 0 || p.allocated !== 0 || p.buffers !== 0 || p.requested !== 0) {
      fail(`pool ${p.name} not empty after purging: ${JSON.stringify(p)}`, ops.length);
    }
  }
  for (let o = 1; o < nextOwner; o++) m.ownerGone(o);
  for (const p of m.poolStatus()) {
    if (p.arenas > (p.arena === 'shared' ? 1 : 0)) fail(`pool ${p.name}: ${p.arenas} arenas left after every owner went`, ops.length);
  }
  const bad = m.checkInvariants();
  if (bad.length > 0) fail(bad.join('; '), ops.length);
  for (const r of m.regionStatus()) if (r.free !== regionFree0.get(r.name)) fail(`region ${r.name}: ${r.free} free, ${regionFree0.get(r.name)} at the start`, ops.length);
  if (hpView() !== hp0) fail(`hugepages not back: ${hpView()} vs ${hp0}`, ops.length);
  stats.allocs += allocated;
}

const stats = { allocs: 0 };

t.test('random sub-allocator sequences keep every invariant and leave nothing behind', async (t) => {
  const cfg = buildConfig(structuredClone(RAW), 'test').machine;
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 10, maxLength: 150, size: 'max' }), fc.boolean(), (ops, byDecay) => run(cfg, ops, byDecay)),
    { seed: 11, numRuns: 100 },
  );
  t.ok(stats.allocs > 1000, `${stats.allocs} successful allocations checked`);
});

t.test('many owners interleaving small buffers in the hugepage and shared pools', async (t) => {
  // a denser variant: mostly small sizes, so slabs fill, empty and get reused
  const cfg = buildConfig(structuredClone(RAW), 'test').machine;
  const small: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ k: fc.constant('alloc' as const), pool: fc.constantFrom(0, 2, 4), kind: fc.nat(4), size: fc.nat(), align: fc.nat(12), who: fc.nat(2) }) },
    { weight: 4, arbitrary: fc.record({ k: fc.constant('free' as const), i: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('gone' as const), who: fc.nat(2) }) },
  );
  fc.assert(
    fc.property(fc.array(small, { minLength: 50, maxLength: 200, size: 'max' }), fc.boolean(), (ops, byDecay) => run(cfg, ops, byDecay)),
    { seed: 12, numRuns: 40 },
  );
  t.pass('40 runs of up to 200 interleaved operations by 3 owners kept every invariant (fc.assert throws on the first that breaks)');
});
