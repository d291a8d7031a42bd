import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PhysicalMemory, FOUR_GIB, PAGE, type Extent, type Zone } from '../../daemon/memory/physmem.js';
import { BuddyAllocator, MAX_PAGE_ORDER } from '../../daemon/memory/buddy.js';
import { largestFirstOrders, matchesOrders } from '../helpers/largest-first.js';
import type { RegionConfig } from '../../daemon/config/machine-config.js';
import type { RegionStatus } from '../../protocol/status.js';

const GiB = 2 ** 30;
const DRAM: RegionConfig = { name: 'dram', base: 0x8000_0000, size: 8 * GiB, kind: 'dram' };
const PFN_4G = FOUR_GIB / PAGE;

/** The sums in one region's status agree with each other and with the zones. */
function checkStatus(s: RegionStatus, zones: Zone[]): void {
  assert.equal(s.free, s.zones.reduce((a, z) => a + z.free, 0), 'free == sum of zones');
  assert.equal(s.free, s.freeByOrder.reduce((a, n, o) => a + n * 2 ** o * PAGE, 0), 'free == freeByOrder');
  assert.equal(s.freeByOrder.length, MAX_PAGE_ORDER + 1, '11 columns, as /proc/buddyinfo');
  const top = s.freeByOrder.findLastIndex((n) => n > 0);
  assert.equal(s.largestFree, s.free === 0 ? 0 : 2 ** top * PAGE, 'largestFree is the top order');
  assert.equal(s.zones.reduce((a, z) => a + z.size, 0), s.size, 'zones cover the region');
  s.zones.forEach((z, i) => {
    assert.equal(z.base, i === 0 ? s.base : s.zones[i - 1]!.base + s.zones[i - 1]!.size, 'zones are contiguous');
    assert.equal(z.free, zones[i]!.buddy.freePages * PAGE);
    assert.equal(z.free, z.freeByOrder.reduce((a, n, o) => a + n * 2 ** o * PAGE, 0), `${z.name}: free == its freeByOrder`);
    assert.equal(z.freeByOrder.length, MAX_PAGE_ORDER + 1, `${z.name}: 11 columns`);
  });
  const summed = s.freeByOrder.map((_, o) => s.zones.reduce((a, z) => a + (z.freeByOrder[o] ?? 0), 0));
  assert.deepEqual(summed, s.freeByOrder, "the region's orders are its zones' summed");
}

t.test('zones split at 4 GiB and at extra boundaries', async (t) => {
  const m = new PhysicalMemory([DRAM, { name: 'tcm', base: 0x1000_0000, size: 256 * 1024, kind: 'tcm' }, { name: 'hi', base: 16 * GiB, size: GiB, kind: 'carveout' }]);
  t.same(
    m.region('dram').zones.map((z) => [z.name, z.base, z.size]),
    [
      ['dram/DMA32', 0x8000_0000, 2 * GiB],
      ['dram/Normal', FOUR_GIB, 6 * GiB],
    ],
  );
  t.same(m.region('tcm').zones.map((z) => z.name), ['tcm/DMA32']);
  t.same(m.region('hi').zones.map((z) => z.name), ['hi/Normal']);
  t.equal(m.totalBytes(), 8 * GiB + 256 * 1024 + GiB);
  t.equal(m.freeBytes(), m.totalBytes());
  t.throws(() => m.region('nope'), RangeError);
  t.throws(() => m.zoneOf(0), RangeError, 'a hole between regions');
  t.equal(m.zoneOf(PFN_4G - 1).name, 'dram/DMA32');
  t.equal(m.zoneOf(PFN_4G).name, 'dram/Normal');
  t.equal(m.zoneOf(0x1000_0000 / PAGE).name, 'tcm/DMA32');

  const b = new PhysicalMemory([DRAM], new Map([['dram', [3 * GiB, FOUR_GIB, 6 * GiB, 20 * GiB, GiB]]]));
  t.same(
    b.region('dram').zones.map((z) => [z.name, z.base / GiB, z.size / GiB]),
    [
      ['dram/DMA32', 2, 1],
      ['dram/DMA32.1', 3, 1],
      ['dram/Normal', 4, 2],
      ['dram/Normal.1', 6, 4],
    ],
    'duplicate and out-of-region boundaries ignored',
  );
  t.same(b.zonesFor('dram', 6 * GiB).map((z) => z.name), ['dram/Normal', 'dram/DMA32.1', 'dram/DMA32'], 'usable zones, highest first');
  t.same(b.zonesFor('dram', 5 * GiB).map((z) => z.name), ['dram/DMA32.1', 'dram/DMA32'], 'a zone must end at or below maxAddress');
  t.equal(b.freePagesFor('dram', FOUR_GIB), (2 * GiB) / PAGE);
  t.equal(b.largestFreeFor('dram', 3 * GiB), 2 ** MAX_PAGE_ORDER, 'in pages: the buddy stops at MAX_PAGE_ORDER (4 MiB)');
  t.equal(m.largestFreeFor('dram', null), 2 ** MAX_PAGE_ORDER);
});

