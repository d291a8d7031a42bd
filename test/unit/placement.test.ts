/**
 * Placement (alloc {minAddress}) below the op: the buddy allocator carving
 * blocks at or above a page, physical memory across zones, hugepage pools
 * taking (or gathering as surplus) pages above an address, and pools that
 * make a placed buffer direct and refuse what they can never place.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BuddyAllocator, type Block } from '../../daemon/memory/buddy.js';
import { PhysicalMemory, FOUR_GIB, PAGE } from '../../daemon/memory/physmem.js';
import { HugepagePool } from '../../daemon/memory/hugepages.js';
import { Machine } from '../../daemon/alloc/machine.js';
import { defaultConfig, errorOf, hpStat, snap, sameSnap } from '../helpers/machine.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const H = 2 * MiB;

/** Free blocks and live blocks tile the zone; free buddies are merged; counters agree. */
function tiles(b: BuddyAllocator, live: Block[]): void {
  const pieces = [...b.freeBlocks().map((f) => ({ pfn: f.pfn, n: 2 ** f.order })), ...live.map((l) => ({ pfn: l.pfn, n: 2 ** l.order }))].sort((x, y) => x.pfn - y.pfn);
  let at = b.startPfn;
  for (const p of pieces) {
    assert.equal(p.pfn, at, `pieces tile the zone at ${at}`);
    at += p.n;
  }
  assert.equal(at, b.endPfn);
  const free = new Set(b.freeBlocks().map((f) => `${f.pfn}/${f.order}`));
  for (const f of b.freeBlocks()) {
    if (f.order === b.maxOrder) continue;
    const size = 2 ** f.order;
    const buddy = Math.floor(f.pfn / size) % 2 === 0 ? f.pfn + size : f.pfn - size;
    assert.ok(!free.has(`${buddy}/${f.order}`), `free buddies ${f.pfn}/${buddy} merged`);
  }
  assert.equal(b.freePages, b.totalPages - live.reduce((a, l) => a + 2 ** l.order, 0));
}

t.test('buddy: a block at or above a page, carved from the smallest free block holding one', async (t) => {
  const b = new BuddyAllocator(0, 1024);
  t.equal(b.alloc(0, 600), 600, 'one page at 600 exactly');
  t.equal(b.alloc(3, 601), 608, 'an order-3 block: the next aligned start');
  t.equal(b.alloc(0, 601), 601, 'the smallest free block first: the page left beside 600');
  tiles(b, [
    { pfn: 600, order: 0 },
    { pfn: 601, order: 0 },
    { pfn: 608, order: 3 },
  ]);
  t.equal(b.freePagesFrom(1000), 24);
  t.equal(b.freePagesFrom(0), b.freePages);
  t.equal(b.alloc(5, 1000), -1, 'no 32-page block fits at or above 1000');
  t.equal(b.alloc(3, 1016), 1016);
  t.equal(b.largestFreeFrom(1000), 8, 'pages 1000..1007 of the free block 992..1007 (1008..1015 is another block)');
  b.free(600, 0);
  b.free(601, 0);
  b.free(608, 3);
  b.free(1016, 3);
  t.same(b.freeBlocks(), [{ pfn: 0, order: 10 }], 'all merged back');
});

t.test('buddy: scatter and exact allocations at or above a page; all or nothing', async (t) => {
  const b = new BuddyAllocator(0, 1024);
  const blocks = b.allocScatter(100, b.maxOrder, 900)!;
  t.ok(blocks.every((x) => x.pfn >= 900), 'every block at or above 900');
  t.equal(blocks.reduce((a, x) => a + 2 ** x.order, 0), 100);
  const before = JSON.stringify(b.freeBlocks());
  t.equal(b.allocScatter(25, b.maxOrder, 900), null, '24 pages left there: refused');
  t.equal(JSON.stringify(b.freeBlocks()), before, 'nothing changed');
  // a 64-page block is carved (48 rounded up), from the smallest free block that holds one: 768..895, not 0..511
  const e = b.allocExact(48, 16, 100);
  t.equal(e, 768, '48 contiguous pages aligned to 16 at or above 100');
  tiles(b, [...blocks, { pfn: 768, order: 5 }, { pfn: 800, order: 4 }]);
});

