import t from 'tap';
import fc from 'fast-check';
import { Machine } from '../../daemon/machine.js';
import { loadConfig, buildConfig } from '../../daemon/config.js';
import type { MachineConfig } from '../../daemon/machine-config.js';
import type { PhysBuffer, Segment } from '../../daemon/pool.js';
import { BufferdError } from '../../protocol/errors.js';

const MiB = 2 ** 20;
const H = 2 * MiB;

/** 32 MiB of DRAM with a 2 MiB hugepage pool, and a 4 MiB carveout. */
const SMALL_RAW = {
  memory: {
    regions: [
      { name: 'dram', base: '0x80000000', size: '32M', kind: 'dram' },
      { name: 'carve', base: '0x40000000', size: '4M', kind: 'carveout' },
    ],
  },
  hugepages: [{ size: '2M', region: 'dram', nr: 4, overcommit: 3 }],
  pools: [
    { name: 'default', cache: 'writeback', region: 'dram' },
    { name: 'uc', cache: 'uncached', region: 'dram' },
    { name: 'low', cache: 'writeback', region: 'dram', maxAddress: '0x80800000', maxBytes: '6M' },
    { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram' },
    { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'dram' },
    { name: 'hcontig', cache: 'writecombine', pageSize: '2M', region: 'dram', contiguous: true },
    { name: 'contig', cache: 'writecombine', region: 'carve', contiguous: true },
  ],
};

const defaultConfig = (): MachineConfig => loadConfig().machine;
const smallConfig = (): MachineConfig => buildConfig(structuredClone(SMALL_RAW), 'test').machine;

const snap = (m: Machine) => JSON.stringify({ r: m.regionStatus(), h: m.hugepageStatus(), p: m.poolStatus() });
const poolStat = (m: Machine, name: string) => m.poolStatus().find((p) => p.name === name)!;
const hpStat = (m: Machine, size = H) => m.hugepageStatus().find((h) => h.size === size)!;
const regionFree = (m: Machine, name: string) => m.regionStatus().find((r) => r.name === name)!.free;

function overlaps(a: Segment[], b: Segment[]): boolean {
  return a.some((x) => b.some((y) => x.addr < y.addr + y.len && y.addr < x.addr + x.len));
}

function errorOf(fn: () => unknown): BufferdError {
  try {
    fn();
  } catch (e) {
    if (e instanceof BufferdError) return e;
    throw e;
  }
  throw new Error('expected a BufferdError');
}

type Op =
  | { k: 'alloc'; pool: number; size: number; align: number; populate: boolean }
  | { k: 'free'; i: number }
  | { k: 'touch'; i: number }
  | { k: 'hp'; which: number; nr: number; overcommit: number | null };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('alloc' as const), pool: fc.nat(), size: fc.oneof(fc.integer({ min: 1, max: 3 * 4096 }), fc.maxSafeNat()), align: fc.nat(), populate: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('free' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('touch' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('hp' as const), which: fc.nat(), nr: fc.nat(), overcommit: fc.option(fc.integer({ min: 0, max: 6 })) }) },
);