t.test('allocations without maxAddress come from the highest zone first', async (t) => {
  const m = new PhysicalMemory([DRAM]);
  const PFN_8G = PFN_4G; // (the name stays: the lowest Normal block)
  t.equal(m.allocBlock('dram', 0, null), PFN_8G, 'Normal zone; all 4 MiB blocks, the lowest one split');
  t.equal(m.allocBlock('dram', 9, null), PFN_8G + 512);
  const c = m.allocContig('dram', 3, 1, null)!;
  t.same(c, { pfn: PFN_8G + 4, npages: 3 });
  const a = m.allocContig('dram', 1, 1024, null)!;
  t.equal(a.pfn % 1024, 0);
  t.ok(a.pfn >= PFN_4G);
  t.equal(m.allocBlock('dram', 0, FOUR_GIB), 0x8000_0000 / PAGE, 'maxAddress keeps it below 4 GiB');
  const low = m.allocContig('dram', 1000, 1, FOUR_GIB)!;
  t.ok((low.pfn + low.npages) * PAGE <= FOUR_GIB);
  t.equal(m.allocBlock('dram', 20, FOUR_GIB), -1, 'no 4 GiB block below 4 GiB');
  t.equal(m.allocContig('dram', 2 ** 21, 1, null), null, 'no 8 GiB run anywhere');
  t.equal(m.allocBlock('dram', 0, 0x8000_0000), -1, 'no zone below the region base');
  t.equal(m.allocContig('dram', 1, 1, 0x8000_0000), null);
  t.equal(m.allocScatter('dram', 1, 0x8000_0000), null);
  m.freeBlockOrder(PFN_8G, 0);
  m.freeBlockOrder(PFN_8G + 512, 9);
  m.freeExtent(c);
  m.freeExtent(a);
  m.freeBlockOrder(0x8000_0000 / PAGE, 0);
  m.freeExtent(low);
  t.same(m.regionStatus(), new PhysicalMemory([DRAM]).regionStatus(), 'all back');
  t.throws(() => m.freeBlockOrder(PFN_4G + 1, 1), RangeError, 'misaligned block');
});

t.test('allocScatter spills across zones, all-or-nothing, merged extents', async (t) => {
  const r: RegionConfig = { name: 'r', base: FOUR_GIB - 64 * PAGE, size: 128 * PAGE, kind: 'dram' };
  const m = new PhysicalMemory([r]);
  const initial = m.regionStatus();
  t.same(m.region('r').zones.map((z) => z.name), ['r/DMA32', 'r/Normal']);
  const got = m.allocScatter('r', 100, null)!;
  t.same(got, [
    { pfn: PFN_4G, npages: 64 },
    { pfn: PFN_4G - 64, npages: 36 },
  ], 'largest first: 64 from Normal, then 32 + 4 from DMA32 (adjacent, joined), in allocation order');
  t.equal(m.freeBytes(), 28 * PAGE);
  const before = m.regionStatus();
  t.equal(m.allocScatter('r', 29, null), null, 'one page too many');
  t.same(m.regionStatus(), before, 'nothing changed');
  m.freeExtent(got[0]!);
  t.equal(m.allocScatter('r', 65, FOUR_GIB), null, 'the Normal zone is out of reach');
  t.same(m.allocScatter('r', 28, FOUR_GIB), [
    { pfn: PFN_4G - 16, npages: 16 },
    { pfn: PFN_4G - 24, npages: 8 },
    { pfn: PFN_4G - 28, npages: 4 },
  ], 'the free 16 + 8 + 4 blocks, largest first, as taken (not re-sorted by address)');
  m.freeExtent({ pfn: PFN_4G - 64, npages: 64 });
  t.same(m.regionStatus(), initial);
  const all = m.allocScatter('r', 128, null, 3)!;
  t.same(all, [{ pfn: PFN_4G, npages: 64 }, { pfn: PFN_4G - 64, npages: 64 }], 'order-3 blocks, joined per zone, Normal first');
  t.equal(m.freeBytes(), 0);
  t.same(m.regionStatus()[0]!.freeByOrder, Array(MAX_PAGE_ORDER + 1).fill(0), 'nothing free, 11 columns');
  t.equal(m.regionStatus()[0]!.largestFree, 0);
  m.freeExtent({ pfn: PFN_4G - 64, npages: 128 });
  t.same(m.regionStatus(), initial, 'freeExtent across the zone boundary');
  t.same(m.allocScatter('r', 0, null), []);
});

