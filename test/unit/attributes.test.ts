/**
 * Unit tests of the pure attribute logic: merging several drivers'
 * constraints, checking a buffer's real attributes against one driver, and
 * whether a pool can satisfy merged attributes.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  mergeConstraints,
  checkBuffer,
  deviceSegments,
  poolMisfits,
  alignmentOf,
  maskLimit,
  validateConstraints,
  type Constraints,
  type BufferFacts,
  type MergedAttributes,
  type PoolFacts,
} from '../../protocol/attributes.js';

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;
const IOMMU = { pageSizes: [4096, 65536, 2 * M], iovaSize: 4 * G };
const merge = (...cs: [string, Constraints][]) => mergeConstraints(cs.map(([driver, constraints]) => ({ driver, constraints })));
const buf = (segments: { addr: number; len: number }[], over: Partial<BufferFacts> = {}): BufferFacts => ({
  cache: 'writeback',
  region: 'dram',
  size: segments.reduce((a, s) => a + s.len, 0),
  segments,
  ...over,
});

t.test('merge: alignment is the LCM, DMA mask the minimum', async (t) => {
  t.equal(merge(['a', { align: 4 * K }], ['b', { align: 64 * K }]).merged.align, 64 * K);
  t.equal(merge(['a', { align: 8 * K }], ['b', { align: 64 * K }]).merged.align, 64 * K);
  t.equal(merge(['a', { align: 2 * M }], ['b', { align: 8 * K }], ['c', { align: 64 * K }]).merged.align, 2 * M);
  t.equal(merge(['a', { align: 1 }], ['b', { align: 16 }], ['c', {}]).merged.align, 16);
  t.equal(merge(['a', {}]).merged.align, 1, 'no alignment asked: 1');
  t.equal(merge(['a', { dmaMask: 40 }], ['b', { dmaMask: 32 }], ['c', {}]).merged.dmaMask, 32);
  t.equal(merge(['a', {}]).merged.dmaMask, 64, 'no mask: 64 bits');
  // the minimum covers every device, IOMMU or not
  t.equal(merge(['gpu', { dmaMask: 36, iommu: IOMMU }], ['nic', { dmaMask: 40 }]).merged.dmaMask, 36);
  t.same(merge(['a', {}]).conflicts, []);
});

t.test('merge: cache policies and regions intersect', async (t) => {
  const { merged, conflicts } = merge(['a', { cache: ['uncached', 'writecombine'] }], ['b', { cache: ['writecombine', 'writeback'] }], ['c', {}]);
  t.same(merged.cache, ['writecombine']);
  t.same(conflicts, []);
  t.same(merge(['a', {}]).merged.cache, ['writeback', 'writecombine', 'uncached'], 'no cache constraint: all, canonical order');
  t.same(merge(['a', { regions: ['sram', 'dram', 'carve'] }], ['b', {}], ['c', { regions: ['dram', 'sram'] }]).merged.regions, ['dram', 'sram']);
  t.equal(merge(['a', {}], ['b', {}]).merged.regions, null, 'no region constraint: any');
});

t.test('merge: an empty cache intersection is one conflict naming every driver', async (t) => {
  const { merged, conflicts } = merge(['cam', { cache: ['uncached'] }], ['cpu', { cache: ['writeback'] }], ['dsp', {}]);
  t.same(merged.cache, []);
  t.equal(conflicts.length, 1);
  const c = conflicts[0]!;
  t.equal(c.attribute, 'cache');
  for (const d of ['cam', 'cpu', 'dsp']) t.match(c.message, d);
  t.same(c.wants, [
    { driver: 'cam', value: ['uncached'] },
    { driver: 'cpu', value: ['writeback'] },
    { driver: 'dsp', value: ['writeback', 'writecombine', 'uncached'] },
  ]);
});

t.test('merge: an empty region intersection is a conflict', async (t) => {
  const { merged, conflicts } = merge(['a', { regions: ['carve'] }], ['b', { regions: ['dram', 'sram'] }], ['c', {}]);
  t.same(merged.regions, []);
  t.same(
    conflicts.map((c) => c.attribute),
    ['regions'],
  );
  t.match(conflicts[0]!.message, /a, b, c/);
  t.same(conflicts[0]!.wants, [
    { driver: 'a', value: ['carve'] },
    { driver: 'b', value: ['dram', 'sram'] },
  ]);
  // both at once: two conflicts
  t.same(
    merge(['a', { regions: ['x'], cache: ['uncached'] }], ['b', { regions: ['y'], cache: ['writeback'] }]).conflicts.map((c) => c.attribute),
    ['cache', 'regions'],
  );
});

t.test('merge: contiguity and segment limits come only from devices without an IOMMU', async (t) => {
  const gpu: Constraints = { contiguous: true, maxSegments: 1, maxSegmentSize: 4096, segmentBoundary: 4096, iommu: IOMMU };
  let m = merge(['gpu', gpu], ['nic', { maxSegments: 64 }]).merged;
  t.equal(m.contiguous, false, 'an IOMMU device asking for contiguity does not force it');
  t.equal(m.maxSegments, 64);
  t.equal(m.maxSegmentSize, null);
  t.equal(m.segmentBoundary, null);
  t.same(m.iommuDevices, ['gpu']);
  t.equal(merge(['cam', { contiguous: true }], ['gpu', gpu]).merged.contiguous, true);
  t.equal(merge(['cam', { maxSegments: 1 }]).merged.contiguous, true, 'maxSegments 1 means contiguous');
  t.equal(merge(['cam', { contiguous: true, iommu: null }]).merged.contiguous, true, 'iommu null is no IOMMU');
  m = merge(
    ['a', { maxSegments: 16, maxSegmentSize: 64 * K, segmentBoundary: 4 * G }],
    ['b', { maxSegments: 8, maxSegmentSize: 1 * M, segmentBoundary: 64 * K }],
    ['c', {}],
  ).merged;
  t.same([m.maxSegments, m.maxSegmentSize, m.segmentBoundary, m.contiguous], [8, 64 * K, 64 * K, false]);
  m = merge(['a', {}]).merged;
  t.same([m.maxSegments, m.maxSegmentSize, m.segmentBoundary, m.addressLimit], [null, null, null, null]);
});

t.test('merge: addressLimit ignores IOMMU and bounce-capable devices', async (t) => {
  let m = merge(['gpu', { dmaMask: 32, iommu: IOMMU }], ['nic', { dmaMask: 32, bounce: true }], ['dsp', { dmaMask: 40 }]).merged;
  t.equal(m.addressLimit, 2 ** 40);
  t.equal(m.dmaMask, 32);
  t.same(m.bounceDevices, ['nic']);
  t.same(m.iommuDevices, ['gpu']);
  m = merge(['gpu', { dmaMask: 32, iommu: IOMMU }], ['nic', { dmaMask: 32, bounce: true }]).merged;
  t.equal(m.addressLimit, null, 'nobody limits the physical address');
  t.equal(merge(['a', { dmaMask: 36 }], ['b', { dmaMask: 34 }]).merged.addressLimit, 2 ** 34);
  t.equal(merge(['a', { dmaMask: 64 }]).merged.addressLimit, null, 'a 64-bit mask reaches everything');
});

t.test('merge: coherent only when every device is', async (t) => {
  t.equal(merge(['a', { coherent: true }], ['b', { coherent: true }]).merged.coherent, true);
  t.equal(merge(['a', { coherent: true }], ['b', {}]).merged.coherent, false, 'unspecified is not coherent');
  t.equal(merge(['a', { coherent: true }], ['b', { coherent: false }]).merged.coherent, false);
  t.same(merge(['a', {}], ['b', {}]).merged.drivers, ['a', 'b']);
});

t.test('checkBuffer: each single mismatch is reported alone, with meaningful values', async (t) => {
  const one = (c: Constraints, f: BufferFacts) => checkBuffer(c, f);
  t.same(one({ align: 64 * K }, buf([{ addr: 0x8000_3000, len: 4096 }])), [{ attribute: 'align', required: 64 * K, actual: 4096 }]);
  t.same(one({ align: 2 * M }, buf([{ addr: 0x8001_0000, len: 4096 }])), [{ attribute: 'align', required: 2 * M, actual: 64 * K }]);
  t.same(one({ cache: ['uncached', 'writecombine'] }, buf([{ addr: 0, len: 4096 }])), [{ attribute: 'cache', required: ['uncached', 'writecombine'], actual: 'writeback' }]);
  const two = [
    { addr: 0x8000_0000, len: 4096 },
    { addr: 0x8000_2000, len: 4096 },
  ];
  t.same(one({ contiguous: true }, buf(two)), [{ attribute: 'contiguous', required: true, actual: '2 segments' }]);
  t.same(one({ maxSegments: 1 }, buf(two)), [{ attribute: 'contiguous', required: true, actual: '2 segments' }]);
  t.same(one({ regions: ['carve'] }, buf(two)), [{ attribute: 'regions', required: ['carve'], actual: 'dram' }]);
  t.same(one({ dmaMask: 32 }, buf([{ addr: 0x1_0000_0000, len: 4096 }])), [
    { attribute: 'dmaMask', required: '32 bits (below 0x100000000)', actual: 'segment ends at 0x100001000' },
  ]);
  t.same(one({ dmaMask: 32 }, buf([{ addr: 0xffff_f000, len: 4096 }])), [], 'ending exactly at the limit is reachable');
  t.same(one({ dmaMask: 32 }, buf([{ addr: 0xffff_f000, len: 4097 }])).map((m) => m.attribute), ['dmaMask']);
  const three = [...two, { addr: 0x8000_8000, len: 4096 }];
  t.same(one({ maxSegments: 2 }, buf(three)), [{ attribute: 'maxSegments', required: 2, actual: 3 }]);
  t.same(one({ maxSegments: 3 }, buf(three)), []);
  // scatter-gather devices get their segments split at the limits: no refusal…
  const sg = [{ addr: 0, len: 64 * K }, { addr: 1 * M, len: 128 * K }];
  t.same(one({ maxSegmentSize: 64 * K }, buf(sg)), [], 'a long segment is split, not refused');
  t.same(one({ segmentBoundary: 64 * K }, buf([{ addr: 0x8000_0000, len: 4096 }, { addr: 0x8000_f000, len: 0x2000 }])), [], 'a crossing segment is split');
  // …unless the entries after splitting are too many
  t.same(one({ maxSegmentSize: 64 * K, maxSegments: 2 }, buf(sg)), [{ attribute: 'maxSegments', required: 2, actual: 3 }]);
  t.same(one({ maxSegmentSize: 64 * K, maxSegments: 3 }, buf(sg)), []);
  t.same(one({ segmentBoundary: 64 * K, maxSegments: 2 }, buf([{ addr: 0x8000_0000, len: 4096 }, { addr: 0x8000_f000, len: 0x2000 }])), [
    { attribute: 'maxSegments', required: 2, actual: 3 },
  ]);
  // a device that needs one range can't have it split
  t.same(one({ contiguous: true, maxSegmentSize: 64 * K }, buf([{ addr: 1 * M, len: 128 * K }])), [{ attribute: 'maxSegmentSize', required: 64 * K, actual: 128 * K }]);
  t.same(one({ maxSegments: 1, segmentBoundary: 64 * K }, buf([{ addr: 0x8000_f000, len: 0x2000 }])), [
    { attribute: 'segmentBoundary', required: 64 * K, actual: 'segment 0x8000f000+8192 crosses it' },
  ]);
  t.same(one({ maxSegments: 1, segmentBoundary: 64 * K }, buf([{ addr: 0x8000_f000, len: 0x1000 }])), [], 'ending at the boundary does not cross it');
  t.same(one({}, buf(three)), []);
});

t.test('checkBuffer: a buffer wrong in three ways lists all three', async (t) => {
  const c: Constraints = { align: 64 * K, cache: ['uncached'], dmaMask: 32, contiguous: false };
  const got = checkBuffer(c, buf([{ addr: 0x1_0000_1000, len: 8192 }]));
  t.same(
    got.map((m) => m.attribute),
    ['cache', 'align', 'dmaMask'],
  );
  t.same(got[1], { attribute: 'align', required: 64 * K, actual: 4096 });
});

t.test('checkBuffer: a device with an IOMMU only checks cache and regions', async (t) => {
  const c: Constraints = { align: 2 * M, contiguous: true, maxSegments: 1, maxSegmentSize: 4096, segmentBoundary: 4096, dmaMask: 32, iommu: IOMMU };
  const ugly = buf([
    { addr: 0x10_0000_1000, len: 0x3000 },
    { addr: 0x10_0008_0800, len: 0x1800 },
  ]);
  t.same(checkBuffer(c, ugly), []);
  t.same(
    checkBuffer({ ...c, cache: ['uncached'], regions: ['carve'] }, ugly).map((m) => m.attribute),
    ['cache', 'regions'],
  );
  // the same constraints without the IOMMU fail in every physical way
  t.same(
    checkBuffer({ ...c, iommu: null }, ugly).map((m) => m.attribute),
    ['align', 'contiguous', 'maxSegmentSize', 'segmentBoundary', 'dmaMask'],
  );
});

t.test('checkBuffer: bounce suppresses only the mask mismatch', async (t) => {
  const high = [
    { addr: 0x1_0000_0000, len: 4096 },
    { addr: 0x1_0001_0000, len: 4096 },
  ];
  t.same(checkBuffer({ dmaMask: 32, bounce: true }, buf(high)), []);
  t.same(
    checkBuffer({ dmaMask: 32, bounce: true, contiguous: true }, buf(high)).map((m) => m.attribute),
    ['contiguous'],
  );
  t.same(
    checkBuffer({ dmaMask: 32, bounce: false }, buf(high)).map((m) => m.attribute),
    ['dmaMask'],
  );
});

t.test('alignmentOf, maskLimit and validateConstraints', async (t) => {
  t.equal(alignmentOf(0x8000_3000), 4096);
  t.equal(alignmentOf(0x8000_0000), 2 ** 31);
  t.equal(alignmentOf(3), 1);
  t.equal(alignmentOf(0), 2 ** 40, 'zero is capped at 2^40');
  t.equal(alignmentOf(2 ** 44), 2 ** 40);
  t.equal(maskLimit(32), 2 ** 32);
  t.equal(maskLimit(undefined), Number.MAX_SAFE_INTEGER);
  t.equal(maskLimit(53), Number.MAX_SAFE_INTEGER);
  t.same(validateConstraints({ align: 4096, segmentBoundary: 65536, iommu: IOMMU }), []);
  t.same(validateConstraints({ align: 3000, segmentBoundary: 5000, iommu: { pageSizes: [4096, 12288], iovaSize: G } }).length, 3);
});

const POOL: PoolFacts = { name: 'p', cache: 'writeback', region: 'dram', contiguous: false, pageSize: 4096, end: 0x1_0000_0000, maxAlign: 2 * M };
const pool = (over: Partial<PoolFacts>): PoolFacts => ({ ...POOL, ...over });
const attrs = (...cs: [string, Constraints][]): MergedAttributes => merge(...cs).merged;

t.test('poolMisfits', async (t) => {
  const cam = attrs(['cam', { contiguous: true, dmaMask: 32, cache: ['uncached', 'writecombine'], align: 64 * K }]);
  t.same(poolMisfits(cam, pool({ name: 'cma', cache: 'writecombine', contiguous: true, end: 0x5000_0000 })), []);
  t.same(poolMisfits(cam, pool({ cache: 'uncached', contiguous: true, end: 2 ** 32 })), [], 'end is exclusive: exactly at the limit fits');
  t.same(
    poolMisfits(cam, pool({ end: 2 ** 34, maxAlign: 4096 })),
    [
      { attribute: 'cache', required: ['writecombine', 'uncached'], actual: 'writeback' },
      { attribute: 'contiguous', required: true, actual: false },
      { attribute: 'dmaMask', required: 'below 0x100000000', actual: 'pool reaches 0x400000000' },
      { attribute: 'align', required: 64 * K, actual: 'at most 4096' },
    ],
  );
  const nic = attrs(['nic', { maxSegmentSize: 64 * K, regions: ['dram', 'sram'] }]);
  t.same(poolMisfits(nic, pool({})), []);
  t.same(poolMisfits(nic, pool({ pageSize: 2 * M })), [], 'pages larger than a segment are split into several entries');
  t.same(poolMisfits(nic, pool({ pageSize: 2 * M, contiguous: true })), [], 'a contiguous pool is not judged by its page size');
  t.same(poolMisfits(nic, pool({ region: 'carve' })), [{ attribute: 'regions', required: ['dram', 'sram'], actual: 'carve' }]);
  // IOMMU and bounce devices leave the pool's reach alone
  t.same(poolMisfits(attrs(['gpu', { dmaMask: 32, iommu: IOMMU }], ['n', { dmaMask: 32, bounce: true }]), pool({ end: 2 ** 40 })), []);
});

t.test('deviceSegments: split at maxSegmentSize and segmentBoundary, nothing lost', async (t) => {
  const segs = [{ addr: 0x8000_f000, len: 0x2_2000 }, { addr: 0x9000_0000, len: 4096 }];
  t.same(deviceSegments({}, segs), segs, 'no limits: the physical segments');
  t.same(deviceSegments({ segmentBoundary: 64 * K }, segs), [
    { addr: 0x8000_f000, len: 0x1000 },
    { addr: 0x8001_0000, len: 0x1_0000 },
    { addr: 0x8002_0000, len: 0x1_0000 },
    { addr: 0x8003_0000, len: 0x1000 },
    { addr: 0x9000_0000, len: 4096 },
  ]);
  t.same(deviceSegments({ maxSegmentSize: 0x1_8000 }, segs), [
    { addr: 0x8000_f000, len: 0x1_8000 },
    { addr: 0x8002_7000, len: 0xa000 },
    { addr: 0x9000_0000, len: 4096 },
  ]);
  const both = deviceSegments({ maxSegmentSize: 0x8000, segmentBoundary: 64 * K }, segs);
  t.ok(both.every((s) => s.len <= 0x8000 && Math.floor(s.addr / (64 * K)) === Math.floor((s.addr + s.len - 1) / (64 * K))));
  t.equal(both.reduce((a, s) => a + s.len, 0), 0x2_2000 + 4096, 'every byte once');
  t.same(checkBuffer({ segmentBoundary: 64 * K }, buf([{ addr: 0x8000_0000, len: 2 * M }])), [], 'a scatter-gather device gets 32 entries');
  t.same(poolMisfits(attrs(['dev', { segmentBoundary: 64 * K }]), pool({ pageSize: 2 * M })), []);
});

// ---- properties ----

const FC = { seed: 20240917, numRuns: 300 };
const CACHES = ['writeback', 'writecombine', 'uncached'] as const;
const arbConstraints: fc.Arbitrary<Constraints> = fc.record({
  align: fc.constantFrom(undefined, 4 * K, 8 * K, 64 * K, 2 * M),
  contiguous: fc.constantFrom(undefined, true, false),
  maxSegments: fc.constantFrom(undefined, 1, 2, 4),
  maxSegmentSize: fc.constantFrom(undefined, 4 * K, 64 * K, 2 * M),
  segmentBoundary: fc.constantFrom(undefined, 64 * K, 2 * M, 4 * G),
  cache: fc.option(fc.subarray([...CACHES], { minLength: 1 }), { nil: undefined }),
  coherent: fc.constantFrom(undefined, true, false),
  regions: fc.option(fc.subarray(['dram', 'carve', 'sram'], { minLength: 1 }), { nil: undefined }),
  dmaMask: fc.constantFrom(undefined, 32, 33, 36, 64),
  iommu: fc.constantFrom(undefined, null, IOMMU),
  bounce: fc.constantFrom(undefined, true, false),
});
const arbList = fc.array(arbConstraints, { minLength: 1, maxLength: 5 }).map((cs) => cs.map((constraints, i) => ({ driver: `d${i}`, constraints })));
const arbBuffer: fc.Arbitrary<BufferFacts> = fc
  .record({
    cache: fc.constantFrom(...CACHES),
    region: fc.constantFrom('dram', 'carve'),
    segs: fc.array(fc.record({ at: fc.constantFrom(0x8000_0000, 0xfff0_0000, 0x1_0000_0000, 0x3_0000_0000), page: fc.nat(40), pages: fc.constantFrom(1, 3, 16, 512) }), { minLength: 1, maxLength: 3 }),
  })
  .map(({ cache, region, segs }) => buf(segs.map((s) => ({ addr: s.at + s.page * 4096 * (s.page % 2 === 0 ? 16 : 1), len: s.pages * 4096 })), { cache, region }));

const norm = (r: ReturnType<typeof mergeConstraints>) => {
  const set = (xs: string[]) => [...new Set(xs)].sort();
  const m = r.merged;
  return {
    merged: { ...m, drivers: set(m.drivers), iommuDevices: set(m.iommuDevices), bounceDevices: set(m.bounceDevices) },
    conflicts: r.conflicts.map((c) => c.attribute),
  };
};

/**
 * Does the buffer meet merged attributes (with the alignment given)? With
 * `segmentLimits` false, the segment size, boundary and count limits are
 * left out: the merge states the tightest of each, which is sufficient but
 * not necessary once scatter-gather devices split segments at their own.
 */