/** Run one random sequence on a fresh machine; throws naming the step that broke a rule. */
function run(cfg: MachineConfig, ops: Op[]): void {
  const m = new Machine(cfg);
  const fail = (what: string, step: number) => {
    throw new Error(`step ${step} (${JSON.stringify(ops[step])}): ${what}`);
  };
  const pools = [...m.pools.values()];
  const sizes = [...m.hugepages.keys()];
  const heldBy = (region: string) => [...m.hugepages.values()].filter((h) => h.region === region).reduce((a, h) => a + h.total * h.size, 0);
  const start = new Map(m.regionStatus().map((r) => [r.name, r.free + heldBy(r.name)]));
  const live: PhysBuffer[] = [];
  const bad0 = m.checkInvariants();
  if (bad0.length > 0) fail(bad0.join('; '), -1);
  ops.forEach((o, step) => {
    if (o.k === 'alloc') {
      const pool = pools[o.pool % pools.length]!;
      const span = 3 * Math.max(pool.pageSize, H);
      const size = o.size <= 3 * 4096 ? Math.max(1, o.size) : 1 + (o.size % span);
      const align = 2 ** (o.align % (Math.log2(pool.maxAlign) + 2));
      const before = snap(m);
      try {
        live.push(m.alloc({ pool: pool.name, size, align, owner: 1, populate: o.populate }));
      } catch (e) {
        if (!(e instanceof BufferdError) || (e.code !== 'ENOMEM' && e.code !== 'EINVAL')) throw e;
        if (snap(m) !== before) fail(`failed alloc (${e.code}: ${e.message}) changed the machine\n${before}\n${snap(m)}`, step);
      }
    } else if (o.k === 'free' || o.k === 'touch') {
      if (live.length === 0) return;
      if (o.k === 'free') m.free(live.splice(o.i % live.length, 1)[0]!);
      else {
        const lazy = live.filter((b) => b.reservedPages > 0);
        const b = lazy.length > 0 ? lazy[o.i % lazy.length]! : live[o.i % live.length]!;
        m.touch(b);
        if (b.reservedPages !== 0 || b.blocks.length === 0) fail('touch did not back the buffer', step);
      }
    } else {
      const size = sizes[o.which % sizes.length]!;
      const hp = m.hugepages.get(size)!;
      const slots = m.mem.region(hp.region).size / size;
      const nr = o.nr % (Math.min(slots, 600) + 3);
      try {
        const r = m.setHugepages(size, nr, o.overcommit ?? undefined);
        if (r.reached !== hp.persistent || r.reached > nr) fail(`setHugepages reached ${r.reached}`, step);
      } catch (e) {
        if (!(e instanceof BufferdError) || e.code !== 'EINVAL' || !hp.isGigantic) throw e;
      }
    }
    const bad = m.checkInvariants();
    if (bad.length > 0) fail(bad.join('; '), step);
  });
  for (const b of live) m.free(b);
  const bad = m.checkInvariants();
  if (bad.length > 0) fail(bad.join('; '), ops.length);
  for (const p of m.poolStatus()) {
    if (p.allocated !== 0 || p.active !== 0 || p.buffers !== 0 || p.pages !== 0) fail(`pool ${p.name} not empty: ${JSON.stringify(p)}`, ops.length);
  }
  for (const h of m.hugepageStatus()) if (h.surplus !== 0 || h.reserved !== 0 || h.inUse !== 0) fail(`hugepages left: ${JSON.stringify(h)}`, ops.length);
  for (const r of m.regionStatus()) {
    if (r.free !== start.get(r.name)! - heldBy(r.name)) fail(`region ${r.name}: ${r.free} free, expected ${start.get(r.name)! - heldBy(r.name)}`, ops.length);
  }
}

t.test('random operation sequences keep every invariant, and failed allocations change nothing', async (t) => {
  const defaultCfg = defaultConfig();
  fc.assert(fc.property(fc.array(opArb, { minLength: 10, maxLength: 40, size: 'max' }), (ops) => run(defaultCfg, ops)), { seed: 7, numRuns: 60 });
  t.pass('default machine');
  const small = smallConfig();
  fc.assert(fc.property(fc.array(opArb, { minLength: 10, maxLength: 60, size: 'max' }), (ops) => run(small, ops)), { seed: 7, numRuns: 60 });
  t.pass('small machine');
});

t.test('a failed allocation changes nothing, even after part of it was found', async (t) => {
  const m = new Machine(smallConfig());
  m.setHugepages(H, 14);
  const one = m.alloc({ pool: 'default', size: 1, owner: 1 });
  t.equal(regionFree(m, 'dram'), 4 * MiB - 4096);
  // an aligned first extent is found, the rest is not: nothing may stay converted or counted
  const before = snap(m);
  t.equal(errorOf(() => m.alloc({ pool: 'uc', size: 4 * MiB, align: 64 * 1024, owner: 1 })).code, 'ENOMEM');
  t.equal(snap(m), before);
  t.equal(poolStat(m, 'uc').conversions, 0);
  t.same(m.checkInvariants(), []);
  m.free(one);
  // a contiguous hugepage request gathers a surplus page, then finds no run
  const m2 = new Machine(smallConfig());
  m2.setHugepages(H, 12); // every 2 MiB block above the 'low' zone
  const bufs = Array.from({ length: 12 }, () => m2.alloc({ pool: 'huge', size: H, owner: 1 }));
  m2.free(bufs[9]!);
  m2.free(bufs[11]!);
  const before2 = snap(m2);
  t.equal(errorOf(() => m2.alloc({ pool: 'hcontig', size: 3 * H, owner: 1 })).code, 'ENOMEM');
  t.equal(snap(m2), before2, 'the surplus page gathered for the attempt is the one given back');
  t.same(m2.checkInvariants(), []);
  for (const b of bufs) if (m2.buffer(b.id) !== undefined) m2.free(b);
});

