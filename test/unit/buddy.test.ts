import t from 'tap';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BuddyAllocator, type Block } from '../../daemon/memory/buddy.js';
import { MinHeap } from '../../daemon/lib/minheap.js';

const FC = { seed: 42, numRuns: 200 };

/** The buddy of a block, computed arithmetically (safe beyond 32 bits). */
function buddyOf(pfn: number, order: number): number {
  const size = 2 ** order;
  return Math.floor(pfn / size) % 2 === 0 ? pfn + size : pfn - size;
}

interface Live {
  pfn: number;
  npages: number;
  /** How to give it back: one block, a range, or a list of blocks. */
  blocks: Block[] | null;
}

/**
 * Every invariant of a buddy allocator given what is allocated: free blocks
 * and live allocations tile the zone exactly, every free block is naturally
 * aligned and inside the zone, counters agree, no two free buddies are left
 * unmerged, and the lists agree with isFree.
 */
function checkInvariants(b: BuddyAllocator, live: Live[]): void {
  const free = b.freeBlocks();
  const pieces: { pfn: number; n: number; free: boolean }[] = [];
  let freeSum = 0;
  for (const f of free) {
    assert.ok(f.order >= 0 && f.order <= b.maxOrder, `order ${f.order} in range`);
    assert.equal(f.pfn % 2 ** f.order, 0, `free block ${f.pfn}/${f.order} naturally aligned`);
    freeSum += 2 ** f.order;
    pieces.push({ pfn: f.pfn, n: 2 ** f.order, free: true });
  }
  let liveSum = 0;
  for (const l of live) {
    liveSum += l.npages;
    pieces.push({ pfn: l.pfn, n: l.npages, free: false });
  }
  pieces.sort((x, y) => x.pfn - y.pfn);
  let at = b.startPfn;
  for (const p of pieces) {
    assert.equal(p.pfn, at, `pieces tile the zone: expected one at ${at}, got ${p.pfn} (free=${p.free})`);
    at += p.n;
  }
  assert.equal(at, b.endPfn, 'pieces end at the zone end');
  assert.equal(freeSum, b.freePages, 'sum of free blocks == freePages');
  assert.equal(b.freePages, b.totalPages - liveSum, 'freePages == zone pages - live pages');
  const byOrder = b.freeByOrder();
  assert.equal(byOrder.length, b.maxOrder + 1);
  assert.equal(byOrder.reduce((a, n, o) => a + n * 2 ** o, 0), b.freePages, 'freeByOrder adds up');
  const largest = free.reduce((m, f) => Math.max(m, f.order), -1);
  assert.equal(b.largestFreeOrder(), largest);
  const keys = new Set(free.map((f) => `${f.pfn}/${f.order}`));
  for (const f of free) {
    assert.ok(b.isFree(f.pfn, f.order), `isFree(${f.pfn}, ${f.order})`);
    if (f.order < b.maxOrder) {
      const bd = buddyOf(f.pfn, f.order);
      assert.ok(!keys.has(`${bd}/${f.order}`), `free buddies ${f.pfn} and ${bd} at order ${f.order} were not merged`);
    }
  }
  for (const l of live) assert.ok(!b.isFree(l.pfn), `live page ${l.pfn} is not free`);
}

function fresh(start: number, n: number): Block[] {
  return new BuddyAllocator(start, n).freeBlocks();
}