function meets(m: MergedAttributes, f: BufferFacts, align: number, segmentLimits = true): boolean {
  const segs = f.segments;
  if (!m.cache.includes(f.cache) || (m.regions !== null && !m.regions.includes(f.region))) return false;
  if (segs[0]!.addr % align !== 0) return false;
  const one = m.contiguous || m.maxSegments === 1;
  if (one && segs.length > 1) return false;
  if (segmentLimits) {
    const b = m.segmentBoundary;
    if (one) {
      if (m.maxSegmentSize !== null && segs.some((s) => s.len > m.maxSegmentSize!)) return false;
      if (b !== null && segs.some((s) => Math.floor(s.addr / b) !== Math.floor((s.addr + s.len - 1) / b))) return false;
    } else if (m.maxSegments !== null) {
      const lim: Constraints = {};
      if (m.maxSegmentSize !== null) lim.maxSegmentSize = m.maxSegmentSize;
      if (b !== null) lim.segmentBoundary = b;
      if (deviceSegments(lim, segs).length > m.maxSegments) return false;
    }
  }
  return m.addressLimit === null || segs.every((s) => s.addr + s.len <= m.addressLimit!);
}

t.test('property: merging is order-independent and idempotent', async (t) => {
  fc.assert(
    fc.property(arbList, fc.array(fc.double({ noNaN: true }), { minLength: 5, maxLength: 5 }), (list, keys) => {
      const perm = list.map((x, i) => ({ x, k: keys[i]! })).sort((a, b) => a.k - b.k).map((p) => p.x);
      const base = norm(mergeConstraints(list));
      assert.deepEqual(norm(mergeConstraints(perm)), base);
      assert.deepEqual(norm(mergeConstraints([...list, ...perm])), base);
    }),
    FC,
  );
  t.pass('order and repetition do not change the merge');
});