t.test('buffers are zeroed when their pages are reused', async (t) => {
  const m = new Machine(defaultConfig());
  for (const [pool, size] of [
    ['default', 3 * 4096 - 100],
    ['huge', H + 12345],
    ['contig', 5 * 4096 + 7],
  ] as const) {
    const a = m.alloc({ pool, size, owner: 1 });
    m.fill(a, 0, size, 0xff);
    t.ok(m.read(a, 0, size).every((x) => x === 0xff), `${pool}: written`);
    const segs = a.segments.map((s) => ({ ...s }));
    m.free(a);
    const b = m.alloc({ pool, size, owner: 1 });
    t.ok(overlaps(segs, b.segments), `${pool}: the same pages are reused`);
    t.ok(m.read(b, 0, size).every((x) => x === 0), `${pool}: reads as zeros`);
    m.fill(b, 0, size, 0xab);
    m.free(b);
    // also when the buffer is backed lazily
    if (pool === 'huge') {
      const c = m.alloc({ pool, size, owner: 1, populate: false });
      t.same(c.segments, []);
      const data = m.read(c, 0, size);
      t.ok(overlaps(segs, c.segments), 'huge (lazy): the same pages are reused');
      t.ok(data.every((x) => x === 0), 'huge (lazy): reads as zeros');
      m.free(c);
    }
    t.same(m.checkInvariants(), []);
  }
});

t.test('a page never carries two cache policies: hugepages are converted between pools', async (t) => {
  const m = new Machine(defaultConfig());
  t.equal(poolStat(m, 'wc').conversions, 0);
  const a = m.alloc({ pool: 'huge', size: H, owner: 1 });
  const page = a.segments[0]!.addr;
  t.equal(poolStat(m, 'huge').conversions, 0, 'write-back pages need no conversion for a write-back pool');
  m.free(a);
  t.same(m.checkInvariants(), []);
  const b = m.alloc({ pool: 'wc', size: H, owner: 1 });
  t.equal(b.segments[0]!.addr, page, 'the page freed by huge');
  t.equal(b.blocks[0]!.attr, 'writecombine');
  t.equal(poolStat(m, 'wc').conversions, 1, 'converted once');
  t.ok(poolStat(m, 'wc').conversionCostUs > 0, 'at a cost');
  t.same(m.checkInvariants(), []);
  m.free(b);
  t.same(m.checkInvariants(), []);
  // the page waits in the hugepage pool as write-combine
  const c = m.alloc({ pool: 'wc', size: H, owner: 1 });
  t.equal(c.segments[0]!.addr, page, 'wc reuses its own page');
  t.equal(poolStat(m, 'wc').conversions, 1, 'without a conversion');
  const d = m.alloc({ pool: 'huge', size: H, owner: 1 });
  t.not(d.segments[0]!.addr, page);
  t.equal(poolStat(m, 'huge').conversions, 0);
  t.same(m.checkInvariants(), []);
  m.free(c);
  m.free(d);
  // a write-back pool takes the write-combine page only when nothing else is free
  const all = m.alloc({ pool: 'huge', size: hpStat(m).available * H, owner: 1 });
  t.equal(poolStat(m, 'huge').conversions, 1, 'the one write-combine page is converted back');
  t.same(m.checkInvariants(), []);
  m.free(all);
  t.same(m.checkInvariants(), []);
});