t.test('split and merge like Linux', async (t) => {
  const b = new BuddyAllocator(0, 1024);
  t.equal(b.maxOrder, 10);
  t.same(b.freeBlocks(), [{ pfn: 0, order: 10 }]);
  t.same(b.freeByOrder(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  t.equal(b.alloc(0), 0, 'lowest address first');
  t.same(b.freeByOrder(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 'one free block per order below 10');
  t.same(b.freeBlocks()[0], { pfn: 1, order: 0 });
  t.same(b.freeBlocks()[9], { pfn: 512, order: 9 });
  t.equal(b.freePages, 1023);
  t.equal(b.largestFreeOrder(), 9);
  t.equal(b.alloc(0), 1, 'the split buddy is used next');
  t.equal(b.alloc(1), 2);
  b.free(0, 0);
  b.free(2, 1);
  t.same(b.freeByOrder(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 'no merge while the buddy is allocated');
  b.free(1, 0);
  t.same(b.freeBlocks(), [{ pfn: 0, order: 10 }], 'merged back to one block');
  t.equal(b.freePages, 1024);
});

t.test('natural alignment for every order', async (t) => {
  for (let o = 0; o <= 12; o++) {
    const b = new BuddyAllocator(5, 20000);
    b.alloc(0); // disturb the lowest blocks
    const p = b.alloc(o);
    t.ok(p >= 5 && p + 2 ** o <= 20005 && p % 2 ** o === 0, `order ${o} at ${p} aligned and inside`);
  }
  const b = new BuddyAllocator(0, 64);
  t.equal(b.alloc(7), -1, 'order above maxOrder fails');
  t.equal(b.alloc(-1), -1, 'negative order fails');
  t.equal(b.alloc(6), 0);
  t.equal(b.alloc(0), -1, 'empty zone fails');
  t.equal(b.largestFreeOrder(), -1);
});

t.test('unaligned zone starts decompose into maximal aligned blocks', async (t) => {
  const b = new BuddyAllocator(3, 1000);
  t.equal(b.freePages, 1000);
  t.same(b.freeBlocks(), [
    { pfn: 3, order: 0 },
    { pfn: 4, order: 2 },
    { pfn: 8, order: 3 },
    { pfn: 16, order: 4 },
    { pfn: 32, order: 5 },
    { pfn: 64, order: 6 },
    { pfn: 128, order: 7 },
    { pfn: 256, order: 8 },
    { pfn: 512, order: 8 },
    { pfn: 768, order: 7 },
    { pfn: 896, order: 6 },
    { pfn: 960, order: 5 },
    { pfn: 992, order: 3 },
    { pfn: 1000, order: 1 },
    { pfn: 1002, order: 0 },
  ]);
  t.equal(b.largestFreeOrder(), 8, '256 and 512 are not buddies');
  t.equal(b.alloc(9), -1, 'no order-9 block exists in this zone');
  t.equal(b.alloc(0), 3);
  t.equal(b.alloc(0), 1002, 'smallest order that fits, then lowest address');
  t.equal(b.alloc(8), 256);
  b.free(256, 8);
  b.free(3, 0);
  b.free(1002, 0);
  t.same(b.freeBlocks(), fresh(3, 1000), 'everything back, no merge outside the zone');
  t.throws(() => b.free(2, 0), RangeError, 'below the zone');
  t.throws(() => b.free(1003, 0), RangeError, 'above the zone');
  t.throws(() => b.free(1000, 2), RangeError, 'block crosses the zone end');
  t.throws(() => b.free(6, 2), RangeError, 'misaligned');
  const capped = new BuddyAllocator(0, 1024, 3);
  capped.alloc(3);
  t.throws(() => capped.free(0, 4), RangeError, 'order above maxOrder');
  t.throws(() => capped.free(0, -1), RangeError, 'negative order');
  t.throws(() => capped.free(0, 1.5), RangeError, 'fractional order');
  t.equal(capped.freePages, 1016, 'a rejected free changes nothing');
  capped.free(0, 3);
  t.same(capped.freeBlocks(), new BuddyAllocator(0, 1024, 3).freeBlocks(), 'restored');
  t.throws(() => new BuddyAllocator(0, 0), RangeError);
  t.throws(() => new BuddyAllocator(-1, 4), RangeError);
  t.throws(() => new BuddyAllocator(0.5, 4), RangeError);
});

t.test('allocExact returns exactly npages and gives the tail back', async (t) => {
  const b = new BuddyAllocator(0, 1024);
  t.equal(b.allocExact(5), 0);
  t.equal(b.freePages, 1019);
  t.ok(b.isFree(5) && b.isFree(6, 1) && !b.isFree(4), 'tail [5, 8) is free, page 4 is not');
  t.equal(b.allocExact(2), 6, 'the returned tail is used first');
  t.equal(b.allocExact(1), 5);
  t.equal(b.allocExact(1, 64), 64, 'alignment honoured');
  t.equal(b.allocExact(100, 16), 128);
  t.equal(b.freePages, 1024 - 5 - 2 - 1 - 1 - 100);
  t.equal(b.allocExact(2048), -1, 'too large');
  t.equal(b.allocExact(1024), -1, 'not free as one block');
  b.freeRange(0, 5);
  b.freeRange(6, 2);
  b.freeRange(5, 1);
  b.freeRange(64, 1);
  b.freeRange(128, 100);
  t.same(b.freeBlocks(), [{ pfn: 0, order: 10 }]);
  t.equal(b.allocExact(1024), 0);
  t.equal(b.freePages, 0);
});

t.test('allocScatter is largest-first and all-or-nothing', async (t) => {
  const b = new BuddyAllocator(0, 1024);
  t.same(b.allocScatter(7), [
    { pfn: 0, order: 2 },
    { pfn: 4, order: 1 },
    { pfn: 6, order: 0 },
  ]);
  const segs = b.allocScatter(100, 4)!;
  t.same(segs.map((s) => s.order), [4, 4, 4, 4, 4, 4, 2], 'capped at maxSegOrder, largest first');
  t.equal(b.freePages, 1024 - 107);
  const before = b.freeBlocks();
  t.equal(b.allocScatter(918), null, 'one more than is free');
  t.same(b.freeBlocks(), before, 'nothing changed');
  t.equal(b.freePages, 917);
  const rest = b.allocScatter(917)!;
  t.equal(rest.reduce((a, s) => a + 2 ** s.order, 0), 917);
  t.equal(b.freePages, 0);
  t.same(b.allocScatter(0), [], 'zero pages is an empty list');
  // fragmented: only order-0 pages free, scatter still succeeds
  const c = new BuddyAllocator(0, 16);
  const all = Array.from({ length: 16 }, () => c.alloc(0));
  t.same(all, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  for (const p of all) if (p % 2 === 1) c.free(p, 0);
  t.same(c.freeByOrder(), [8, 0, 0, 0, 0]);
  const odd = c.allocScatter(8)!;
  t.same(odd, [1, 3, 5, 7, 9, 11, 13, 15].map((pfn) => ({ pfn, order: 0 })), 'only order-0 pages free: still succeeds');
  for (const p of all) c.free(p, 0);
  t.same(c.freeBlocks(), [{ pfn: 0, order: 4 }]);
});

t.test('freeByOrder, largestFreeOrder and isFree', async (t) => {
  const b = new BuddyAllocator(0, 100);
  t.same(b.freeByOrder(), [0, 0, 1, 0, 0, 1, 1], '100 = 64 + 32 + 4');
  t.equal(b.largestFreeOrder(), 6);
  t.ok(b.isFree(0, 6) && b.isFree(63) && b.isFree(96, 2) && b.isFree(99));
  t.notOk(b.isFree(100), 'past the end');
  t.notOk(b.isFree(64, 6), 'larger than the free block there');
  t.equal(b.alloc(6), 0);
  t.notOk(b.isFree(0) || b.isFree(63));
  t.equal(b.largestFreeOrder(), 5);
  t.equal(b.alloc(6), -1);
  t.same(new BuddyAllocator(0, 1000, 3).freeByOrder(), [0, 0, 0, 125], 'explicit maxOrder caps blocks');
});

t.test('large pfns and large orders merge correctly (beyond 32-bit bitwise ops)', async (t) => {
  for (const start of [2 ** 31, 2 ** 32, 2 ** 40 - 4096, 2 ** 40 + 3]) {
    const b = new BuddyAllocator(start, 1024);
    const init = b.freeBlocks();
    const a = b.alloc(0);
    const e = b.allocExact(37, 8);
    t.ok(a >= start && e >= start && e % 8 === 0);
    b.free(a, 0);
    b.freeRange(e, 37);
    t.same(b.freeBlocks(), init, `zone at pfn ${start} merges back`);
  }
  // a 16 TiB zone: orders 31 and 32
  const big = new BuddyAllocator(0, 2 ** 32);
  t.equal(big.alloc(0), 0);
  t.equal(big.freeByOrder().length, 33);
  big.free(0, 0);
  t.same(big.freeBlocks(), [{ pfn: 0, order: 32 }], 'merged through order 31');
});

t.test('MinHeap pops in ascending order', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 2 ** 40 }), { maxLength: 200 }), fc.array(fc.nat(), { maxLength: 50 }), (xs, ys) => {
      const h = new MinHeap();
      for (const x of xs) h.push(x);
      const half: number[] = [];
      for (let i = 0; i < xs.length >> 1; i++) half.push(h.pop()!);
      h.reset([...h['a'], ...ys]);
      const rest: number[] = [];
      for (let v = h.pop(); v !== undefined; v = h.pop()) rest.push(v);
      const sorted = [...xs].sort((a, b) => a - b);
      assert.deepEqual(half, sorted.slice(0, xs.length >> 1));
      assert.deepEqual(rest, [...sorted.slice(xs.length >> 1), ...ys].sort((a, b) => a - b));
      assert.equal(h.size, 0);
      assert.equal(h.peek(), undefined);
    }),
    FC,
  );
  t.pass('heap property holds');
});

