/**
 * Unit tests of the bounce pool: 2 KiB slots, runs of slots handed out next
 * fit, per-device accounting, and the ENOMEM cases (full, fragmented, too
 * large a mapping).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Swiotlb, SLOT, IO_TLB_SEGSIZE, MAX_MAPPING } from '../../daemon/dma/swiotlb.js';
import { BufferdError } from '../../protocol/errors.js';

const BASE = 0x1000_0000;
const K = 1024;

t.test('the pool is cut into 2 KiB slots', async (t) => {
  t.equal(SLOT, 2048);
  t.equal(new Swiotlb(BASE, 64 * K).nslots, 32);
  t.equal(new Swiotlb(BASE, 5000).nslots, 2, 'a partial slot is not used');
  const p = new Swiotlb(BASE, 64 * K);
  t.equal(p.maxMapping, 256 * K, 'Linux default: 128 slots');
  t.same([p.usedSlots, p.maps, p.full, p.byDevice.size], [0, 0, 0, 0]);
  t.ok(p.contains(BASE));
  t.ok(p.contains(BASE + 64 * K - 1));
  t.notOk(p.contains(BASE + 64 * K));
  t.notOk(p.contains(BASE - 1));
});

t.test('map takes whole slots inside the pool, runs do not overlap', async (t) => {
  const p = new Swiotlb(BASE, 64 * K);
  const a = p.map('nic', 1);
  t.equal(a, BASE);
  t.equal(p.usedSlots, 1, 'one byte takes a slot');
  const b = p.map('nic', 2 * SLOT);
  t.equal(b, BASE + 2 * SLOT, 'next fit after it, on the next page: a mapping of a page or more is page aligned');
  t.equal(p.usedSlots, 3);
  const c = p.map('nic', 4 * SLOT);
  t.equal(c, BASE + 4 * SLOT);
  t.equal(p.usedSlots, 7);
  t.equal(p.map('nic', 100), BASE + 8 * SLOT, 'next fit: the skipped slot 1 waits until the search comes round');
  t.equal(p.maps, 4);
  const runs = [
    [a, 1],
    [b, 2],
    [c, 4],
  ] as const;
  for (const [addr, n] of runs) {
    t.ok(addr >= BASE && addr + n * SLOT <= BASE + 64 * K, 'inside [base, base+size)');
    t.equal((addr - BASE) % SLOT, 0, 'slot aligned');
  }
  for (let i = 1; i < runs.length; i++) t.ok(runs[i - 1]![0] + runs[i - 1]![1] * SLOT <= runs[i]![0], 'no overlap');
});

t.test('unmap frees the slots and counts per device', async (t) => {
  const p = new Swiotlb(BASE, 64 * K);
  const a = p.map('nic', 3 * SLOT);
  const b = p.map('dsp', SLOT);
  const c = p.map('nic', 10);
  t.same(Object.fromEntries(p.byDevice), { nic: 4, dsp: 1 });
  p.unmap('nic', a, 3 * SLOT);
  t.same(Object.fromEntries(p.byDevice), { nic: 1, dsp: 1 });
  t.equal(p.usedSlots, 2);
  p.unmap('nic', c, 10);
  t.notOk(p.byDevice.has('nic'), 'a device at zero slots is dropped');
  p.unmap('dsp', b, SLOT);
  t.equal(p.byDevice.size, 0);
  t.equal(p.usedSlots, 0);
  // the freed slots are usable again: the whole pool in one run
  t.equal(p.map('nic', 32 * SLOT), BASE);
  t.equal(p.usedSlots, 32);
});

t.test('a full pool is ENOMEM naming the device, with free/total in the details', async (t) => {
  const p = new Swiotlb(BASE, 16 * SLOT);
  p.map('gpu', 16 * SLOT);
  const e = t.throws(() => p.map('nic', 1)) as unknown as BufferdError;
  t.ok(e instanceof BufferdError);
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, /^swiotlb buffer is full \(sz: 1 bytes\), total 16 \(slots\), used 16 \(slots\): /);
  t.match(e.message, "device 'nic' needs 1 contiguous slots (2 KiB) inside one 128-slot segment");
  t.match(e.message, '0 of 16 free');
  t.same(e.details, { device: 'nic', slots: 1, free: 0, total: 16 });
  t.equal(p.full, 1);
  t.equal(p.usedSlots, 16, 'nothing changed');
  t.notOk(p.byDevice.has('nic'));
});

t.test('a mapping beyond maxMapping is ENOMEM naming the limit', async (t) => {
  const p = new Swiotlb(BASE, 1024 * K, 64 * K);
  const e = t.throws(() => p.map('cam', 64 * K + 1)) as unknown as BufferdError;
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, "device 'cam'");
  t.match(e.message, /^swiotlb buffer is full \(sz: 65537 bytes\), total 512 \(slots\), used 0 \(slots\): /);
  t.match(e.message, 'the largest bounce mapping is 64 KiB (bounce.maxMapping)');
  t.same(e.details, { device: 'cam', len: 64 * K + 1, maxMapping: 64 * K });
  t.equal(p.full, 0, 'not counted as a full pool');
  t.equal(p.map('cam', 64 * K), BASE, 'exactly the limit is fine');
  t.equal(p.usedSlots, 32);
  // the default limit: 256 KiB, the segment (swiotlb_find_slots)
  t.throws(() => new Swiotlb(BASE, 1024 * K).map('x', 256 * K + 1), /a mapping may not cross a 128-slot segment, so it is at most 256 KiB/);
  t.throws(() => new Swiotlb(BASE, 1024 * K, 512 * K), RangeError, 'no limit above the segment');
});

t.test('fragmentation: enough free slots but no run long enough', async (t) => {
  const p = new Swiotlb(BASE, 16 * SLOT);
  const runs = Array.from({ length: 8 }, () => p.map('nic', 2 * SLOT));
  t.equal(p.usedSlots, 16);
  for (let i = 0; i < 8; i += 2) p.unmap('nic', runs[i]!, 2 * SLOT);
  t.equal(p.usedSlots, 8);
  const e = t.throws(() => p.map('nic', 3 * SLOT)) as unknown as BufferdError;
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, 'swiotlb buffer is full');
  t.match(e.message, '8 of 16 free and no such run');
  t.same(e.details, { device: 'nic', slots: 3, free: 8, total: 16 });
  // a run that fits a hole still works
  const hole = p.map('nic', 2 * SLOT);
  t.ok(runs.filter((_, i) => i % 2 === 0).includes(hole));
});

t.test('next fit wraps around to the start of the pool', async (t) => {
  const p = new Swiotlb(BASE, 8 * SLOT);
  const a = p.map('x', 4 * SLOT);
  p.map('x', 3 * SLOT);
  p.unmap('x', a, 4 * SLOT);
  // the cursor is at slot 7: one slot left at the end, so a 2-slot run wraps
  t.equal(p.map('x', 2 * SLOT), BASE);
  t.equal(p.map('x', SLOT), BASE + 2 * SLOT, 'continues after the last run');
});

t.test('unmap of a slot not in use throws', async (t) => {
  const p = new Swiotlb(BASE, 16 * SLOT);
  const a = p.map('nic', SLOT);
  t.throws(() => p.unmap('nic', BASE + 4 * SLOT, SLOT), { name: 'RangeError', message: /no bounce mapping starts at/ });
  p.unmap('nic', a, SLOT);
  t.throws(() => p.unmap('nic', a, SLOT), /no bounce mapping starts at/, 'double unmap');
  t.throws(() => p.unmap('nic', BASE + 16 * SLOT, SLOT), RangeError, 'beyond the pool');
  t.throws(() => p.unmap('nic', BASE - SLOT, SLOT), RangeError, 'below the pool');
  t.equal(p.usedSlots, 0);
});

t.test('unmap of a run only partly in use', async (t) => {
  const p = new Swiotlb(BASE, 16 * SLOT);
  const a = p.map('nic', 2 * SLOT);
  t.throws(() => p.unmap('nic', a, 3 * SLOT), RangeError);
  // a failed unmap changes nothing: the run is still in use and can be unmapped properly
  t.doesNotThrow(() => p.unmap('nic', a, 2 * SLOT));
  t.equal(p.usedSlots, 0);
  t.equal(p.byDevice.size, 0);
});

t.test('unmap charged to another device', async (t) => {
  const p = new Swiotlb(BASE, 16 * SLOT);
  const a = p.map('nic', SLOT);
  t.throws(() => p.unmap('dsp', a, SLOT), /belongs to 'nic', not 'dsp'/);
  t.same(Object.fromEntries(p.byDevice), { nic: 1 });
});

t.test('property: random map/unmap keeps runs disjoint and the counts right', async (t) => {
  const NSLOTS = 16;
  const op = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('map' as const), dev: fc.constantFrom('a', 'b', 'c'), len: fc.integer({ min: 1, max: 12 * SLOT }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('unmap' as const), i: fc.nat() }) },
  );
  let full = 0;
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 80 }), (ops) => {
      const p = new Swiotlb(BASE, NSLOTS * SLOT, 8 * SLOT);
      const live: { dev: string; addr: number; len: number }[] = [];
      for (const o of ops) {
        if (o.kind === 'map') {
          const free = NSLOTS - live.reduce((a, r) => a + Math.ceil(r.len / SLOT), 0);
          try {
            live.push({ dev: o.dev, addr: p.map(o.dev, o.len), len: o.len });
          } catch (e) {
            assert.ok(e instanceof BufferdError && e.code === 'ENOMEM');
            if (o.len <= 8 * SLOT) {
              full++;
              assert.deepEqual(e.details, { device: o.dev, slots: Math.ceil(o.len / SLOT), free, total: NSLOTS });
            }
          }
        } else if (live.length > 0) {
          const r = live.splice(o.i % live.length, 1)[0]!;
          p.unmap(r.dev, r.addr, r.len);
        }
        const spans = live.map((r) => [r.addr, r.addr + Math.ceil(r.len / SLOT) * SLOT] as const).sort((x, y) => x[0] - y[0]);
        for (const [i, [lo, hi]] of spans.entries()) {
          assert.ok(lo >= BASE && hi <= BASE + NSLOTS * SLOT && (lo - BASE) % SLOT === 0);
          if (i > 0) assert.ok(spans[i - 1]![1] <= lo, 'runs do not overlap');
        }
        const byDev = new Map<string, number>();
        for (const r of live) byDev.set(r.dev, (byDev.get(r.dev) ?? 0) + Math.ceil(r.len / SLOT));
        assert.deepEqual(new Map([...p.byDevice].sort()), new Map([...byDev].sort()));
        assert.equal(p.usedSlots, [...byDev.values()].reduce((a, n) => a + n, 0));
      }
    }),
    { seed: 4242, numRuns: 200 },
  );
  t.ok(full > 0, `full-pool refusals were exercised (${full})`);
});

t.test('a mapping never crosses a 128-slot segment (IO_TLB_SEGSIZE)', async (t) => {
  t.same([IO_TLB_SEGSIZE, MAX_MAPPING], [128, 256 * K]);
  const p = new Swiotlb(BASE, 2 * IO_TLB_SEGSIZE * SLOT);
  // 100 slots, then 60: 28 are left in the first segment, so the 60 go to the second one
  t.equal(p.map('a', 100 * SLOT), BASE);
  t.equal(p.freeRun(100), 28, 'free slots to the end of the segment');
  t.equal(p.map('a', 60 * SLOT), BASE + 128 * SLOT, 'not at slot 100: that run would cross slot 128');
  t.equal(p.map('a', 68 * SLOT), BASE + 188 * SLOT, 'next fit after the last run: the rest of the second segment');
  t.equal(p.map('a', 28 * SLOT), BASE + 100 * SLOT, 'wrapped: the rest of the first segment fits 28 slots exactly');
  t.throws(() => p.map('a', 1), /swiotlb buffer is full/, 'every slot used');
  // a whole segment is the largest mapping, and it must start on a segment
  const q = new Swiotlb(BASE, 3 * IO_TLB_SEGSIZE * SLOT);
  q.map('b', SLOT);
  t.equal(q.map('b', MAX_MAPPING), BASE + 128 * SLOT, '256 KiB takes the next whole segment');
  t.equal(q.freeRun(1), 127);
  t.equal(q.map('b', SLOT), BASE + 256 * SLOT, 'one slot of the third segment');
  // 254 slots free, but no segment is whole
  const e = t.throws(() => q.map('b', MAX_MAPPING)) as unknown as BufferdError;
  t.match(e, { code: 'ENOMEM', details: { device: 'b', slots: 128, free: 254, total: 384 } });
  t.match(e.message, /^swiotlb buffer is full \(sz: 262144 bytes\), total 384 \(slots\), used 130 \(slots\): device 'b' needs 128 contiguous slots \(256 KiB\) starting on a page inside one 128-slot segment; 254 of 384 free and no such run/);
  t.throws(() => q.map('b', 127 * SLOT), /no such run/, '127 free slots from slot 257, but it is 2 KiB into a page');
  t.equal(q.map('b', 126 * SLOT), BASE + 258 * SLOT, '126 slots fit from the next page');
  const r = new Swiotlb(BASE, 1024 * K);
  t.throws(() => r.map('c', 512 * K), /^swiotlb buffer is full \(sz: 524288 bytes\).*a mapping may not cross a 128-slot segment, so it is at most 256 KiB/);
  t.equal(r.full, 0, 'too large is not a full pool');
});

t.test('a mapping of a page or more starts on a page; a smaller one on any slot', async (t) => {
  const p = new Swiotlb(BASE, 64 * K);
  t.equal(p.map('x', 100), BASE, 'slot 0');
  t.equal(p.map('x', 4096), BASE + 2 * SLOT, 'not slot 1: 2 KiB into a page');
  t.equal(p.map('x', 2048), BASE + 4 * SLOT, 'next fit');
  t.equal(p.map('x', 4097), BASE + 6 * SLOT, 'page aligned, 3 slots');
  t.equal(p.map('x', 2047), BASE + 9 * SLOT, 'an odd slot is fine below a page');
});

/**
 * The kernel's slot search written independently of Swiotlb: a bitmap of
 * used slots and the rules of kernel/dma/swiotlb.c as stated, not its free
 * counts — a run of n slots may start at s when its slots are free and
 * s and s + n - 1 lie in the same IO_TLB_SEGSIZE segment; a mapping of a
 * page or more starts on a page; the search (swiotlb_search_pool_area)
 * starts at the index where the last one ended, steps one slot over an
 * unaligned slot and `stride` slots over an aligned one that does not fit,
 * wraps to 0 at the end, and gives up after checking nslabs slots.
 */
