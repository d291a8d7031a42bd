import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PageStore, PAGE } from '../../daemon/memory/pagestore.js';

const GiB = 2 ** 30;

t.test('unwritten memory reads as zeros and costs nothing', async (t) => {
  const s = new PageStore();
  t.ok(s.read(0, 3 * PAGE + 5).every((b) => b === 0));
  t.ok(s.read(64 * GiB - 10, 20).every((b) => b === 0), 'anywhere in a 64 GiB range');
  t.equal(s.residentPages, 0);
  s.write(64 * GiB - 1, Buffer.from([7]));
  t.equal(s.residentPages, 1, 'one page at the top of 64 GiB');
  t.equal(s.residentBytes, PAGE);
  t.same([...s.read(64 * GiB - 2, 3)], [0, 7, 0]);
  const dst = new Uint8Array(6).fill(9);
  s.readInto(64 * GiB - 2, 3, dst, 2);
  t.same([...dst], [9, 9, 0, 7, 0, 9], 'readInto writes only [dstOff, dstOff + len)');
  t.equal(s.read(5, 0).length, 0);
});

t.test('writes spanning page boundaries', async (t) => {
  const s = new PageStore();
  const data = Buffer.alloc(2 * PAGE + 10);
  for (let i = 0; i < data.length; i++) data[i] = (i % 251) + 1;
  s.write(PAGE - 5, data);
  t.equal(s.residentPages, 4, 'pages 0..3 touched');
  t.same(s.read(PAGE - 5, data.length), data);
  t.same([...s.read(PAGE - 7, 2)], [0, 0], 'bytes before untouched');
  t.same([...s.read(PAGE - 5 + data.length, 3)], [0, 0, 0], 'bytes after untouched');
  // srcOff and len
  s.write(10 * PAGE - 1, Buffer.from([0, 1, 2, 3, 4]), 1, 2);
  t.same([...s.read(10 * PAGE - 2, 4)], [0, 1, 2, 0]);
  t.equal(s.residentPages, 6);
  s.write(20 * PAGE, Buffer.from([5, 6, 7]), 1);
  t.same([...s.read(20 * PAGE, 3)], [6, 7, 0], 'len defaults to the rest of data');
});

t.test('zero-data writes allocate no page', async (t) => {
  const s = new PageStore();
  s.write(0, Buffer.alloc(10 * PAGE));
  s.write(100 * PAGE + 3, new Uint8Array(PAGE));
  t.equal(s.residentPages, 0);
  const mixed = Buffer.alloc(3 * PAGE);
  mixed[PAGE + 17] = 1; // only the middle page has data
  s.write(5 * PAGE, mixed);
  t.equal(s.residentPages, 1, 'only the page with non-zero data');
  t.equal(s.read(6 * PAGE + 17, 1)[0], 1);
  s.write(6 * PAGE, Buffer.alloc(PAGE));
  t.ok(s.read(6 * PAGE, PAGE).every((b) => b === 0), 'zeros over a resident page take effect');
  s.fill(200 * PAGE, 5 * PAGE, 0);
  s.fill(300 * PAGE, 5 * PAGE, 256);
  t.equal(s.residentPages, 1, 'fill with 0 (or 256) allocates nothing');
});

t.test('zeroPages drops pages', async (t) => {
  const s = new PageStore();
  s.fill(0, 10 * PAGE, 0xaa);
  t.equal(s.residentPages, 10);
  s.zeroPages(2, 3);
  t.equal(s.residentPages, 7);
  t.ok(s.read(2 * PAGE, 3 * PAGE).every((b) => b === 0));
  t.ok(s.read(PAGE, PAGE).every((b) => b === 0xaa) && s.read(5 * PAGE, PAGE).every((b) => b === 0xaa));
  s.zeroPages(0, 2 ** 30); // more pages than resident: the scan path
  t.equal(s.residentPages, 0);
  s.zeroPages(0, 5); // empty store
  t.equal(s.residentPages, 0);
  s.fill(64 * GiB - PAGE, PAGE, 1);
  s.fill(0, PAGE, 1);
  s.zeroPages((64 * GiB) / PAGE - 1, 1);
  t.equal(s.residentPages, 1, 'only the named page');
});

