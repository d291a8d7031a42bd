/**
 * Hugepage faults (daemon/alloc/hugefault.ts): a populate: false buffer's
 * hugepages are backed one at a time, by the accesses that touch them, with
 * the counters Linux shows (mm/hugetlb.c: hugetlb_reserve_pages,
 * hugetlb_no_page → alloc_hugetlb_folio, free_huge_folio,
 * hugetlb_unreserve_pages → return_unused_surplus_pages, set_max_huge_pages;
 * Documentation/admin-guide/mm/hugetlbpage.rst, Documentation/mm/hugetlbfs_reserv.rst).
 */
import t from 'tap';
import fc from 'fast-check';
import { Machine } from '../../daemon/alloc/machine.js';
import { buildConfig } from '../../daemon/config/config.js';
import type { PhysBuffer } from '../../daemon/alloc/pool.js';
import { backSlots, backedCount, backedPieces, chunkedBacked, forEachBacked } from '../../daemon/alloc/hugefault.js';
import { H, hpStat, poolStat, snap, regionFree } from '../helpers/machine.js';

/** 64 MiB of DRAM, nr 2 MiB hugepages (overcommit as given), a write-back and a write-combine hugepage pool. */
function machine(nr = 10, overcommit = 4): Machine {
  const raw = {
    memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64M', kind: 'dram' }] },
    hugepages: [{ size: '2M', region: 'dram', nr, overcommit }],
    pools: [
      { name: 'default', cache: 'writeback', region: 'dram' },
      { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram' },
      { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'dram' },
    ],
  };
  return new Machine(buildConfig(raw, 'test').machine, () => 0);
}

const counters = (m: Machine) => {
  const s = hpStat(m);
  return { total: s.total, free: s.free, reserved: s.reserved, surplus: s.surplus, inUse: s.inUse };
};

t.test("the issue's example: a 1-byte write backs one hugepage of three (free 7, resv 2)", async (t) => {
  const m = machine(10);
  // 10 persistent 2 MiB hugepages, all free.
  // a populated 2-hugepage buffer takes two:          free 10 − 2 = 8, resv 0
  const other = m.alloc({ pool: 'huge', size: 2 * H, owner: 1 });
  t.same(counters(m), { total: 10, free: 8, reserved: 0, surplus: 0, inUse: 2 });
  // populate: false, 3 hugepages: hugetlb_reserve_pages → hugetlb_acct_memory(3):
  //                                                   free 8,          resv 0 + 3 = 3
  const b = m.alloc({ pool: 'huge', size: 3 * H, owner: 1, populate: false });
  t.same(counters(m), { total: 10, free: 8, reserved: 3, surplus: 0, inUse: 2 });
  t.same(b.slots, [null, null, null]);
  // a 1-byte write in the middle hugepage: hugetlb_no_page → alloc_hugetlb_folio takes one free page and
  // consumes the VMA's reservation for that index:  free 8 − 1 = 7, resv 3 − 1 = 2
  // (backing all three, as bufferd did, gave free 8 − 3 = 5, resv 0: the "free 5, resv 0")
  m.write(b, H + H / 2, Buffer.from([0x5a]));
  t.same(counters(m), { total: 10, free: 7, reserved: 2, surplus: 0, inUse: 3 });
  t.equal(hpStat(m).available, 5, 'available = free − resv = 7 − 2');
  t.equal(b.reservedPages, 2);
  t.equal(backedCount(b), 1);
  t.same(b.slots!.map((s) => s !== null), [false, true, false], 'only the middle hugepage is backed');
  t.equal(b.blocks.length, 1);
  t.same(backedPieces(b), [{ off: H, addr: b.blocks[0]!.pfn * 4096, len: H }], 'its piece sits at offset 2 MiB');
  t.same(b.segments, [{ addr: b.blocks[0]!.pfn * 4096, len: H }]);
  t.match(poolStat(m, 'huge'), { mapped: 5 * H, resident: 3 * H, pages: 3 }, 'mapped counts the reservation; resident only what is backed');
  t.same(m.checkInvariants(), []);
  // a read of the same hugepage faults nothing more, and sees the byte
  t.same([...m.read(b, H + H / 2 - 1, 3)], [0, 0x5a, 0]);
  t.same(counters(m), { total: 10, free: 7, reserved: 2, surplus: 0, inUse: 3 });
  // a read of the first hugepage faults it in too (hugetlbfs has no zero page): free 6, resv 1
  t.ok(m.read(b, 0, 10).every((x) => x === 0), 'a fresh hugepage reads as zeros');
  t.same(counters(m), { total: 10, free: 6, reserved: 1, surplus: 0, inUse: 4 });
  // filling the whole buffer faults the last one: free 5, resv 0; the byte written first is kept (no re-zeroing)
  m.fill(b, 0, H, 0x11);
  t.same(counters(m), { total: 10, free: 6, reserved: 1, surplus: 0, inUse: 4 }, 'a fill of the first hugepage only faults nothing new');
  m.fill(b, 2 * H, H, 0x22);
  t.same(counters(m), { total: 10, free: 5, reserved: 0, surplus: 0, inUse: 5 });
  t.equal(b.slots, undefined, 'fully backed: an ordinary direct buffer');
  t.equal(b.reservedPages, 0);
  t.equal(b.segments.reduce((n, s) => n + s.len, 0), 3 * H);
  t.same([...m.read(b, H - 1, 2 + H / 2)].filter((_, i) => i === 0 || i === 1 || i === 1 + H / 2), [0x11, 0, 0x5a]);
  t.same(m.checkInvariants(), []);
  m.free(b);
  t.same(counters(m), { total: 10, free: 8, reserved: 0, surplus: 0, inUse: 2 }, 'its three pages go back: free 5 + 3 = 8');
  m.free(other);
  t.same(counters(m), { total: 10, free: 10, reserved: 0, surplus: 0, inUse: 0 });
  t.same(m.checkInvariants(), []);
});

t.test('without other users: 10 free → a 1-byte write leaves free 9, resv 2', async (t) => {
  const m = machine(10);
  const b = m.alloc({ pool: 'huge', size: 3 * H, owner: 1, populate: false });
  m.write(b, H + 1, Buffer.from([1]));
  // free 10 − 1 = 9, resv 3 − 1 = 2
  t.same(counters(m), { total: 10, free: 9, reserved: 2, surplus: 0, inUse: 1 });
  // a zero-length access touches no hugepage
  t.equal(m.touch(b, 2 * H, 0), 0);
  t.equal(m.touch(b, 0, 1), 1, 'one hugepage faulted');
  t.equal(m.touch(b, 0, 1), 0, 'already backed');
  // a range across two hugepages faults both (here the last only: the middle one is backed)
  t.equal(m.touch(b, 2 * H - 1, 2), 1);
  t.same(counters(m), { total: 10, free: 7, reserved: 0, surplus: 0, inUse: 3 });
  m.free(b);
  t.same(counters(m), { total: 10, free: 10, reserved: 0, surplus: 0, inUse: 0 });
});

t.test('freeing a partly backed buffer gives back its backed pages (free++) and its unused reservations (resv--)', async (t) => {
  const m = machine(10);
  const start = snap(m);
  const b = m.alloc({ pool: 'wc', size: 4 * H + 5, owner: 1, populate: false });
  t.same(counters(m), { total: 10, free: 10, reserved: 5, surplus: 0, inUse: 0 });
  m.write(b, 4 * H + 4, Buffer.from([9])); // the last, partial hugepage
  m.write(b, 0, Buffer.from([9]));
  t.same(counters(m), { total: 10, free: 8, reserved: 3, surplus: 0, inUse: 2 });
  t.equal(poolStat(m, 'wc').conversions, 2, 'only the two faulted pages were converted to write-combine');
  t.same(backedPieces(b).map((p) => [p.off, p.len]), [[0, H], [4 * H, 5]], 'the tail piece is the 5 bytes the buffer has there');
  t.same(m.checkInvariants(), []);
  // remove_inode_hugepages frees the 2 backed pages (free 8 + 2 = 10), hugetlb_unreserve_pages the 3 others (resv 3 − 3 = 0)
  m.free(b);
  t.same(counters(m), { total: 10, free: 10, reserved: 0, surplus: 0, inUse: 0 });
  t.match(poolStat(m, 'wc'), { mapped: 0, resident: 0, directBuffers: 0 });
  t.same(m.checkInvariants(), []);
  const end = JSON.parse(snap(m));
  const s0 = JSON.parse(start);
  t.same([end.r, end.h.map((h: { largestFreeRun: number }) => ({ ...h, largestFreeRun: 0 }))], [s0.r, s0.h.map((h: { largestFreeRun: number }) => ({ ...h, largestFreeRun: 0 }))], 'regions and hugepage counters as at the start');
});

t.test('a reservation that needed surplus pages: faults take them, free dissolves them', async (t) => {
  const m = machine(2, 4);
  const dram0 = regionFree(m, 'dram');
  // 5 hugepages, 2 free: gather_surplus_pages allocates needed = resv + 5 − free = 0 + 5 − 2 = 3 surplus pages
  const b = m.alloc({ pool: 'huge', size: 5 * H, owner: 1, populate: false });
  t.same(counters(m), { total: 5, free: 5, reserved: 5, surplus: 3, inUse: 0 });
  t.equal(regionFree(m, 'dram'), dram0 - 3 * H);
  // one fault: free 5 − 1 = 4, resv 5 − 1 = 4
  m.write(b, 4 * H, Buffer.from([7]));
  t.same(counters(m), { total: 5, free: 4, reserved: 4, surplus: 3, inUse: 1 });
  t.same(m.checkInvariants(), []);
  // free: the backed page goes through free_huge_folio, which dissolves it while surplus > 0 (surplus 3 → 2, total 4);
  // then return_unused_surplus_pages(unused 4) frees min(4, surplus 2) = 2 free pages: total 2, surplus 0, resv 0
  m.free(b);
  t.same(counters(m), { total: 2, free: 2, reserved: 0, surplus: 0, inUse: 0 });
  t.equal(regionFree(m, 'dram'), dram0, 'every surplus page went back to the buddy allocator');
  t.same(m.checkInvariants(), []);
});

t.test('hugepages.set shrinking while reservations are outstanding keeps what they need', async (t) => {
  const m = machine(10, 0);
  const b = m.alloc({ pool: 'huge', size: 3 * H, owner: 1, populate: false });
  m.write(b, 0, Buffer.from([1]));
  t.same(counters(m), { total: 10, free: 9, reserved: 2, surplus: 0, inUse: 1 });
  // set_max_huge_pages(0): min_count = resv + nr − free = 2 + 10 − 9 = 3, so free pages go until 3 are left
  // (the 2 reserved free ones and the one in use), and the 3 above count 0 become surplus
  const r = m.setHugepages(H, 0);
  t.equal(r.reached, 0);
  t.same(counters(m), { total: 3, free: 2, reserved: 2, surplus: 3, inUse: 1 });
  t.equal(hpStat(m).nr, 0);
  // the reservation still holds: both faults succeed, beyond overcommit 0
  m.fill(b, H, 2 * H, 3);
  t.same(counters(m), { total: 3, free: 0, reserved: 0, surplus: 3, inUse: 3 });
  t.same(m.checkInvariants(), []);
  // every page freed while surplus > 0 is dissolved
  m.free(b);
  t.same(counters(m), { total: 0, free: 0, reserved: 0, surplus: 0, inUse: 0 });
  t.same(m.checkInvariants(), []);
});

t.test('walkers visit only backed hugepages, at their buffer offsets', async (t) => {
  const m = machine(10);
  const b = m.alloc({ pool: 'huge', size: 3 * H, owner: 1, populate: false });
  const seen: [number, number, number][] = [];
  forEachBacked(b, 0, 3 * H, (addr, at, n) => seen.push([addr, at, n]));
  t.same(seen, [], 'nothing backed, nothing visited');
  m.touch(b, 2 * H + 10, 1);
  const page = b.blocks[0]!.pfn * 4096;
  forEachBacked(b, H, 2 * H, (addr, at, n) => seen.push([addr, at, n]));
  t.same(seen, [[page, H, H]], 'only the third hugepage, 2 MiB into the range');
  const chunks = [...chunkedBacked(b, 2 * H + 100, H - 100, H / 2)];
  t.same(chunks, [[page + 100, 0, H / 2, true], [page + 100 + H / 2, H / 2, H / 2 - 100, false]]);
  // a slot is backed once: backing it again is a bug, refused before anything changes
  t.throws(() => backSlots(b, [2], [b.blocks[0]!]), RangeError);
  t.equal(b.reservedPages, 2);
  // once fully backed, the walkers are the segment walkers, and the pieces start at offset 0
  m.touch(b);
  t.same(backedPieces(b).map((p) => [p.off, p.len]).reduce((a, [o, l]) => (a === o ? o! + l! : -1), 0), 3 * H, 'the pieces follow each other from offset 0');
  const all: number[] = [];
  forEachBacked(b, 0, 3 * H, (_a, _at, n) => all.push(n));
  t.equal(all.reduce((a, x) => a + x, 0), 3 * H);
  m.free(b);
});

/** A random access or change, for the property. */
type Op =
  | { k: 'alloc'; pages: number; lazy: boolean; wc: boolean }
  | { k: 'access'; i: number; off: number; len: number }
  | { k: 'free'; i: number }
  | { k: 'nr'; nr: number; overcommit: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('alloc' as const), pages: fc.integer({ min: 1, max: 5 }), lazy: fc.boolean(), wc: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('access' as const), i: fc.nat(), off: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 0, max: 3 * H }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('free' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('nr' as const), nr: fc.integer({ min: 0, max: 14 }), overcommit: fc.integer({ min: 0, max: 6 }) }) },
);

