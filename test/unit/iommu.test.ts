/**
 * Unit tests of the IOMMU model: the IOVA buddy allocator, the choice of
 * page size per chunk (as the kernel's iommu_pgsize()), translation and
 * teardown.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Iommu, type IommuMapping } from '../../daemon/dma/iommu.js';
import { BufferdError } from '../../protocol/errors.js';

const K4 = 4096;
const K64 = 65536;
const M = 2 ** 20;
const M2 = 2 * M;
const SIZES = [K4, K64, M2];
const gpu = (iovaSize = 2 ** 32, dmaMask?: number) => new Iommu('gpu', SIZES, iovaSize, dmaMask);
const entries = (m: IommuMapping) => Object.fromEntries([...m.entries].sort((a, b) => a[0] - b[0]).map(([s, n]) => [String(s), n]));
const largest = (m: IommuMapping) => Math.max(...m.entries.keys());
const covered = (m: IommuMapping) => [...m.entries].reduce((a, [s, n]) => a + s * n, 0);

/** The physical address of byte `off` of a buffer made of these segments. */
function physOf(segs: { addr: number; len: number }[], off: number): number {
  for (const s of segs) {
    if (off < s.len) return s.addr + off;
    off -= s.len;
  }
  throw new RangeError('beyond the buffer');
}

t.test('a 2 MiB-aligned 4 MiB buffer maps with two 2 MiB entries', async (t) => {
  const io = gpu();
  // 2 MiB aligned but not 4 MiB aligned
  const m = io.map([{ addr: 0x8020_0000, len: 4 * M }]);
  t.same(entries(m), { [M2]: 2 });
  t.equal(m.size, 4 * M);
  t.equal(m.base % M2, 0, 'IOVA aligned to the largest page used');
  t.ok(m.base > 0);
  t.equal(m.deviceAddress, m.base);
  t.same(m.runs, [{ iova: m.base, paddr: 0x8020_0000, len: 4 * M }]);
  t.same(io.entriesBySize(), { [M2]: 2 });
  t.equal(io.used, 4 * M);
  t.equal(io.mappings, 1);
});

t.test('a 64 KiB-aligned 1 MiB buffer maps with sixteen 64 KiB entries', async (t) => {
  const io = gpu();
  const m = io.map([{ addr: 0x8001_0000, len: M }]);
  t.same(entries(m), { [K64]: 16 });
  t.equal(m.base % K64, 0);
  // a 2 MiB-aligned 1 MiB buffer: 2 MiB pages do not fit, 64 KiB do
  t.same(entries(io.map([{ addr: 0x8040_0000, len: M }])), { [K64]: 16 });
});

t.test('a scatter-gather buffer of 4 KiB-aligned pieces uses 4 KiB entries', async (t) => {
  const io = gpu();
  const segs = [
    { addr: 0x8000_3000, len: 0x1000 },
    { addr: 0x8004_5000, len: 0x3000 },
    { addr: 0x8010_1000, len: 0x2000 },
  ];
  const m = io.map(segs);
  t.same(entries(m), { [K4]: 6 });
  t.equal(m.size, 6 * K4);
  t.same(
    m.runs.map((r) => [r.iova - m.base, r.paddr, r.len]),
    segs.map((s, i) => [[0, 0x1000, 0x4000][i], s.addr, s.len]),
    'runs are laid out back to back',
  );
  // an odd page inside a 64 KiB-aligned region still can't use 64 KiB pages
  t.same(entries(io.map([{ addr: 0x8003_0000 + K4, len: K64 }])), { [K4]: 16 });
});

t.test('a 2M + 64K + 4K layout maps with one entry of each', async (t) => {
  const io = gpu();
  const one = io.map([{ addr: 0x8040_0000, len: M2 + K64 + K4 }]);
  t.same(entries(one), { [K4]: 1, [K64]: 1, [M2]: 1 }, 'one contiguous piece');
  t.equal(one.base % M2, 0);
  const three = io.map([
    { addr: 0x8080_0000, len: M2 },
    { addr: 0x8101_0000, len: K64 },
    { addr: 0x8200_7000, len: K4 },
  ]);
  t.same(entries(three), { [K4]: 1, [K64]: 1, [M2]: 1 }, 'three pieces');
  t.equal(three.base % largest(three), 0);
  t.same(io.entriesBySize(), { [K4]: 2, [K64]: 2, [M2]: 2 });
  // 64K, 64K, then a 4K tail
  const mix = io.map([{ addr: 0x9001_0000, len: 2 * K64 + K4 }]);
  t.same(entries(mix), { [K4]: 1, [K64]: 2 });
  // a piece starting one page below a 64K boundary: its IOVA is only 4K-congruent
  // with the physical address, so no 64K entry fits anywhere (as in Linux)
  const odd = io.map([{ addr: 0x9000_f000, len: K4 + 2 * K64 }]);
  t.same(entries(odd), { [K4]: 33 });
  for (const m of [one, three, mix, odd]) t.equal(covered(m), m.size, 'entries cover the mapping exactly');
});