t.test('regionStatus numbers add up', async (t) => {
  const m = new PhysicalMemory([DRAM], new Map([['dram', [3 * GiB]]]));
  const s0 = m.regionStatus()[0]!;
  t.equal(s0.free, 8 * GiB);
  t.equal(s0.largestFree, 4 * 2 ** 20, 'the largest block is MAX_PAGE_ORDER: 4 MiB');
  t.same(s0.freeByOrder, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2048], '8 GiB of 4 MiB blocks, 11 columns as /proc/buddyinfo');
  t.same(
    s0.zones.map((z) => [z.name, z.freeByOrder[10]]),
    [
      ['dram/DMA32', 256],
      ['dram/DMA32.1', 256],
      ['dram/Normal', 1536],
    ],
    'per zone, as /proc/buddyinfo: 1 GiB, 1 GiB and 6 GiB of order-10 blocks',
  );
  t.doesNotThrow(() => checkStatus(s0, m.region('dram').zones));
  t.equal(m.allocBlock('dram', 20, null), PFN_4G, 'a 4 GiB block comes from a free range (alloc_contig_pages), 4 GiB aligned');
  m.allocScatter('dram', 12345, null);
  const s1 = m.regionStatus()[0]!;
  t.equal(s1.free, 8 * GiB - 4 * GiB - 12345 * PAGE);
  t.equal(s1.largestFree, 4 * 2 ** 20);
  t.doesNotThrow(() => checkStatus(s1, m.region('dram').zones));
  t.same(s1.zones.map((z) => z.name), ['dram/DMA32', 'dram/DMA32.1', 'dram/Normal']);
  t.equal(s1.zones[0]!.free, GiB, 'lowest zone untouched');
  t.equal(s1.zones[2]!.free, 2 * GiB - 12345 * PAGE);
});

type Lim = number | null; // index into the region's zone ends, or null
type Op =
  | { k: 'block'; order: number; lim: Lim }
  | { k: 'contig'; n: number; alignOrder: number; lim: Lim }
  | { k: 'scatter'; n: number; lim: Lim; maxSeg: number | undefined }
  | { k: 'free'; pick: number };

const limArb = fc.option(fc.nat({ max: 5 }), { nil: null });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('block' as const), order: fc.integer({ min: 0, max: 8 }), lim: limArb }),
  fc.record({ k: fc.constant('contig' as const), n: fc.integer({ min: 1, max: 200 }), alignOrder: fc.integer({ min: 0, max: 6 }), lim: limArb }),
  fc.record({ k: fc.constant('scatter' as const), n: fc.integer({ min: 0, max: 400 }), lim: limArb, maxSeg: fc.option(fc.nat({ max: 9 }), { nil: undefined }) }),
  fc.record({ k: fc.constant('free' as const), pick: fc.nat() }),
);

interface Live {
  extents: Extent[];
  order: number | null; // set for allocBlock
}

