/**
 * Active cache lines (daemon/dma/cachelines.ts), dma-debug's
 * active_cacheline tracking: two buffers sharing a line found at
 * registration; to-device registrations not tracked (as debug.c); the same
 * buffer or two coherent devices not an overlap; and, checked against a
 * brute-force scan of every byte's line, exactly the pairs that share one.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ActiveCachelines, type Mapped } from '../../daemon/dma/cachelines.js';

type Dir = Mapped['direction'];
interface Reg extends Mapped {
  name: string;
}
const buffers = new Map<string, Mapped['buffer']>();
function reg(name: string, buffer: string, segments: { addr: number; len: number }[], o: { direction?: Dir; coherent?: boolean; driver?: string } = {}): Reg {
  if (!buffers.has(buffer)) buffers.set(buffer, { phys: { segments } });
  return { name, buffer: buffers.get(buffer)!, driver: { constraints: { coherent: o.coherent ?? false } }, direction: o.direction ?? 'bidirectional', dying: false };
}

t.test('edge lines: only the unaligned edges of each segment', async (t) => {
  const c = new ActiveCachelines<Reg>(64);
  t.same(c.edgeLines([{ addr: 0x1000, len: 4096 }]), [], 'a line-aligned segment shares no line');
  t.same(c.edgeLines([{ addr: 0x1010, len: 16 }]), [0x1000 / 64], 'inside one line');
  t.same(c.edgeLines([{ addr: 0x1030, len: 0x20 }]), [0x1000 / 64, 0x1040 / 64], 'across two lines');
  t.same(c.edgeLines([{ addr: 0x1000, len: 0x50 }]), [0x1040 / 64], 'aligned start, unaligned end');
  t.same(c.edgeLines([{ addr: 0x1000, len: 0x10 }, { addr: 0x2000, len: 0x40 }]), [0x1000 / 64]);
});

t.test('two buffers in one line: found at the second registration, gone with the first', async (t) => {
  buffers.clear();
  const c = new ActiveCachelines<Reg>(64);
  const a = reg('a', 'A', [{ addr: 0x1000, len: 16 }], { direction: 'from-device' });
  const b = reg('b', 'B', [{ addr: 0x1010, len: 16 }]);
  t.same(c.overlaps(a), []);
  c.insert(a);
  t.same(c.overlaps(b), [[0x1000, a]], 'the line address and the registration it shares it with');
  c.insert(b);
  t.equal(c.size, 1);
  c.remove(a);
  t.same(c.overlaps(reg('c', 'C', [{ addr: 0x1020, len: 8 }])), [[0x1000, b]]);
  c.remove(b);
  t.equal(c.size, 0, 'nothing left');
});

t.test('what debug.c leaves out, and what bufferd leaves out', async (t) => {
  buffers.clear();
  const c = new ActiveCachelines<Reg>(64);
  const tx = reg('tx', 'A', [{ addr: 0x1000, len: 16 }], { direction: 'to-device' });
  c.insert(tx);
  t.equal(c.size, 0, 'to-device: not tracked (active_cacheline_insert returns 0)');
  t.same(c.overlaps(reg('b', 'B', [{ addr: 0x1010, len: 16 }])), [], 'so no overlap with it');
  t.same(c.overlaps(reg('tx2', 'B', [{ addr: 0x1010, len: 16 }], { direction: 'to-device' })), [], 'nor of a to-device one');
  const a1 = reg('a1', 'C', [{ addr: 0x2000, len: 16 }]);
  c.insert(a1);
  t.same(c.overlaps(reg('a2', 'C', [{ addr: 0x2000, len: 16 }], { driver: 'other' })), [], 'the same buffer with another device');
  const co = reg('co', 'D', [{ addr: 0x3000, len: 16 }], { coherent: true });
  c.insert(co);
  t.same(c.overlaps(reg('co2', 'E', [{ addr: 0x3010, len: 16 }], { coherent: true })), [], 'two coherent devices: nothing is lost');
  t.same(c.overlaps(reg('nc', 'F', [{ addr: 0x3020, len: 16 }])), [[0x3000, co]], 'a non-coherent one with a coherent one is');
  // debug.c keys a mapping by its first line (to_cacheline_number): this overlap is at the first buffer's last line
  const long = reg('long', 'G', [{ addr: 0x4030, len: 0x20 }]);
  c.insert(long);
  t.same(c.overlaps(reg('next', 'H', [{ addr: 0x4050, len: 0x10 }])), [[0x4040, long]], 'found at the last line too');
  const dying = reg('dying', 'I', [{ addr: 0x5000, len: 8 }]);
  c.insert(dying);
  (dying as { dying: boolean }).dying = true;
  t.same(c.overlaps(reg('j', 'J', [{ addr: 0x5008, len: 8 }])), [], 'a registration being torn down does not count');
});

t.test('property: overlaps are exactly the live pairs whose bytes share a line (brute force)', async (t) => {
  let found = 0;
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        fc.constantFrom(32, 64, 128),
        // disjoint buffers: cut points in [0, 2048), each piece one buffer's segment or a gap
        fc.uniqueArray(fc.integer({ min: 1, max: 2047 }), { minLength: 2, maxLength: 40 }),
        fc.array(fc.record({ gap: fc.boolean(), direction: fc.constantFrom<Dir>('bidirectional', 'to-device', 'from-device'), coherent: fc.boolean() }), { minLength: 40, maxLength: 40 }),
        (line, cuts, attrs) => {
          buffers.clear();
          const pts = [0, ...cuts.sort((x, y) => x - y), 2048];
          const c = new ActiveCachelines<Reg>(line);
          const live: Reg[] = [];
          for (let i = 0; i + 1 < pts.length; i++) {
            const a = attrs[i]!;
            if (a.gap) continue;
            const r = reg(`r${i}`, `B${i}`, [{ addr: pts[i]!, len: pts[i + 1]! - pts[i]! }], a);
            const lines = (x: Reg) => new Set(Array.from({ length: x.buffer.phys.segments[0]!.len }, (_, k) => Math.floor((x.buffer.phys.segments[0]!.addr + k) / line)));
            const mine = lines(r);
            const want = r.direction === 'to-device' ? [] : live.filter((o) => o.direction !== 'to-device' && !(o.driver.constraints.coherent && r.driver.constraints.coherent) && [...lines(o)].some((l) => mine.has(l)));
            const got = c.overlaps(r).map(([, o]) => o);
            assert.deepEqual(new Set(got.map((x) => x.name)), new Set(want.map((x) => x.name)));
            found += got.length;
            c.insert(r);
            live.push(r);
          }
        },
      ),
      { seed: 416, numRuns: 200 },
    ),
  );
  t.ok(found > 0, `overlaps were found (${found})`);
});