class KernelModel {
  readonly used: boolean[];
  index = 0;
  inUse = 0;
  constructor(readonly nslabs: number) {
    this.used = new Array<boolean>(nslabs).fill(false);
  }
  fits(s: number, n: number): boolean {
    if (s + n > this.nslabs || Math.floor(s / 128) !== Math.floor((s + n - 1) / 128)) return false;
    for (let i = s; i < s + n; i++) if (this.used[i]) return false;
    return true;
  }
  map(len: number, boundary?: number): number {
    if (len > 128 * 2048) return -1;
    const n = Math.ceil(len / 2048);
    const pageAligned = len >= 4096;
    const stride = pageAligned ? 2 : 1;
    if (n > this.nslabs - this.inUse) return -1;
    const wrap = (i: number) => (i >= this.nslabs ? 0 : i);
    let i = this.index;
    for (let checked = 0; checked < this.nslabs; ) {
      // the pool's base is page aligned: an odd slot is 2 KiB into a page
      if (pageAligned && i % 2 === 1) {
        i = wrap(i + 1);
        checked++;
        continue;
      }
      // the run's bytes may not cross a multiple of the boundary (pool base 0x1000_0000 is a multiple of every boundary used here)
      const crosses = boundary !== undefined && Math.floor((i * 2048) / boundary) !== Math.floor(((i + n) * 2048 - 1) / boundary);
      if (!crosses && this.fits(i, n)) {
        for (let k = i; k < i + n; k++) this.used[k] = true;
        this.inUse += n;
        this.index = wrap(i + n);
        return i;
      }
      i = wrap(i + stride);
      checked += stride;
    }
    return -1;
  }
  unmap(s: number, n: number): void {
    for (let k = s; k < s + n; k++) this.used[k] = false;
    this.inUse -= n;
  }
}