t.test('property: random alloc/free across zones keeps every invariant and restores the initial state', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 400 }),
      fc.integer({ min: 1, max: 700 }),
      fc.uniqueArray(fc.integer({ min: 1, max: 699 }), { maxLength: 3 }),
      fc.array(opArb, { maxLength: 40 }),
      (below, npages, cutPages, ops) => {
        const base = FOUR_GIB - below * PAGE;
        const cfg: RegionConfig = { name: 'r', base, size: npages * PAGE, kind: 'dram' };
        const m = new PhysicalMemory([cfg], new Map([['r', cutPages.map((p) => base + p * PAGE)]]));
        const zones = m.region('r').zones;
        const ends = zones.map((z) => z.base + z.size);
        const initial = m.regionStatus();
        const live: Live[] = [];
        const limOf = (l: Lim): number | null => (l === null ? null : ends[l % ends.length]!);
        const pagesOf = (l: Live): number => l.extents.reduce((a, e) => a + e.npages, 0);
        for (const op of ops) {
          if (op.k === 'free') {
            if (live.length === 0) continue;
            const [l] = live.splice(op.pick % live.length, 1);
            if (l!.order !== null) m.freeBlockOrder(l!.extents[0]!.pfn, l!.order);
            else for (const e of l!.extents) m.freeExtent(e);
          } else {
            const max = limOf(op.lim);
            const usable = m.zonesFor('r', max);
            const freeUsable = m.freePagesFor('r', max);
            const countsBefore = usable.map((z) => z.buddy.freeByOrder());
            let got: Live | null = null;
            let order = 0;
            if (op.k === 'block') {
              order = op.order;
              const pfn = m.allocBlock('r', op.order, max);
              if (pfn >= 0) got = { extents: [{ pfn, npages: 2 ** op.order }], order: op.order };
              if (pfn >= 0) assert.equal(pfn % 2 ** op.order, 0, 'block aligned');
            } else if (op.k === 'contig') {
              order = Math.max(Math.ceil(Math.log2(op.n)), op.alignOrder);
              const e = m.allocContig('r', op.n, 2 ** op.alignOrder, max);
              if (e !== null) {
                assert.equal(e.npages, op.n);
                assert.equal(e.pfn % 2 ** op.alignOrder, 0, 'contig aligned');
                got = { extents: [e], order: null };
              }
            } else {
              const ex = m.allocScatter('r', op.n, max, op.maxSeg);
              assert.equal(ex === null, op.n > freeUsable, 'scatter fails exactly when not enough is free');
              if (ex !== null) {
                got = { extents: ex, order: null };
                assert.equal(pagesOf(got), op.n);
                // the kernel's loop on the free counts before the allocation, highest zone first
                const mismatch = matchesOrders(ex, largestFirstOrders(countsBefore, op.n, Math.min(op.maxSeg ?? MAX_PAGE_ORDER, MAX_PAGE_ORDER)));
                assert.equal(mismatch, null, 'largest blocks first, as system_heap');
                for (let i = 1; i < ex.length; i++) assert.notEqual(ex[i]!.pfn, ex[i - 1]!.pfn + ex[i - 1]!.npages, 'blocks adjacent in the list are joined');
              }
            }
            if (got !== null) {
              for (const e of got.extents) {
                assert.ok(e.pfn * PAGE >= base && (e.pfn + e.npages) * PAGE <= base + npages * PAGE, 'inside the region');
                if (max !== null) assert.ok((e.pfn + e.npages) * PAGE <= max, 'below maxAddress');
              }
              if (op.k !== 'scatter') {
                // highest zone first: higher usable zones had no block big enough
                const zi = zones.indexOf(m.zoneOf(got.extents[0]!.pfn));
                for (const z of usable) if (zones.indexOf(z) > zi) assert.ok(z.buddy.largestFreeOrder() < order, `${z.name} could not serve`);
              }
              live.push(got);
            } else if (op.k !== 'scatter') {
              for (const z of usable) assert.ok(z.buddy.largestFreeOrder() < order, 'failure means no zone could serve');
            }
          }
          // no overlap between live allocations
          const ivs = live.flatMap((l) => l.extents).sort((a, b) => a.pfn - b.pfn);
          for (let i = 1; i < ivs.length; i++) assert.ok(ivs[i]!.pfn >= ivs[i - 1]!.pfn + ivs[i - 1]!.npages, 'no overlap');
          const livePages = live.reduce((a, l) => a + pagesOf(l), 0);
          assert.equal(m.freeBytes(), (npages - livePages) * PAGE, 'free == total - live');
          checkStatus(m.regionStatus()[0]!, zones);
        }
        for (const l of live) {
          if (l.order !== null) m.freeBlockOrder(l.extents[0]!.pfn, l.order);
          else for (const e of l.extents) m.freeExtent(e);
        }
        assert.deepEqual(m.regionStatus(), initial, 'initial status restored');
        for (const z of zones) assert.deepEqual(z.buddy.freeBlocks(), new BuddyAllocator(z.base / PAGE, z.size / PAGE, MAX_PAGE_ORDER).freeBlocks(), `${z.name} fully merged`);
      },
    ),
    { seed: 42, numRuns: 200 },
  );
  t.pass('200 random regions and op sequences');
});
