/**
 * Physically contiguous runs above MAX_PAGE_ORDER (memory/contig.ts)
 * against mm/page_alloc.c alloc_contig_pages() written independently here:
 * step through the zone's pfns in units of the alignment from the first
 * aligned pfn and take the first candidate range whose pages are all free
 * (pfn_range_valid_contig; bufferd migrates nothing, so "valid" means free).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BuddyAllocator, MAX_PAGE_ORDER } from '../../daemon/memory/buddy.js';
import { allocContigRange, findContigRange, takeRange } from '../../daemon/memory/contig.js';
import { PhysicalMemory, PAGE } from '../../daemon/memory/physmem.js';

/** Free map of a buddy: one boolean per page. */
function freeMap(b: BuddyAllocator): boolean[] {
  const m = Array<boolean>(b.totalPages).fill(false);
  for (const f of b.freeBlocks()) for (let p = f.pfn; p < f.pfn + 2 ** f.order; p++) m[p - b.startPfn] = true;
  return m;
}

/** alloc_contig_pages' loop on a free map: the first aligned candidate whose pages are all free, or −1. */
function kernelContig(b: BuddyAllocator, n: number, align: number, minPfn: number): number {
  const map = freeMap(b);
  const from = Math.max(b.startPfn, minPfn);
  for (let pfn = Math.ceil(from / align) * align; pfn + n <= b.endPfn; pfn += align) {
    let ok = true;
    for (let p = pfn; p < pfn + n && ok; p++) ok = map[p - b.startPfn]!;
    if (ok) return pfn;
  }
  return -1;
}

/** Longest run of free pages at or above minPfn, on a free map. */
function longestRun(b: BuddyAllocator, minPfn: number): { pfn: number; npages: number } {
  const map = freeMap(b);
  let best = { pfn: -1, npages: 0 };
  let start = -1;
  for (let i = 0; i <= map.length; i++) {
    const pfn = b.startPfn + i;
    const free = i < map.length && map[i]! && pfn >= minPfn;
    if (free && start < 0) start = pfn;
    if (!free && start >= 0) {
      if (pfn - start > best.npages) best = { pfn: start, npages: pfn - start };
      start = -1;
    }
  }
  return best;
}

t.test('a range above the largest order: the first aligned all-free range, as alloc_contig_pages', async (t) => {
  // maxOrder 3: blocks of 8 pages, so runs of 9 and more come from free ranges
  const b = new BuddyAllocator(0, 64, 3);
  t.same(b.freeByOrder(), [0, 0, 0, 8]);
  const a = b.alloc(0); // pfn 0
  t.equal(a, 0);
  t.same(findContigRange(b, 20, 1, 0), { pfn: 1 }, 'unaligned: right after the busy page');
  t.same(findContigRange(b, 20, 16, 0), { pfn: 16 }, 'aligned to 16');
  const r = allocContigRange(b, 20, 16, 0);
  t.same(r, { pfn: 16 });
  t.equal(b.freePages, 64 - 1 - 20);
  t.ok(!b.isFree(16) && !b.isFree(35) && b.isFree(36) && b.isFree(15), 'exactly [16, 36) taken');
  const miss = findContigRange(b, 30, 1, 0);
  t.same(miss, { longest: { pfn: 36, npages: 28 }, busyPfn: -1 }, 'the longest run [36, 64) ends at the zone end');
  t.same(findContigRange(b, 16, 16, 40), { pfn: 48 }, 'at or above 40, aligned to 16: [48, 64)');
  const miss2 = findContigRange(b, 17, 16, 40);
  t.same(miss2, { longest: { pfn: 40, npages: 24 }, busyPfn: -1 }, 'at or above 40: the run is cut at 40, 48 is the only aligned start and 48 + 17 > 64');
  b.free(a, 0);
  const m3 = findContigRange(b, 40, 1, 0);
  t.same(m3, { longest: { pfn: 36, npages: 28 }, busyPfn: -1 });
  b.freeRange(16, 20);
  t.same(b.freeByOrder(), [0, 0, 0, 8], 'all merged back');
  t.throws(() => takeRange(b, 0, 65), RangeError, 'a range past the free pages');
});

t.test('property: findContigRange agrees with the kernel loop; allocContigRange takes exactly that range or nothing', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 20, max: 300 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.tuple(fc.nat({ max: 299 }), fc.integer({ min: 1, max: 12 })), { maxLength: 25 }),
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 120 }), alignOrder: fc.integer({ min: 0, max: 6 }), min: fc.nat({ max: 340 }) }), { minLength: 1, maxLength: 6 }),
        (start, npages, maxOrder, busy, reqs) => {
          const b = new BuddyAllocator(start, npages, maxOrder);
          // make holes: take pages as the buddy lends them, give every other run back
          const held: [number, number][] = [];
          for (const [at, n] of busy) {
            const pfn = start + (at % npages);
            const len = Math.min(n, start + npages - pfn);
            if ([...Array(len).keys()].every((i) => b.isFree(pfn + i))) {
              takeRange(b, pfn, len);
              held.push([pfn, len]);
            }
          }
          for (const r of reqs) {
            const align = 2 ** r.alignOrder;
            const want = kernelContig(b, r.n, align, r.min);
            const before = freeMap(b);
            const got = allocContigRange(b, r.n, align, r.min);
            if (want < 0) {
              assert.ok(!('pfn' in got), `no range of ${r.n} aligned ${align} from ${r.min}`);
              assert.deepEqual(freeMap(b), before, 'a miss changes nothing');
              const longest = longestRun(b, r.min);
              if ('longest' in got && got.longest !== null) {
                assert.ok(got.longest.npages <= longest.npages, 'the reported run is a real run');
                const end = got.longest.pfn + got.longest.npages;
                assert.equal(got.busyPfn, end < b.endPfn ? end : -1, 'the busy page right after it');
                if (end < b.endPfn) assert.ok(!b.isFree(end), 'that page is busy');
              }
              // every run long enough to hold the request contains a block of order ≥ k: it was seen
              if (longest.npages >= r.n && 'longest' in got) assert.equal(got.longest?.npages, longest.npages, 'the longest run is reported');
            } else {
              assert.deepEqual(got, { pfn: want }, `first aligned free range for ${r.n} pages aligned ${align} from ${r.min}`);
              const after = freeMap(b);
              before.forEach((f, i) => assert.equal(after[i], f && !(start + i >= want && start + i < want + r.n), `page ${start + i}`));
              held.push([want, r.n]);
            }
          }
          for (const [pfn, n] of held) b.freeRange(pfn, n);
          assert.deepEqual(b.freeBlocks(), new BuddyAllocator(start, npages, maxOrder).freeBlocks(), 'all merged back');
        },
      ),
      { seed: 16, numRuns: 400 },
    ),
  );
});