t.test('zeroBytes clears partial pages at both ends and drops full ones', async (t) => {
  const s = new PageStore();
  s.fill(0, 6 * PAGE, 0x55);
  s.zeroBytes(PAGE + 100, 3 * PAGE);
  t.equal(s.residentPages, 4, 'pages 2 and 3 dropped, 1 and 4 partly cleared');
  t.same([...s.read(PAGE + 98, 4)], [0x55, 0x55, 0, 0]);
  t.same([...s.read(4 * PAGE + 98, 4)], [0, 0, 0x55, 0x55]);
  t.ok(s.read(PAGE + 100, 3 * PAGE).every((b) => b === 0));
  // within one page
  s.zeroBytes(10, 20);
  t.same([...s.read(9, 22)], [0x55, ...new Array(20).fill(0), 0x55]);
  // across one boundary without a full page
  s.zeroBytes(5 * PAGE - 3, 6);
  t.same([...s.read(5 * PAGE - 4, 8)], [0x55, 0, 0, 0, 0, 0, 0, 0x55]);
  // clearing the rest of a page drops it
  s.zeroBytes(PAGE, 100);
  t.equal(s.residentPages, 3, 'page 1 became all zero and was dropped');
  s.zeroBytes(0, 6 * PAGE);
  t.equal(s.residentPages, 0);
  s.zeroBytes(7, 0);
  t.equal(s.residentPages, 0);
  // aligned exactly to pages
  s.fill(0, 4 * PAGE, 3);
  s.zeroBytes(PAGE, 2 * PAGE);
  t.equal(s.residentPages, 2);
  t.same([...s.read(PAGE - 1, 2)], [3, 0]);
  t.same([...s.read(3 * PAGE - 1, 2)], [0, 3]);
});

t.test('fill with zero and non-zero values', async (t) => {
  const s = new PageStore();
  s.fill(PAGE - 2, PAGE + 4, 0x1ff);
  t.equal(s.residentPages, 3);
  t.same([...s.read(PAGE - 3, 4)], [0, 0xff, 0xff, 0xff], 'value taken modulo 256');
  t.same([...s.read(2 * PAGE, 4)], [0xff, 0xff, 0, 0]);
  s.fill(PAGE - 2, 2, 0);
  t.equal(s.residentPages, 2, 'zero fill of the only data on page 0 drops it');
  s.fill(0, 0, 9);
  t.equal(s.residentPages, 2, 'empty fill');
  s.fill(3, 5, 7);
  t.same([...s.read(2, 7)], [0, 7, 7, 7, 7, 7, 0]);
  s.fill(0, 10 * PAGE + 3, 0);
  t.equal(s.residentPages, 0);
});

t.test('copy handles overlapping ranges in both directions', async (t) => {
  const s = new PageStore();
  const data = Buffer.from(Array.from({ length: PAGE + 50 }, (_, i) => (i % 200) + 1));
  s.write(PAGE - 25, data);
  s.copy(PAGE - 15, PAGE - 25, data.length); // forward overlap
  t.same(s.read(PAGE - 15, data.length), data);
  t.same(s.read(PAGE - 25, 10), data.subarray(0, 10), 'head untouched');
  s.copy(PAGE - 25, PAGE - 15, data.length); // backward overlap
  t.same(s.read(PAGE - 25, data.length), data);
  // copying zeros from an untouched area clears and allocates nothing new
  const before = s.residentPages;
  s.copy(100 * PAGE, 50 * PAGE, PAGE);
  t.equal(s.residentPages, before);
  s.copy(PAGE, 50 * PAGE, 10);
  t.ok(s.read(PAGE, 10).every((b) => b === 0));
  // copy to a far address
  s.copy(64 * GiB - 30, PAGE - 25, 60);
  t.same(s.read(64 * GiB - 30, 60), s.read(PAGE - 25, 60));
});

