/**
 * Unit tests of the bounce pool: 2 KiB slots, runs of slots handed out next
 * fit, per-device accounting, and the ENOMEM cases (full, fragmented, too
 * large a mapping).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Swiotlb, SLOT } from '../../daemon/dma/swiotlb.js';
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
  const b = p.map('nic', SLOT + 1);
  t.equal(b, BASE + SLOT, 'next fit, right after');
  t.equal(p.usedSlots, 3);
  const c = p.map('nic', 4 * SLOT);
  t.equal(c, BASE + 3 * SLOT);
  t.equal(p.usedSlots, 7);
  t.equal(p.maps, 3);
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
  t.match(e.message, /^bounce pool full/);
  t.match(e.message, "device 'nic' needs 1 slots (2 KiB)");
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
  t.match(e.message, 'exceeds the largest bounce mapping (64 KiB)');
  t.same(e.details, { device: 'cam', len: 64 * K + 1, maxMapping: 64 * K });
  t.equal(p.full, 0, 'not counted as a full pool');
  t.equal(p.map('cam', 64 * K), BASE, 'exactly the limit is fine');
  t.equal(p.usedSlots, 32);
  // the default limit: 256 KiB
  t.throws(() => new Swiotlb(BASE, 1024 * K).map('x', 256 * K + 1), /largest bounce mapping \(256 KiB\)/);
});

t.test('fragmentation: enough free slots but no run long enough', async (t) => {
  const p = new Swiotlb(BASE, 16 * SLOT);
  const runs = Array.from({ length: 8 }, () => p.map('nic', 2 * SLOT));
  t.equal(p.usedSlots, 16);
  for (let i = 0; i < 8; i += 2) p.unmap('nic', runs[i]!, 2 * SLOT);
  t.equal(p.usedSlots, 8);
  const e = t.throws(() => p.map('nic', 3 * SLOT)) as unknown as BufferdError;
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, 'bounce pool full');
  t.match(e.message, '8 of 16 free and none contiguous enough');
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