t.test('a sub-page buffer maps its page; the device address carries the offset', async (t) => {
  const io = gpu();
  const m = io.map([{ addr: 0x8000_1234, len: 100 }]);
  t.equal(m.size, K4);
  t.same(entries(m), { [K4]: 1 });
  t.equal(m.deviceAddress, m.base + 0x234);
  t.equal(m.runs[0]!.paddr, 0x8000_1000);
  t.equal(Iommu.translate(m, m.deviceAddress), 0x8000_1234);
  t.equal(Iommu.translate(m, m.deviceAddress + 99), 0x8000_1234 + 99);
  // straddling a page boundary takes two pages
  const s = io.map([{ addr: 0x8000_2f00, len: 0x200 }]);
  t.equal(s.size, 2 * K4);
  t.equal(Iommu.translate(s, s.deviceAddress + 0x1ff), 0x8000_30ff);
});

t.test('translate maps every byte back to its physical address', async (t) => {
  const io = gpu();
  const segs = [
    { addr: 0x8020_0000, len: M2 },
    { addr: 0x8003_0000, len: K64 },
    { addr: 0x8000_7000, len: 3 * K4 },
  ];
  const m = io.map(segs);
  const size = M2 + K64 + 3 * K4;
  const offs = [0, 1, K4 - 1, K4, M2 - 1, M2, M2 + 1, M2 + K64 - 1, M2 + K64, M2 + K64 + K4, size - 1];
  for (const off of offs) t.equal(Iommu.translate(m, m.deviceAddress + off), physOf(segs, off), `offset ${off}`);
  for (let off = 0; off < size; off += 4093) assert.equal(Iommu.translate(m, m.deviceAddress + off), physOf(segs, off));
  t.throws(() => Iommu.translate(m, m.base + size), RangeError);
  t.throws(() => Iommu.translate(m, m.base - 1), /not mapped/);
});

t.test('a buffer whose inner segment boundary is off the IOMMU page is refused, not shifted', async (t) => {
  const io = gpu();
  const before = io.used;
  const segs = [
    { addr: 0x1000, len: 0x1000 },
    { addr: 0x5800, len: 0x800 },
  ];
  const e = t.throws(() => io.map(segs)) as unknown as { code: string; message: string };
  t.equal(e.code, 'EINVAL');
  t.match(e.message, "segment 1 at 0x5800+2048 is not aligned to the IOMMU page (4 KiB)");
  t.equal(io.used, before, 'nothing was mapped');
  t.equal(io.mappings, 0);
});

t.test('unmap returns all IOVA and entries', async (t) => {
  const io = gpu();
  const maps = [
    io.map([{ addr: 0x8020_0000, len: 4 * M }]),
    io.map([{ addr: 0x8001_0000, len: M }]),
    io.map([{ addr: 0x8000_1234, len: 10 }]),
    io.map([
      { addr: 0x8000_3000, len: 0x1000 },
      { addr: 0x8004_5000, len: 0x3000 },
    ]),
  ];
  t.equal(io.used, maps.reduce((a, m) => a + m.size, 0));
  t.equal(io.mappings, 4);
  for (const m of maps.reverse()) io.unmap(m);
  t.equal(io.used, 0);
  t.equal(io.entries.size, 0);
  t.same(io.entriesBySize(), {});
  t.equal(io.mappings, 0);
  // the freed space is whole again: the largest possible mapping fits
  const big = io.map([{ addr: 0, len: 2 ** 31 }]);
  t.equal(big.base, 2 ** 31, 'the upper half (the lower half holds page 0)');
});

t.test('IOVA 0 is never handed out', async (t) => {
  const io = new Iommu('tiny', [K4], M);
  t.equal(io.total, M - K4);
  const bases = new Set<number>();
  for (let i = 0; i < 255; i++) bases.add(io.map([{ addr: i * K4, len: K4 }]).base);
  t.equal(bases.size, 255);
  t.notOk(bases.has(0));
  t.equal(Math.min(...bases), K4);
  t.equal(io.used, io.total);
  t.throws(() => io.map([{ addr: 0, len: 1 }]), { code: 'ENOMEM' });
});

t.test('exhaustion is ENOMEM naming the device and the sizes', async (t) => {
  const io = new Iommu('cam', [K4, K64], M);
  const e = t.throws(() => io.map([{ addr: 0x8000_0000, len: M }])) as unknown as BufferdError;
  t.ok(e instanceof BufferdError);
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, "IOVA space of device 'cam' exhausted");
  t.match(e.message, '1 MiB needed (aligned to 64 KiB)');
  t.match(e.message, '1020 KiB of 1020 KiB free');
  t.match(e.message, 'largest free block 512 KiB');
  t.same(e.details, { device: 'cam', needed: M, free: M - K4 });
  t.equal(io.used, 0, 'a failed map changes nothing');
  t.equal(io.mappings, 0);
  t.equal(io.entries.size, 0);
  // fragmentation: enough free in total but no aligned block
  const half = io.map([{ addr: 0, len: 512 * 1024 }]);
  t.equal(half.base, 512 * 1024);
  t.throws(() => io.map([{ addr: 0, len: 512 * 1024 }]), { code: 'ENOMEM', details: { needed: 512 * 1024, free: 508 * 1024 } });
});

