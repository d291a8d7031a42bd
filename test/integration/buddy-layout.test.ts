/**
 * Issue 16 items 1 and 2, end to end through the real daemon:
 *
 * - scatter buffers come largest block first, in the order the blocks were
 *   taken (drivers/dma-buf/heaps/system_heap.c alloc_largest_available), so
 *   the gpu's IOMMU maps 3 MiB + 20 KiB with 22 entries (1 × 2M, 16 × 64K,
 *   5 × 4K) where an address-sorted [20 KiB, 3 MiB] layout needs 773;
 * - the buddy stops at MAX_PAGE_ORDER 10 (11 /proc/buddyinfo columns);
 *   larger physically contiguous buffers and 1 GiB hugepages come from free
 *   ranges (alloc_contig_range / alloc_contig_pages), without migration, and
 *   fail naming the longest free run and what holds the page that ends it.
 *
 * Expected layouts and IOMMU entries come from the kernel's algorithms
 * written independently here (test/helpers/largest-first.ts, iommuEntries).
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { rejection } from '../helpers/procs.js';
import { client, KiB, MiB, GiB } from '../helpers/drivers.js';
import { largestFirstOrders, matchesOrders } from '../helpers/largest-first.js';
import type { Status } from '../../client/index.js';

const PAGE = 4096;
const GPU_PAGES = [2 * MiB, 64 * KiB, 4 * KiB];

/**
 * drivers/iommu/iommu.c iommu_map → iommu_pgsize, per piece: the largest
 * supported page size that fits what is left and to which both the IOVA and
 * the physical address are aligned. Pieces follow each other in IOVA.
 */
function iommuEntries(iova: number, pieces: { addr: number; len: number }[]): Record<string, number> {
  const out: Record<string, number> = {};
  let va = iova;
  for (const p of pieces) {
    for (let off = 0; off < p.len; ) {
      const s = GPU_PAGES.find((sz) => sz <= p.len - off && (va + off) % sz === 0 && (p.addr + off) % sz === 0)!;
      out[String(s)] = (out[String(s)] ?? 0) + 1;
      off += s;
    }
    va += p.len;
  }
  return out;
}

/** The dram zones' free counts per order, highest zone first (the zonelist). */
const dramCounts = (st: Status) => st.memory.regions.find((r) => r.name === 'dram')!.zones.map((z) => z.freeByOrder).reverse();

t.test('scatter buffers: largest block first, so the gpu maps 3 MiB + 20 KiB with 22 IOMMU entries', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const st0 = await c.status();
  for (const r of st0.memory.regions) for (const z of r.zones) t.equal(z.freeByOrder.length, 11, `${z.name}: 11 buddyinfo columns (orders 0..10)`);

  // fragment the buddy: small free blocks at lower addresses than the large ones
  const x = await c.alloc({ pool: 'uncached', size: 2 * MiB + 20 * KiB });
  const y = await c.alloc({ pool: 'uncached', size: 2 * MiB + 8 * KiB });
  await c.close(x.handle);
  const st = await c.status();
  const want = largestFirstOrders(dramCounts(st), (3 * MiB + 20 * KiB) / PAGE, 10);
  t.same(want, [9, 8, 2, 0], "the kernel's loop on this buddyinfo: 2 MiB, 1 MiB, 16 KiB, 4 KiB");

  const z = await c.alloc({ pool: 'uncached', size: 3 * MiB + 20 * KiB });
  t.equal(matchesOrders(z.segments.map((s) => ({ pfn: s.addr / PAGE, npages: s.len / PAGE })), want), null, 'the blocks, in that order');
  t.same(z.segments.map((s) => s.len), [2 * MiB, MiB, 20 * KiB], 'largest first: [2 MiB, 1 MiB, 20 KiB], not sorted by address');
  t.ok(z.segments[2]!.addr < z.segments[1]!.addr, 'the small blocks lie lower in memory than the 1 MiB one');

  const r = await c.register(z.handle, 'gpu');
  t.equal(r.iommu!.iova % (2 * MiB), 0, 'the IOVA is aligned like the first (2 MiB) block');
  t.same(r.iommu!.entries, iommuEntries(r.iommu!.iova, z.segments), 'entries as iommu_pgsize gives for this layout');
  t.same(r.iommu!.entries, { [4 * KiB]: 5, [64 * KiB]: 16, [2 * MiB]: 1 }, '22 entries: 1 × 2M, 16 × 64K, 5 × 4K');
  // the same pages sorted by address (the old layout) would start with the 20 KiB piece
  const sorted = [...z.segments].sort((a, b) => a.addr - b.addr);
  const old = iommuEntries(sorted[0]!.addr % (64 * KiB), sorted);
  const count = (e: Record<string, number>) => Object.values(e).reduce((a, n) => a + n, 0);
  t.ok(count(old) > 22, `address order would need ${count(old)} entries`);
  await c.unregister(z.handle, 'gpu');
  await c.close(z.handle);
  await c.close(y.handle);
});