type Op =
  | { k: 'alloc'; order: number }
  | { k: 'exact'; n: number; alignOrder: number }
  | { k: 'scatter'; n: number; maxSeg: number }
  | { k: 'free'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('alloc' as const), order: fc.integer({ min: 0, max: 11 }) }),
  fc.record({ k: fc.constant('exact' as const), n: fc.integer({ min: 1, max: 600 }), alignOrder: fc.integer({ min: 0, max: 8 }) }),
  fc.record({ k: fc.constant('scatter' as const), n: fc.integer({ min: 0, max: 900 }), maxSeg: fc.integer({ min: 0, max: 12 }) }),
  fc.record({ k: fc.constant('free' as const), pick: fc.nat() }),
  fc.record({ k: fc.constant('free' as const), pick: fc.nat() }),
);

function releaseLive(b: BuddyAllocator, l: Live): void {
  if (l.blocks === null) b.freeRange(l.pfn, l.npages);
  else for (const s of l.blocks) b.free(s.pfn, s.order);
}

function runOps(start: number, npages: number, ops: Op[]): void {
  const b = new BuddyAllocator(start, npages);
  const initial = b.freeBlocks();
  const live: Live[] = [];
  checkInvariants(b, live);
  for (const op of ops) {
    const freeBefore = b.freePages;
    if (op.k === 'alloc') {
      const blocks = b.freeBlocks();
      const fits = blocks.filter((f) => f.order >= op.order);
      const best = fits.length === 0 ? null : Math.min(...fits.map((f) => f.order));
      const expect = best === null ? -1 : Math.min(...fits.filter((f) => f.order === best).map((f) => f.pfn));
      const p = b.alloc(op.order);
      assert.equal(p, expect, `alloc(${op.order}) takes the lowest block of the smallest order that fits`);
      if (p >= 0) {
        assert.equal(p % 2 ** op.order, 0);
        live.push({ pfn: p, npages: 2 ** op.order, blocks: [{ pfn: p, order: op.order }] });
      }
    } else if (op.k === 'exact') {
      const align = 2 ** op.alignOrder;
      const p = b.allocExact(op.n, align);
      if (p >= 0) {
        assert.equal(p % align, 0, 'allocExact alignment');
        live.push({ pfn: p, npages: op.n, blocks: null });
      } else assert.equal(b.freePages, freeBefore, 'failed allocExact changes nothing');
    } else if (op.k === 'scatter') {
      const before = b.freeBlocks();
      const segs = b.allocScatter(op.n, op.maxSeg);
      if (op.n > freeBefore) {
        assert.equal(segs, null, 'not enough free: null');
        assert.deepEqual(b.freeBlocks(), before, 'and nothing changed');
      } else {
        assert.ok(segs !== null, 'enough free: succeeds');
        assert.equal(segs.reduce((a, s) => a + 2 ** s.order, 0), op.n, 'exactly n pages');
        for (let i = 0; i < segs.length; i++) {
          const s: Block = segs[i]!;
          assert.equal(s.pfn % 2 ** s.order, 0, 'segment aligned');
          assert.ok(s.order <= op.maxSeg, 'segment within maxSegOrder');
          if (i > 0) assert.ok(s.order <= segs[i - 1]!.order, 'largest first');
          live.push({ pfn: s.pfn, npages: 2 ** s.order, blocks: [s] });
        }
      }
    } else if (live.length > 0) {
      const [l] = live.splice(op.pick % live.length, 1);
      releaseLive(b, l!);
    }
    for (const l of live) assert.ok(l.pfn >= b.startPfn && l.pfn + l.npages <= b.endPfn, 'inside the zone');
    checkInvariants(b, live);
  }
  while (live.length > 0) releaseLive(b, live.pop()!);
  checkInvariants(b, live);
  assert.equal(b.freePages, npages);
  assert.deepEqual(b.freeBlocks(), initial, 'freeing everything restores the fully merged initial state');
  assert.deepEqual(b.freeBlocks(), fresh(start, npages));
}

t.test('property: random alloc/allocExact/allocScatter/free keeps every invariant', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5000 }),
      fc.integer({ min: 1, max: 3000 }),
      fc.array(opArb, { maxLength: 60 }),
      (start, npages, ops) => runOps(start, npages, ops),
    ),
    FC,
  );
  t.pass('200 random zones and op sequences');
});

t.test('property: the same above 2^32 pfns (52-bit physical addresses)', async (t) => {
  fc.assert(
    fc.property(
      fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 40 - 2048),
      fc.integer({ min: 0, max: 1000 }),
      fc.integer({ min: 1, max: 3000 }),
      fc.array(opArb, { maxLength: 40 }),
      (base, off, npages, ops) => runOps(base + off, npages, ops),
    ),
    { seed: 42, numRuns: 60 },
  );
  t.pass('60 random high zones');
});