t.test('property: any sequence of accesses keeps the hugetlbpage.rst counters exact', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const m = machine(8, 4);
        const live: PhysBuffer[] = [];
        const fail = (step: number, what: string): never => {
          throw new Error(`step ${step} (${JSON.stringify(ops[step])}): ${what}`);
        };
        ops.forEach((o, step) => {
          const before = counters(m);
          if (o.k === 'alloc') {
            try {
              live.push(m.alloc({ pool: o.wc ? 'wc' : 'huge', size: o.pages * H, owner: 1, populate: !o.lazy }));
            } catch (e) {
              if ((e as { code?: string }).code !== 'ENOMEM') throw e;
              if (JSON.stringify(counters(m)) !== JSON.stringify(before)) fail(step, 'a failed alloc changed the counters');
            }
          } else if (o.k === 'access' && live.length > 0) {
            const b = live[o.i % live.length]!;
            const off = Math.floor(o.off * (b.size - 1));
            const len = Math.min(o.len, b.size - off);
            const ps = b.pool.pageSize;
            const want = b.slots === undefined ? 0 : b.slots.filter((s, i) => s === null && len > 0 && i >= Math.floor(off / ps) && i < Math.ceil((off + len) / ps)).length;
            m.write(b, off, Buffer.alloc(len, 0xc3));
            const after = counters(m);
            // hugetlb_no_page per hugepage touched and not yet backed: free −1, resv −1 each, nothing else
            if (after.free !== before.free - want || after.reserved !== before.reserved - want || after.total !== before.total || after.surplus !== before.surplus) {
              fail(step, `faulting ${want} hugepage(s) moved ${JSON.stringify(before)} to ${JSON.stringify(after)}`);
            }
            if (len > 0 && !m.read(b, off, len).every((x) => x === 0xc3)) fail(step, 'the bytes written do not read back');
          } else if (o.k === 'free' && live.length > 0) {
            m.free(live.splice(o.i % live.length, 1)[0]!);
          } else if (o.k === 'nr') {
            m.setHugepages(H, o.nr, o.overcommit);
          }
          const s = hpStat(m);
          // hugetlbpage.rst: HugePages_Rsvd are free pages committed and not yet allocated, so free ≥ resv;
          // total = free + in use; nr_hugepages = total − surplus
          if (s.free < s.reserved) fail(step, `free ${s.free} < reserved ${s.reserved}`);
          if (s.total !== s.free + s.inUse || s.nr !== s.total - s.surplus || s.available !== s.free - s.reserved) fail(step, `counters ${JSON.stringify(s)}`);
          // resv_huge_pages is exactly the reservations not yet consumed; in use exactly the backed pages
          const resv = live.reduce((a, b) => a + b.reservedPages, 0);
          const used = live.reduce((a, b) => a + backedCount(b), 0);
          if (s.reserved !== resv || s.inUse !== used) fail(step, `reserved ${s.reserved} / in use ${s.inUse}, buffers hold ${resv} / ${used}`);
          const bad = m.checkInvariants();
          if (bad.length > 0) fail(step, bad.join('; '));
        });
        for (const b of live) m.free(b);
        const s = hpStat(m);
        if (s.reserved !== 0 || s.inUse !== 0 || s.surplus !== 0) throw new Error(`after freeing everything: ${JSON.stringify(s)}`);
      }),
      { numRuns: 150 },
    ),
  );
});