t.test('buddy: placed allocations keep every invariant (property)', async () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 1023 }), fc.boolean()), { maxLength: 60 }), (ops) => {
      const b = new BuddyAllocator(0, 1024);
      const live: Block[] = [];
      for (const [order, min, free] of ops) {
        if (free && live.length > 0) {
          const x = live.splice(min % live.length, 1)[0]!;
          b.free(x.pfn, x.order);
        } else {
          const room = b.freePagesFrom(min);
          const pfn = b.alloc(order, min);
          if (pfn >= 0) {
            assert.ok(pfn >= min && pfn % 2 ** order === 0, `block ${pfn}/${order} at or above ${min}, aligned`);
            assert.equal(b.freePagesFrom(min), room - 2 ** order);
            live.push({ pfn, order });
          } else {
            // refused only when no free block holds an aligned block of that order at or above min
            const n = 2 ** order;
            const fits = b.freeBlocks().some((f) => {
              const start = Math.max(f.pfn, Math.ceil(min / n) * n);
              return start + n <= f.pfn + 2 ** f.order;
            });
            assert.ok(!fits, `alloc(${order}, ${min}) refused although a free block holds one`);
          }
        }
        tiles(b, live);
      }
    }),
    { seed: 15, numRuns: 300 },
  );
});

const DRAM = { name: 'dram', base: 0x8000_0000, size: 8 * GiB, kind: 'dram' as const };

t.test('physical memory: zones at or above the address only; an address inside a zone', async (t) => {
  const m = new PhysicalMemory([DRAM]);
  const ex = m.allocScatter('dram', 300, null, undefined, FOUR_GIB)!;
  t.ok(ex.every((e) => e.pfn * PAGE >= FOUR_GIB), 'scatter: every extent above 4 GiB');
  // a fresh Normal zone is 4 MiB blocks (MAX_PAGE_ORDER): the lowest aligned start at or above the address
  const fresh = new PhysicalMemory([DRAM]);
  t.equal(fresh.allocContig('dram', 512, 512, null, 5 * GiB + 4096)!.pfn * PAGE, 5 * GiB + 2 * MiB, 'contiguous 2 MiB aligned, at or above 5 GiB + 4 KiB');
  t.equal(fresh.allocContig('dram', 512, 512, null, 9 * GiB + 4096)!.pfn * PAGE, 9 * GiB + 2 * MiB, 'the next aligned start after 9 GiB + 4 KiB');
  const c = m.allocContig('dram', 512, 512, null, 5 * GiB + 4096)!;
  t.ok(c.pfn * PAGE >= 5 * GiB + 4096 && c.pfn % 512 === 0, 'beside a scattered allocation too');
  const hp = m.allocBlock('dram', 9, null, 9 * GiB);
  t.ok(hp * PAGE >= 9 * GiB, 'a 2 MiB block at or above 9 GiB');
  t.equal(m.allocBlock('dram', 9, null, 10 * GiB), -1, 'nothing at or above the end of the region');
  t.equal(m.freePagesFor('dram', null, 10 * GiB - 4096), 1, 'one page below the end');
  t.equal(m.freePagesFor('dram', FOUR_GIB, FOUR_GIB), 0, 'below 4 GiB and at or above it: nothing');
});