t.test('property: merged attributes and per-driver checks agree', async (t) => {
  let meetsMerged = 0;
  let passesAll = 0;
  fc.assert(
    fc.property(arbList, arbBuffer, (list, f) => {
      const { merged, conflicts } = mergeConstraints(list);
      const ok = list.every((d) => checkBuffer(d.constraints, f).length === 0);
      // meeting the merged attributes is enough for every driver
      if (conflicts.length === 0 && meets(merged, f, merged.align)) {
        meetsMerged++;
        assert.ok(ok, 'a buffer meeting the merge passes every driver');
      }
      // passing every driver means meeting the merge, except alignment
      // asked by IOMMU devices (checkBuffer does not check it for them) and
      // the segment limits (the merge's tightest-of-each is conservative)
      if (ok) {
        passesAll++;
        assert.deepEqual(conflicts, []);
        const physAlign = mergeConstraints(list.filter((d) => d.constraints.iommu == null)).merged.align;
        assert.ok(meets(merged, f, physAlign, false), 'a buffer passing every driver meets the merge');
      }
    }),
    { ...FC, numRuns: 3000 },
  );
  t.ok(meetsMerged > 50, `the soundness branch ran (${meetsMerged})`);
  t.ok(passesAll >= meetsMerged, `the completeness branch ran (${passesAll})`);
});
