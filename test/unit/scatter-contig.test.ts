/**
 * The page sources on top of the largest-first scatter path and the
 * free-range contiguous path: aligned scatter buffers, the reasons a
 * contiguous request or a hugepage resize falls short, and who holds a
 * busy page.
 */
import t from 'tap';
import { Machine } from '../../daemon/alloc/machine.js';
import { contigMissReason, holderOf } from '../../daemon/alloc/contigmiss.js';
import { PhysicalMemory, FOUR_GIB } from '../../daemon/memory/physmem.js';
import { MAX_PAGE_ORDER } from '../../daemon/memory/buddy.js';
import { hugepagesSetView } from '../../client/views.js';
import { smallConfig, H, MiB, PAGE } from '../helpers/machine.js';
import { largestFirstOrders, matchesOrders } from '../helpers/largest-first.js';

const KiB = 1024;
const zoneCounts = (m: Machine) => m.regionStatus().find((r) => r.name === 'dram')!.zones.map((z) => z.freeByOrder).reverse();
const asBlocks = (segs: { addr: number; len: number }[]) => segs.map((s) => ({ pfn: s.addr / PAGE, npages: s.len / PAGE }));

t.test('aligned scatter buffers: the first block carries the alignment, the rest follow largest first', async (t) => {
  const m = new Machine(smallConfig(), () => 0);
  // 64 KiB alignment: the kernel loop's first block (order 9) is aligned already
  const want = largestFirstOrders(zoneCounts(m), (3 * MiB) / PAGE, MAX_PAGE_ORDER);
  const a = m.alloc({ pool: 'default', size: 3 * MiB, align: 64 * KiB, owner: 1 });
  t.equal(a.segments[0]!.addr % (64 * KiB), 0);
  t.equal(matchesOrders(asBlocks(a.segments), want), null, 'as the kernel loop');
  // above the buddy's largest order: the first 8 MiB-aligned piece is a free range
  const b = m.alloc({ pool: 'default', size: 6 * MiB, align: 8 * MiB, owner: 1 });
  t.equal(b.segments[0]!.addr % (8 * MiB), 0, '8 MiB aligned');
  t.equal(b.segments.reduce((x, s) => x + s.len, 0), 6 * MiB);
  // fewer pages than the alignment: one aligned run
  const c = m.alloc({ pool: 'default', size: 2 * MiB + 4 * KiB, align: 4 * MiB, owner: 1 });
  t.equal(c.segments.length, 1);
  t.equal(c.segments[0]!.addr % (4 * MiB), 0, 'one run, 4 MiB aligned');
  t.same(m.checkInvariants(), []);
  for (const x of [a, b, c]) m.free(x);
  t.same(m.checkInvariants(), []);
});

t.test('a first block that cannot reach the alignment order: nothing allocated', async (t) => {
  const m = new PhysicalMemory([{ name: 'r', base: FOUR_GIB, size: 64 * PAGE, kind: 'dram' }]);
  // take every other page: 32 free pages, all order 0
  const held = [];
  for (let i = 0; i < 64; i++) held.push(m.allocContig('r', 1, 1, null)!);
  for (let i = 0; i < 64; i += 2) m.freeExtent(held[i]!);
  const before = JSON.stringify(m.regionStatus());
  t.equal(m.allocScatter('r', 8, null, undefined, 0, 2), null, '8 pages free, none in a 16 KiB block');
  t.equal(JSON.stringify(m.regionStatus()), before, 'nothing changed');
  t.equal(m.allocScatter('r', 8, null)!.length, 8, 'unaligned, eight single pages');
});

t.test('why a contiguous run or a hugepage is missing, and who holds the busy page', async (t) => {
  const m = new Machine(smallConfig(), () => 0);
  const holder = (pfn: number) => holderOf(m.attrs, m.hugepages.values(), { base: 0x4000_0000, size: MiB }, pfn);
  const hp = m.hugepages.get(H)!;
  const freeHuge = hp.freePages()[0]!.pfn;
  t.equal(holder(freeHuge + 3), 'the 2 MiB hugepage pool (a free hugepage)');
  const hb = m.alloc({ pool: 'huge', size: H, owner: 1 });
  t.equal(holder(hb.segments[0]!.addr / PAGE), "pool 'huge' (a 2 MiB hugepage)");
  const d = m.alloc({ pool: 'default', size: 3 * MiB, owner: 1 });
  t.equal(holder(d.segments[0]!.addr / PAGE + 1), "pool 'default'");
  t.equal(holder(0x4000_0000 / PAGE + 5), 'the swiotlb bounce pool');
  t.equal(holder(0x4010_0000 / PAGE), 'a page held outside the pools');

  // a 2 MiB resize beyond memory: no order-9 block left
  const r = m.setHugepages(H, 100);
  t.ok(r.reached < 100);
  t.match(r.reason, /^region 'dram' has no free 2 MiB block \(buddy order 9\); largest free block /);
  t.match(hugepagesSetView(r), `asked for 100, reached ${r.reached} (region 'dram' has no free 2 MiB block`);
  t.match(hugepagesSetView({ ...r, reason: undefined }), '(not enough contiguous memory)');
  t.equal(m.setHugepages(H, 4).reason, undefined);

  // free-range reasons: none at all; long enough but misaligned
  const mem = new PhysicalMemory([{ name: 'r', base: FOUR_GIB, size: 16 * MiB, kind: 'dram' }]);
  const all = mem.allocContig('r', (16 * MiB) / PAGE, 1, null)!;
  const none = contigMissReason(mem, () => 'x', { region: 'r', npages: 2048, alignPages: 1, maxAddress: null, minAddress: 0 })!;
  t.match(none, { text: /no free run comes near that length$/, details: { longestFreeRun: 0 } });
  mem.freeExtent({ pfn: all.pfn + 1, npages: 3000 });
  const mis = contigMissReason(mem, (pfn) => `holder of ${pfn}`, { region: 'r', npages: 2048, alignPages: 2048, maxAddress: null, minAddress: 0 })!;
  t.match(mis.text, '(long enough, but not at an aligned start)');
  t.match(mis.text, `is held by holder of ${all.pfn + 3001}`);
  t.equal(contigMissReason(mem, () => 'x', { region: 'r', npages: 2048, alignPages: 1, maxAddress: null, minAddress: 0 }), null, 'unaligned it fits');
  t.equal(contigMissReason(mem, () => 'x', { region: 'r', npages: 1024, alignPages: 1, maxAddress: null, minAddress: 0 }), null, 'the buddy serves up to 4 MiB');
});