t.test('hugepages below 4 GiB: a placed request takes none of them, gathers surplus above, or changes nothing', async (t) => {
  const mem = new PhysicalMemory([DRAM]);
  // the Normal zone taken first, so the persistent hugepages land below 4 GiB
  const normal = mem.allocScatter('dram', 6 * GiB / PAGE, null, undefined, FOUR_GIB)!;
  const hp = new HugepagePool(mem, { size: H, region: 'dram', nr: 4, overcommit: 0 });
  t.ok(hp.freePages().every((p) => p.pfn * PAGE < FOUR_GIB), 'four persistent pages, all below 4 GiB');
  for (const e of normal) mem.freeExtent(e);
  t.equal(hp.freeFrom(FOUR_GIB), 0);
  const before = JSON.stringify(hp.status());
  t.equal(hp.reserveAndTake(1, false, 'writeback', FOUR_GIB), null, 'no overcommit: refused');
  t.equal(JSON.stringify(hp.status()), before, 'nothing changed');
  hp.setOvercommit(2);
  const got = hp.reserveAndTake(1, false, 'writeback', FOUR_GIB)!;
  t.ok(got[0]!.pfn * PAGE >= FOUR_GIB, 'a surplus page gathered above 4 GiB');
  t.match(hp.status(), { total: 5, free: 4, surplus: 1, reserved: 0 });
  t.equal(hp.reserveAndTake(2, true, 'writeback', FOUR_GIB), null, 'contiguous: one more surplus page would exceed the overcommit of 2 (needs 2 above)');
  t.match(hp.status(), { total: 5, free: 4, surplus: 1, reserved: 0 }, 'nothing changed');
  hp.put(got[0]!.pfn, 'writeback');
  t.match(hp.status(), { total: 4, free: 4, surplus: 0 }, 'the surplus page dissolves when put back');
  const low = hp.reserveAndTake(2, false);
  t.ok(low!.every((p) => p.pfn * PAGE < FOUR_GIB), 'unplaced requests take the lowest as before');
});

t.test('pools: a placed buffer is direct, above the address; a pool that cannot place it says why', async (t) => {
  const m = new Machine(defaultConfig());
  const tiny = m.alloc({ pool: 'default', size: 100, owner: 1, minAddress: 6 * GiB });
  t.equal(tiny.kind, 'direct', 'placed: whole pages of its own');
  t.equal(tiny.usize, 4096);
  t.ok(tiny.segments.every((s) => s.addr >= 6 * GiB));
  const hb = m.alloc({ pool: 'huge', size: MiB, owner: 1, minAddress: FOUR_GIB });
  t.match(hb, { kind: 'direct', usize: H });
  t.ok(hb.segments[0]!.addr >= FOUR_GIB);
  const before = snap(m);
  t.match(errorOf(() => m.alloc({ pool: 'dma32', size: 4096, owner: 1, minAddress: FOUR_GIB })), {
    code: 'EINVAL',
    message: "pool 'dma32' has no memory at or above minAddress 0x100000000: its maxAddress is 0x100000000",
  });
  t.match(errorOf(() => m.alloc({ pool: 'contig', size: 4096, owner: 1, minAddress: FOUR_GIB })), {
    message: "pool 'contig' has no memory at or above minAddress 0x100000000: region 'carveout' ends at 0x70000000",
  });
  t.match(errorOf(() => m.alloc({ pool: 'default', size: 4096, owner: 1, minAddress: FOUR_GIB + 1 })), {
    message: "field 'minAddress' must be a multiple of 4096 (a page) (got 0x100000001)",
  });
  t.match(errorOf(() => m.alloc({ pool: 'huge', size: 4 * MiB, owner: 1, minAddress: FOUR_GIB, populate: false })), {
    message: "field 'populate': false cannot be combined with 'minAddress': a placed buffer takes its pages at once",
  });
  // the default machine's Normal zone: 2 MiB hugepages at [4, 4.5) GiB, 1 GiB ones (free ranges, lowest first) at [5, 7) GiB;
  // free: [4.5, 5) and [7, 10) GiB but the page the tiny buffer took at 7 GiB
  const e = errorOf(() => m.alloc({ pool: 'default', size: 4 * GiB, owner: 1, minAddress: 5 * GiB - 8 * MiB }));
  t.equal(e.code, 'ENOMEM');
  t.equal(e.message, "pool 'default': cannot allocate 4 GiB (4294967296 bytes) at or above 0x13f800000: 3.01 GiB free in region 'dram' at or above 0x13f800000, largest contiguous free block 4 MiB");
  t.match(e.details, { minAddress: 5 * GiB - 8 * MiB, free: 3 * GiB + 8 * MiB - 4096 });
  sameSnap(t, snap(m), before, 'refusals change nothing');
  const hs = hpStat(m);
  t.equal(hs.inUse, 1, 'the placed hugepage buffer holds one hugepage');
  m.free(hb);
  m.free(tiny);
});