t.test('a DMA mask smaller than the IOVA size limits the space', async (t) => {
  const io = gpu(2 ** 32, 20);
  t.equal(io.space, M);
  t.equal(io.total, M - K4);
  t.throws(() => io.map([{ addr: 0, len: M }]), { code: 'ENOMEM' });
  const m = io.map([{ addr: 0, len: M / 2 }]);
  t.ok(m.base + m.size <= M);
  t.equal(gpu(2 ** 32, 64).space, 2 ** 32, 'a 64-bit mask does not limit');
  t.equal(gpu(2 ** 30, 32).space, 2 ** 30, 'nor a mask wider than the space');
});

t.test('an IOVA space that is not a power of two', async (t) => {
  const io = new Iommu('odd', [K4], 3 * M);
  t.equal(io.total, 3 * M - K4);
  t.notOk(io.map([{ addr: 0, len: K4 }]).base === 0);
});

t.test('an IOMMU whose smallest page is larger than 4 KiB', async (t) => {
  const io = new Iommu('big', [K64], 16 * M);
  const a = io.map([{ addr: 0x10000, len: K4 }]);
  const b = io.map([{ addr: 0x20000, len: K4 }]);
  for (const m of [a, b]) {
    t.equal(covered(m), m.size, 'entries cover exactly the IOVA taken');
    t.equal(m.base % K64, 0, 'IOVA aligned to the entry size');
  }
});

t.test('property: random map/unmap never overlaps and keeps the counters', async (t) => {
  const SPACE = 16 * M;
  const seg = fc.record({
    unit: fc.constantFrom(K4, K64, M2),
    k: fc.nat(300),
    off: fc.constantFrom(0, 0, 0, 0x234),
    len: fc.oneof(fc.integer({ min: 1, max: 40 }).map((n) => n * K4), fc.constantFrom(K64, M2, M2 + K64 + K4, 3 * M2), fc.integer({ min: 1, max: 9000 })),
  });
  const op = fc.oneof(
    { weight: 3, arbitrary: fc.array(seg, { minLength: 1, maxLength: 4 }).map((segs) => ({ kind: 'map' as const, segs })) },
    { weight: 2, arbitrary: fc.nat().map((i) => ({ kind: 'unmap' as const, i })) },
  );
  let failures = 0;
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
      const io = new Iommu('p', SIZES, SPACE);
      const live: IommuMapping[] = [];
      for (const o of ops) {
        if (o.kind === 'map') {
          // pieces after the first are page-aligned, as daemon buffers are
          const segs = o.segs.map((s, j) => ({ addr: 0x8000_0000 + s.k * s.unit + (j === 0 ? s.off : 0), len: j === 0 || j === o.segs.length - 1 ? s.len : Math.ceil(s.len / K4) * K4 }));
          if (segs.length > 1) segs[0]!.len = Math.ceil((segs[0]!.addr + segs[0]!.len) / K4) * K4 - segs[0]!.addr;
          try {
            const m = io.map(segs);
            live.push(m);
            const size = segs.reduce((a, s) => a + s.len, 0);
            for (const off of [0, size - 1, Math.floor(size / 2)]) assert.equal(Iommu.translate(m, m.deviceAddress + off), physOf(segs, off));
            assert.equal(m.base % largest(m), 0);
          } catch (e) {
            if (!(e instanceof BufferdError) || e.code !== 'ENOMEM') throw e;
            failures++;
          }
        } else if (live.length > 0) {
          io.unmap(live.splice(o.i % live.length, 1)[0]!);
        }
        const ranges = live.map((m) => [m.base, m.base + m.size] as const).sort((a, b) => a[0] - b[0]);
        for (const [i, [lo, hi]] of ranges.entries()) {
          assert.ok(lo >= K4 && hi <= SPACE, 'inside the space and never at 0');
          if (i > 0) assert.ok(ranges[i - 1]![1] <= lo, 'no overlap');
        }
        const sum = new Map<number, number>();
        for (const m of live) {
          assert.equal(covered(m), m.size);
          for (const [s, n] of m.entries) sum.set(s, (sum.get(s) ?? 0) + n);
        }
        assert.deepEqual(new Map([...io.entries].sort()), new Map([...sum].sort()));
        assert.equal(io.used, live.reduce((a, m) => a + m.size, 0));
        assert.equal(io.mappings, live.length);
      }
      for (const m of live) io.unmap(m);
      assert.equal(io.used, 0);
      assert.equal(io.entries.size, 0);
    }),
    { seed: 77, numRuns: 200 },
  );
  t.pass(`invariants held (${failures} maps hit ENOMEM)`);
});