t.test('property: Swiotlb places every mapping where the kernel\'s search does', async (t) => {
  let refused = 0;
  let placed = 0;
  const op = fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('map' as const), len: fc.oneof(fc.integer({ min: 1, max: 4 * SLOT }), fc.integer({ min: 1, max: 140 * SLOT })) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('unmap' as const), i: fc.nat() }) },
  );
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 * IO_TLB_SEGSIZE + 37 }), fc.array(op, { minLength: 1, maxLength: 120 }), fc.constantFrom(undefined, 4096, 8192, 65536), (nslots, ops, boundary) => {
        const p = new Swiotlb(BASE, nslots * SLOT);
        const k = new KernelModel(nslots);
        const live: { addr: number; len: number }[] = [];
        for (const o of ops) {
          if (o.kind === 'map') {
            const want = k.map(o.len, boundary);
            let got = -1;
            try {
              got = (p.map('d', o.len, boundary) - BASE) / SLOT;
            } catch (e) {
              assert.ok(e instanceof BufferdError && e.code === 'ENOMEM' && /^swiotlb buffer is full \(sz: \d+ bytes\)/.test(e.message));
            }
            assert.equal(got, want, `map ${o.len} bytes`);
            if (got >= 0) {
              placed++;
              live.push({ addr: BASE + got * SLOT, len: o.len });
              assert.equal(Math.floor(got / 128), Math.floor((got + Math.ceil(o.len / SLOT) - 1) / 128), 'inside one segment');
              if (o.len >= 4096) assert.equal((got * SLOT) % 4096, 0, 'page aligned');
            } else refused++;
          } else if (live.length > 0) {
            const r = live.splice(o.i % live.length, 1)[0]!;
            p.unmap('d', r.addr, r.len);
            k.unmap((r.addr - BASE) / SLOT, Math.ceil(r.len / SLOT));
          }
          assert.equal(p.usedSlots, k.inUse);
          // the free counts are the kernel's io_tlb_slot.list: free slots to the end of the segment
          for (let s = 0; s < nslots; s++) {
            let run = 0;
            while (s + run < nslots && !k.used[s + run] && (run === 0 || (s + run) % 128 !== 0)) run++;
            assert.equal(p.freeRun(s), run, `list of slot ${s}`);
          }
        }
      }),
      { seed: 1616, numRuns: 150 },
    ),
  );
  t.ok(placed > 0 && refused > 0, `both outcomes exercised (${placed} placed, ${refused} refused)`);
});

t.test('a run does not cross the device\'s segment boundary (iommu_is_span_boundary)', async (t) => {
  const p = new Swiotlb(BASE, 64 * K);
  t.equal(p.map('x', SLOT), BASE);
  // 3 slots from slot 1 would cross the 8 KiB boundary at slot 4; page alignment puts it at slot 2, which crosses too
  t.equal(p.map('x', 3 * SLOT, 8 * K), BASE + 4 * SLOT, 'the next run inside one 8 KiB span');
  t.equal(p.map('x', SLOT, 8 * K), BASE + 7 * SLOT, 'one slot fits anywhere');
  const q = new Swiotlb(BASE, 6 * SLOT);
  q.map('x', SLOT);
  t.throws(() => q.map('x', 4 * SLOT, 8 * K), /not crossing a multiple of its 8 KiB segment boundary; 5 of 6 free and no such run/, 'slots 2-5 cross 8 KiB');
  t.equal(q.map('x', 4 * SLOT), BASE + 2 * SLOT, 'without a boundary it fits');
});