t.test('PhysicalMemory: above 4 MiB from free ranges; 1 GiB blocks as alloc_contig_pages; reasons when none', async (t) => {
  const GiB = 2 ** 30;
  const MiB = 2 ** 20;
  const m = new PhysicalMemory([{ name: 'r', base: 4 * GiB, size: 3 * GiB, kind: 'dram' }]);
  const z = m.region('r').zones[0]!;
  t.equal(z.buddy.maxOrder, MAX_PAGE_ORDER, 'physical zones stop at MAX_PAGE_ORDER');
  t.equal(m.regionStatus()[0]!.freeByOrder.length, 11, '11 columns');
  const g = m.allocBlock('r', 18, null);
  t.equal(g * PAGE, 4 * GiB, 'a 1 GiB page at the first 1 GiB-aligned free range');
  const pin = m.allocContig('r', 1, 1, null, 5 * GiB + 512 * MiB)!;
  t.equal(pin.pfn * PAGE, 5 * GiB + 512 * MiB, 'one page pinned in the middle of [5, 6) GiB');
  t.equal(m.allocBlock('r', 18, null) * PAGE, 6 * GiB, '[5, 6) GiB is busy: the next aligned range');
  t.equal(m.allocBlock('r', 18, null), -1, 'no further 1 GiB range');
  const miss = m.contigMiss('r', 2 ** 18, 2 ** 18, null);
  t.same(miss, { longest: { pfn: (5 * GiB) / PAGE, npages: (512 * MiB) / PAGE }, busyPfn: (5 * GiB + 512 * MiB) / PAGE }, 'longest: the half before the pinned page, which ends it');
  t.equal(m.contigMiss('r', 1024, 1, null), null, 'the buddy serves 4 MiB');
  const big = m.allocContig('r', (5 * MiB) / PAGE, 1, null)!;
  t.equal(big.pfn * PAGE, 5 * GiB, '5 MiB (above MAX_PAGE_ORDER) from the lowest free range');
  m.freeBlockOrder(g, 18);
  m.freeExtent(big);
  m.freeExtent(pin);
  m.freeBlockOrder(6 * GiB / PAGE, 18);
  t.same(m.regionStatus(), new PhysicalMemory([{ name: 'r', base: 4 * GiB, size: 3 * GiB, kind: 'dram' }]).regionStatus(), 'all back');
});

t.test('speed: a contiguous request on a fragmented 64 GiB zone looks at free blocks, not pages', async (t) => {
  const GiB = 2 ** 30;
  /** A buddy that counts the free-list lookups and the free heads handed out. */
  class Counting extends BuddyAllocator {
    lookups = 0;
    heads = 0;
    override isFreeBlock(pfn: number, order: number): boolean {
      this.lookups++;
      return super.isFreeBlock(pfn, order);
    }
    override freeHeads(order: number): Iterable<number> {
      const hs = [...super.freeHeads(order)];
      this.heads += hs.length;
      return hs;
    }
  }
  const b = new Counting(GiB / PAGE, (64 * GiB) / PAGE, MAX_PAGE_ORDER);
  // pin one page every 6 MiB: no free run holds 8 MiB
  for (let p = b.startPfn; p < b.endPfn; p += 1536) takeRange(b, p, 1);
  b.lookups = 0;
  const t0 = performance.now();
  const miss = findContigRange(b, 2048, 1, 0);
  const ms = performance.now() - t0;
  t.ok(!('pfn' in miss), 'no 8 MiB run');
  t.same('longest' in miss ? miss.longest?.npages : -1, 1535, 'runs of 6 MiB − 4 KiB');
  const pages = b.totalPages;
  t.equal(b.heads, b.freeByOrder()[10], 'only the order-10 blocks are anchors');
  t.ok(b.lookups <= 2 * 10 * b.heads, `${b.lookups} lookups: at most one per order at each end of each anchor group`);
  t.ok(b.lookups * 100 < pages, `${b.lookups} lookups for ${pages} pages`);
  const t1 = performance.now();
  const hit = findContigRange(b, 1535, 1, 0);
  t.same(hit, { pfn: b.startPfn + 1 });
  t.comment(`64 GiB zone, one busy page per 6 MiB: full miss ${ms.toFixed(1)} ms, first-fit hit ${(performance.now() - t1).toFixed(1)} ms (wall clock on this host)`);
});