t.test('contiguous buffers above 4 MiB come from free ranges of the carveout; a busy page is named', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const CARVE = 0x6000_0000;
  const a = await c.alloc({ pool: 'contig', size: 150 * MiB });
  t.same(a.segments, [{ addr: CARVE, len: 150 * MiB }], '150 MiB in one piece at the start of the carveout');
  const b = await c.alloc({ pool: 'contig', size: 8 * MiB });
  t.same(b.segments, [{ addr: CARVE + 150 * MiB, len: 8 * MiB }], 'the next free range, unaligned beyond a page');
  await c.close(a.handle);
  const before = (await c.status()).memory.regions;
  const e = await rejection(c.alloc({ pool: 'contig', size: 200 * MiB }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, "pool 'contig': cannot allocate 200 MiB");
  t.match(e.message, 'no free range of 200 MiB (51200 pages) contiguous');
  t.match(e.message, `the longest free run is 150 MiB (38400 pages) at 0x${CARVE.toString(16)}`);
  const busy = (CARVE + 150 * MiB) / PAGE;
  t.match(e.message, `range busy: pfn 0x${busy.toString(16)} (0x${(busy * PAGE).toString(16)}) is held by pool 'contig'`);
  t.match(e.details, { pool: 'contig', longestFreeRun: 150 * MiB, longestFreeRunAt: CARVE, busyPfn: busy });
  t.same((await c.status()).memory.regions, before, 'the refusal changed nothing');
  const again = await c.alloc({ pool: 'contig', size: 100 * MiB });
  t.same(again.segments, [{ addr: CARVE, len: 100 * MiB }], 'the lowest free range that fits');
});

t.test('1 GiB hugepages come from free ranges (alloc_contig_pages): a resize on a fragmented region says why it fell short', async (t) => {
  const d = await startDaemon(t);
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  const grown = await admin.setHugepages(GiB, 6);
  t.match(grown, { size: GiB, requested: 6, reached: 6 }, 'four more free 1 GiB-aligned ranges: [3, 4), [7, 8), [8, 9), [9, 10) GiB');
  t.equal(grown.reason, undefined, 'no reason when every page was had');
  t.match(await admin.setHugepages(GiB, 2), { reached: 2 }, 'the highest four go back');
  // one 4 KiB buffer placed inside each 1 GiB range that went back
  for (const at of [6.5, 7.5, 8.5, 9.5]) {
    const h = await admin.alloc({ pool: 'default', size: 4096, minAddress: at * GiB });
    t.same(h.segments, [{ addr: at * GiB, len: 4096 }], `a page pinned at ${at} GiB`);
  }
  const r = await admin.setHugepages(GiB, 3);
  t.match(r, { requested: 3, reached: 2 }, 'no free 1 GiB-aligned range is left');
  t.match(r.reason, "region 'dram': no free range of 1 GiB (262144 pages) contiguous aligned to 1 GiB");
  t.match(r.reason, `the longest free run is 1 GiB (262143 pages) at 0x${(6.5 * GiB + PAGE).toString(16)}`);
  t.match(r.reason, `range busy: pfn 0x${((7.5 * GiB) / PAGE).toString(16)} (0x${(7.5 * GiB).toString(16)}) is held by pool 'default'`);
  t.match((await admin.status()).hugepages.find((h) => h.size === GiB), { nr: 2, requested: 3 });
});