type Op =
  | { k: 'write'; off: number; bytes: number[] }
  | { k: 'fill'; off: number; len: number; v: number }
  | { k: 'zero'; off: number; len: number }
  | { k: 'zeroPages'; page: number; n: number }
  | { k: 'copy'; dst: number; src: number; len: number }
  | { k: 'read'; off: number; len: number };

const NPAGES = 5;
const W = NPAGES * PAGE;
const offArb = fc.oneof(
  fc.integer({ min: 0, max: W }),
  fc.integer({ min: 0, max: NPAGES }).chain((p) => fc.integer({ min: -3, max: 3 }).map((d) => Math.min(W, Math.max(0, p * PAGE + d)))),
);
const byteArb = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 255 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('write' as const), off: offArb, bytes: fc.array(byteArb, { maxLength: 40 }) }),
  fc.record({ k: fc.constant('fill' as const), off: offArb, len: fc.nat({ max: 2 * PAGE + 8 }), v: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 511 })) }),
  fc.record({ k: fc.constant('zero' as const), off: offArb, len: fc.nat({ max: 3 * PAGE }) }),
  fc.record({ k: fc.constant('zeroPages' as const), page: fc.nat({ max: NPAGES }), n: fc.nat({ max: 3 }) }),
  fc.record({ k: fc.constant('copy' as const), dst: offArb, src: offArb, len: fc.nat({ max: 2 * PAGE }) }),
  fc.record({ k: fc.constant('read' as const), off: offArb, len: fc.nat({ max: 2 * PAGE }) }),
);

t.test('property: PageStore behaves like a flat byte array', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(0, 7 * PAGE, 64 * GiB - W - 3 * PAGE), fc.array(opArb, { maxLength: 30 }), (base, ops) => {
      const s = new PageStore();
      const model = new Uint8Array(W);
      const clampLen = (off: number, len: number): number => Math.max(0, Math.min(len, W - off));
      for (const op of ops) {
        if (op.k === 'write') {
          const n = clampLen(op.off, op.bytes.length);
          s.write(base + op.off, Uint8Array.from(op.bytes), 0, n);
          model.set(op.bytes.slice(0, n), op.off);
        } else if (op.k === 'fill') {
          const n = clampLen(op.off, op.len);
          s.fill(base + op.off, n, op.v);
          model.fill(op.v & 0xff, op.off, op.off + n);
        } else if (op.k === 'zero') {
          const n = clampLen(op.off, op.len);
          s.zeroBytes(base + op.off, n);
          model.fill(0, op.off, op.off + n);
        } else if (op.k === 'zeroPages') {
          const n = Math.min(op.n, NPAGES - op.page);
          s.zeroPages(base / PAGE + op.page, n);
          model.fill(0, op.page * PAGE, (op.page + n) * PAGE);
        } else if (op.k === 'copy') {
          const n = Math.min(clampLen(op.dst, op.len), clampLen(op.src, op.len));
          s.copy(base + op.dst, base + op.src, n);
          model.copyWithin(op.dst, op.src, op.src + n);
        } else {
          const n = clampLen(op.off, op.len);
          assert.deepEqual(new Uint8Array(s.read(base + op.off, n)), model.subarray(op.off, op.off + n));
        }
        let nonZeroPages = 0;
        for (let p = 0; p < NPAGES; p++) if (model.subarray(p * PAGE, (p + 1) * PAGE).some((b) => b !== 0)) nonZeroPages++;
        assert.ok(s.residentPages >= nonZeroPages, 'every page with data is resident');
        assert.ok(s.residentPages <= NPAGES, 'nothing outside the window is resident');
      }
      assert.deepEqual(new Uint8Array(s.read(base, W)), model, 'whole window matches');
      assert.ok(s.read(base - 3, 3).every((b) => b === 0) && s.read(base + W, 3).every((b) => b === 0), 'nothing leaks outside');
      s.zeroBytes(base, W);
      assert.equal(s.residentPages, 0, 'zeroing the window frees everything');
    }),
    { seed: 42, numRuns: 300 },
  );
  t.pass('300 random op sequences');
});