t.test('ENOMEM names the pool, the request and what is free', async (t) => {
  const m = new Machine(smallConfig());
  const uc = errorOf(() => m.alloc({ pool: 'uc', size: 40 * MiB, owner: 1 }));
  t.equal(uc.code, 'ENOMEM');
  const dramFree = regionFree(m, 'dram');
  t.equal(dramFree, 24 * MiB);
  t.equal(uc.message, `pool 'uc': cannot allocate 40 MiB (41943040 bytes): 24 MiB free in region 'dram', largest contiguous free block 16 MiB`);
  t.match(uc.details, { pool: 'uc', requested: 40 * MiB, free: dramFree, largestFree: 16 * MiB, requestedPages: 10240 });

  const huge = errorOf(() => m.alloc({ pool: 'huge', size: 8 * H, owner: 1 }));
  t.equal(huge.code, 'ENOMEM');
  t.match(huge.message, /^pool 'huge': cannot allocate 16 MiB \(16777216 bytes\): 4 of 4 2 MiB hugepages available \(free 4, reserved 0, surplus 0 of overcommit 3\)/);
  t.match(huge.message, /up to 3 more as surplus if region 'dram' has contiguous 2 MiB blocks/);
  t.match(huge.details, { pool: 'huge', requested: 16 * MiB, hugepagesFree: 4, hugepagesAvailable: 4, hugepagesTotal: 4, largestFreeRun: 4, requestedHugepages: 8 });

  // a contiguous hugepage pool: two free hugepages, but not adjacent
  m.setHugepages(H, 4, 0);
  const bufs = [0, 1, 2, 3].map(() => m.alloc({ pool: 'huge', size: H, owner: 1 }));
  m.free(bufs[0]!);
  m.free(bufs[2]!);
  const hc = errorOf(() => m.alloc({ pool: 'hcontig', size: 2 * H, owner: 1 }));
  t.equal(hc.code, 'ENOMEM');
  t.equal(
    hc.message,
    `pool 'hcontig': cannot allocate 4 MiB (4194304 bytes): 2 of 4 2 MiB hugepages available ` +
      `(free 2, reserved 0, surplus 0 of overcommit 0), longest run of adjacent free hugepages 1`,
  );
  t.match(hc.details, { pool: 'hcontig', requested: 4 * MiB, hugepagesFree: 2, largestFreeRun: 1, requestedHugepages: 2 });

  // a contiguous 4K pool: enough free in total, but not in one piece
  const c1 = m.alloc({ pool: 'contig', size: MiB, owner: 1 });
  const c2 = m.alloc({ pool: 'contig', size: MiB, owner: 1 });
  m.free(c1);
  const cg = errorOf(() => m.alloc({ pool: 'contig', size: 2 * MiB + 1, owner: 1 }));
  t.equal(cg.code, 'ENOMEM');
  t.equal(
    cg.message,
    `pool 'contig': cannot allocate 2 MiB (2097153 bytes): 3 MiB free in region 'carve', largest contiguous free block 2 MiB`,
  );
  t.match(cg.details, { pool: 'contig', requested: 2 * MiB + 1, free: 3 * MiB, largestFree: 2 * MiB, requestedPages: 513 });
  m.free(c2);
  m.free(bufs[1]!);
  m.free(bufs[3]!);
  t.same(m.checkInvariants(), []);
});

t.test('populate: false reserves hugepages and backs them on first touch', async (t) => {
  const m = new Machine(smallConfig());
  const start = snap(m);
  const a = m.alloc({ pool: 'huge', size: H + 1, owner: 1, populate: false });
  t.same([hpStat(m).reserved, hpStat(m).inUse, hpStat(m).free], [2, 0, 4], 'reserved, not in use');
  t.same(a.segments, []);
  t.equal(a.reservedPages, 2);
  t.equal(poolStat(m, 'huge').pages, 0);
  t.equal(poolStat(m, 'huge').active, 2 * H, 'the footprint counts at once');
  t.same(m.checkInvariants(), []);
  m.touch(a);
  t.same([hpStat(m).reserved, hpStat(m).inUse, hpStat(m).free], [0, 2, 2], 'the reservation is consumed');
  t.equal(a.reservedPages, 0);
  t.equal(a.segments.reduce((n, s) => n + s.len, 0), H + 1);
  t.equal(poolStat(m, 'huge').pages, 2);
  m.touch(a);
  t.equal(hpStat(m).inUse, 2, 'a second touch does nothing');
  t.same(m.checkInvariants(), []);
  // beyond the free pages: surplus is gathered for the reservation
  const b = m.alloc({ pool: 'wc', size: 5 * H, owner: 1, populate: false });
  t.same([hpStat(m).reserved, hpStat(m).surplus, hpStat(m).total], [5, 3, 7]);
  t.equal(regionFree(m, 'dram'), 32 * MiB - 7 * H);
  t.same(m.checkInvariants(), []);
  // freeing an untouched buffer unreserves and returns the surplus
  m.free(b);
  t.same([hpStat(m).reserved, hpStat(m).surplus, hpStat(m).total, hpStat(m).free], [0, 0, 4, 2]);
  t.equal(poolStat(m, 'wc').conversions, 0, 'untouched pages were never converted');
  m.free(a);
  t.same(m.checkInvariants(), []);
  const end = JSON.parse(snap(m));
  const s0 = JSON.parse(start);
  t.same(end.r, s0.r, 'regions as at the start');
  t.same(end.h, s0.h, 'hugepages as at the start');
});
