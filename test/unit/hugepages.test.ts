import t from 'tap';
import fc from 'fast-check';
import { HugepagePool, type ReleaseHook } from '../../daemon/memory/hugepages.js';
import { CacheAttrTracker, conversionCostNs } from '../../daemon/memory/cacheattr.js';
import { PhysicalMemory, PAGE } from '../../daemon/memory/physmem.js';
import { BufferdError } from '../../protocol/errors.js';
import type { CachePolicy } from '../../daemon/config/machine-config.js';

const MiB = 2 ** 20;
const H = 2 * MiB;
const PER = H / PAGE;
const BASE = 0x8000_0000;
const SIZE = 64 * MiB; // 32 hugepage slots

function machine(size = SIZE): PhysicalMemory {
  return new PhysicalMemory([{ name: 'r', base: BASE, size, kind: 'dram' }]);
}

type Released = { pfn: number; npages: number; attr: CachePolicy }[];

function pool(mem: PhysicalMemory, nr: number, overcommit = 0, size = H): { hp: HugepagePool; released: Released } {
  const released: Released = [];
  const hook: ReleaseHook = (pfn, npages, attr) => released.push({ pfn, npages, attr });
  return { hp: new HugepagePool(mem, { size, region: 'r', nr, overcommit }, hook), released };
}

const buddy = (mem: PhysicalMemory) => mem.regions[0]!.zones[0]!.buddy;
/** Hugepage slot index of a pfn. */
const slot = (pfn: number) => (pfn - BASE / PAGE) / PER;

function counters(hp: HugepagePool) {
  const { total, free, reserved, surplus, persistent, overcommit, available, inUse } = hp;
  return { total, free, reserved, surplus, persistent, overcommit, available, inUse };
}

type Asserts = Pick<typeof t, 'equal' | 'ok'>;

/** Invariants of every hugetlb state, and conservation of memory. */
function sane(t: Asserts, mem: PhysicalMemory, hp: HugepagePool, other = 0): void {
  t.equal(hp.available, hp.free - hp.reserved, 'available = free − reserved');
  t.ok(hp.reserved <= hp.free, 'reservations are backed by free pages');
  t.ok(hp.surplus <= hp.total, 'surplus ≤ total');
  t.equal(hp.persistent, hp.total - hp.surplus);
  t.equal(mem.freeBytes() + hp.total * hp.size + other, mem.totalBytes(), 'every page is in buddy or in the pool');
}

/** Take every hugepage out of the pool (as in-use pages). */
function takeAll(hp: HugepagePool): number[] {
  const n = hp.free;
  t.ok(hp.reserve(n));
  return hp.take(n, false)!.map((p) => p.pfn);
}

t.test('start-up reserves nr contiguous, size-aligned pages', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 4, 2);
  t.same(counters(hp), { total: 4, free: 4, reserved: 0, surplus: 0, persistent: 4, overcommit: 2, available: 4, inUse: 0 });
  t.equal(hp.requested, 4);
  t.equal(hp.largestRun(), 4, 'one run of adjacent pages');
  for (const p of hp.freePages()) {
    t.equal(p.pfn % PER, 0, 'naturally aligned');
    t.equal(p.attr, 'writeback');
  }
  sane(t, mem, hp);
  // asking for more than fits reserves what it can and remembers the request
  const big = pool(machine(), 40).hp;
  t.equal(big.persistent, 32);
  t.equal(big.requested, 40);
  t.equal(big.status().nr, 32);
});

t.test('grow promotes surplus pages to persistent before allocating fresh ones', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 2, 4);
  t.ok(hp.reserve(4));
  t.same([hp.surplus, hp.total, hp.persistent], [2, 4, 2]);
  const buddyFree = mem.freeBytes();
  t.equal(hp.setNr(3), 3);
  t.same([hp.surplus, hp.total, hp.persistent], [1, 4, 3]);
  t.equal(mem.freeBytes(), buddyFree, 'no buddy allocation for a promotion');
  t.equal(hp.setNr(5), 5);
  t.same([hp.surplus, hp.total, hp.persistent], [0, 5, 5]);
  t.equal(mem.freeBytes(), buddyFree - H, 'only the missing page is allocated fresh');
  sane(t, mem, hp);
});

t.test('grow goes as far as memory allows and returns the count reached', async (t) => {
  const mem = machine();
  const blocked: number[] = [];
  for (let i = 0; i < 10; i++) blocked.push(mem.allocBlock('r', 9, null));
  // a 4K page in each of two more slots makes them unusable for hugepages
  const a = mem.allocContig('r', 1, 1, null)!;
  const b = mem.allocContig('r', 1, PER * 2, null)!;
  t.not(slot(a.pfn - (a.pfn % PER)), slot(b.pfn - (b.pfn % PER)));
  const { hp } = pool(mem, 1);
  t.equal(hp.setNr(100), 20, '32 slots − 10 blocked − 2 fragmented');
  t.equal(hp.requested, 100);
  t.equal(hp.status().nr, 20);
  sane(t, mem, hp, 10 * H + 2 * PAGE);
});

t.test('shrink frees only free pages not needed for use or reservations', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 8);
  t.ok(hp.reserve(3));
  const used = hp.take(2, false)!;
  t.equal(used.length, 2);
  // in use 2, reserved 1, free 6
  t.equal(hp.setNr(4), 4);
  t.same(counters(hp), { total: 4, free: 2, reserved: 1, surplus: 0, persistent: 4, overcommit: 0, available: 1, inUse: 2 });
  t.ok(hp.freePages().every((p) => !used.some((u) => u.pfn === p.pfn)), 'in-use pages stay in use');
  // down to zero: in-use and reserved pages stay, as surplus
  t.equal(hp.setNr(0), 0);
  t.same(counters(hp), { total: 3, free: 1, reserved: 1, surplus: 3, persistent: 0, overcommit: 0, available: 0, inUse: 2 });
  sane(t, mem, hp);
  // the reservation is dropped: its page was surplus and goes back
  hp.unreserve(1);
  t.same([hp.total, hp.free, hp.surplus], [2, 0, 2]);
  for (const p of used) hp.put(p.pfn, p.attr);
  t.same([hp.total, hp.free, hp.surplus], [0, 0, 0]);
  t.equal(mem.freeBytes(), SIZE, 'everything back in buddy');
});

t.test('shrink below in-use makes surplus beyond overcommit; no new surplus until pages are freed or limits raised', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 6, 1);
  const pages = takeAll(hp);
  t.equal(hp.setNr(2), 2);
  t.same(counters(hp), { total: 6, free: 0, reserved: 0, surplus: 4, persistent: 2, overcommit: 1, available: 0, inUse: 6 });
  const before = counters(hp);
  const buddyFree = mem.freeBytes();
  t.notOk(hp.reserve(1), 'surplus 4 already exceeds overcommit 1');
  t.same(counters(hp), before);
  t.equal(mem.freeBytes(), buddyFree);
  // freeing pages dissolves surplus
  for (const pfn of pages.slice(0, 3)) hp.put(pfn, 'writeback');
  t.same([hp.total, hp.surplus, hp.free], [3, 1, 0]);
  t.equal(mem.freeBytes(), buddyFree + 3 * H);
  t.notOk(hp.reserve(1), 'surplus 1 + 1 > overcommit 1');
  // raising the overcommit limit allows new surplus again
  t.ok(hp.setOvercommit(2));
  t.ok(hp.reserve(1));
  t.same([hp.total, hp.surplus, hp.free, hp.reserved], [4, 2, 1, 1]);
  hp.unreserve(1);
  t.same([hp.total, hp.surplus, hp.free, hp.reserved], [3, 1, 0, 0]);
  t.ok(hp.setOvercommit(1));
  // so does raising nr: the surplus page becomes persistent
  t.equal(hp.setNr(3), 3);
  t.equal(hp.surplus, 0);
  t.ok(hp.reserve(1), 'one surplus page within overcommit 1');
  t.equal(hp.surplus, 1);
  sane(t, mem, hp);
});

t.test('surplus is limited by nr_overcommit_hugepages', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 1, 3);
  t.ok(hp.reserve(4), 'one free + three surplus');
  t.same([hp.total, hp.surplus, hp.reserved, hp.available], [4, 3, 4, 0]);
  t.notOk(hp.reserve(1), 'a fourth surplus page is over the limit');
  t.same([hp.total, hp.surplus, hp.reserved], [4, 3, 4]);
  t.ok(hp.setOvercommit(0), 'lowering the limit below the surplus is allowed');
  hp.unreserve(4);
  t.same([hp.total, hp.surplus, hp.reserved, hp.free], [1, 0, 0, 1]);
  t.equal(mem.freeBytes(), SIZE - H);
  sane(t, mem, hp);
});

t.test('a failing reserve changes nothing, even when it got some surplus pages first', async (t) => {
  const mem = machine();
  const low = mem.allocBlock('r', 9, null);
  const { hp, released } = pool(mem, 2, 10);
  t.same(hp.freePages().map((p) => slot(p.pfn)), [1, 2]);
  // the persistent page at slot 2 carries write-combine
  t.ok(hp.reserve(2));
  const [p1, p2] = hp.take(2, false)!;
  hp.put(p2!.pfn, 'writecombine');
  hp.put(p1!.pfn, 'writeback');
  // fill the rest of memory, then free slot 0: exactly one fresh page is left
  while (mem.allocBlock('r', 9, null) >= 0);
  t.equal(buddy(mem).freePages, 0);
  mem.freeBlockOrder(low, 9);
  const before = { c: counters(hp), pages: hp.freePages(), blocks: buddy(mem).freeBlocks(), st: hp.status() };
  t.notOk(hp.reserve(4), 'needs two surplus pages, only one can be had');
  t.same(counters(hp), before.c, 'no counter changed');
  t.same(hp.freePages(), before.pages, 'the same free hugepages, with their attributes');
  t.same(buddy(mem).freeBlocks(), before.blocks, 'buddy free pages unchanged');
  t.same(hp.status(), before.st);
  t.same(released, [], 'no hugepage left the pool');
  // a reservation that fits still works: one surplus page
  t.ok(hp.reserve(3));
  t.same([hp.total, hp.surplus], [3, 1]);
  hp.unreserve(3);
  t.same(counters(hp), before.c, 'the surplus page went back');
  t.equal(mem.freeBytes(), H);
});

t.test('unreserve returns unused surplus pages to the buddy allocator', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 1, 4);
  t.ok(hp.reserve(3));
  t.same([hp.total, hp.surplus, hp.reserved], [3, 2, 3]);
  const [used] = hp.take(1, false)!;
  t.same([hp.reserved, hp.free, hp.inUse], [2, 2, 1]);
  hp.unreserve(2);
  t.same(counters(hp), { total: 1, free: 0, reserved: 0, surplus: 0, persistent: 1, overcommit: 4, available: 0, inUse: 1 });
  t.equal(mem.freeBytes(), SIZE - H);
  hp.unreserve(5);
  t.equal(hp.reserved, 0, 'unreserving more than is reserved stops at zero');
  hp.put(used!.pfn, used!.attr);
  t.same([hp.free, hp.total], [1, 1], 'a persistent page rejoins the pool');
  sane(t, mem, hp);
});

t.test('put() while surplus > 0 dissolves the page to the buddy allocator', async (t) => {
  const mem = machine();
  const { hp, released } = pool(mem, 1, 2);
  t.ok(hp.reserve(2));
  const [a, b] = hp.take(2, false)!;
  t.equal(hp.surplus, 1);
  const buddyFree = mem.freeBytes();
  hp.put(a!.pfn, 'writecombine');
  t.same([hp.total, hp.free, hp.surplus], [1, 0, 0]);
  t.equal(mem.freeBytes(), buddyFree + H);
  t.ok(buddy(mem).isFree(a!.pfn, 9), 'the page is free in buddy');
  t.same(released, [{ pfn: a!.pfn, npages: PER, attr: 'writecombine' }], 'the release hook sees its attribute');
  hp.put(b!.pfn, 'uncached');
  t.same([hp.total, hp.free, hp.surplus], [1, 1, 0], 'no surplus left: the page rejoins the pool');
  t.same(hp.freePages(), [{ pfn: b!.pfn, attr: 'uncached' }], 'keeping its attribute');
  sane(t, mem, hp);
});

t.test('take(contiguous) finds adjacent runs or returns null without changing anything', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 4);
  const pages = takeAll(hp);
  hp.put(pages[0]!, 'writeback');
  hp.put(pages[2]!, 'writeback');
  t.ok(hp.reserve(2));
  t.equal(hp.largestRun(), 1);
  t.notOk(hp.hasRun(2));
  const before = { c: counters(hp), pages: hp.freePages() };
  t.equal(hp.take(2, true), null, 'slots 0 and 2 are not adjacent');
  t.same(counters(hp), before.c);
  t.same(hp.freePages(), before.pages);
  hp.put(pages[3]!, 'writeback');
  t.ok(hp.hasRun(2));
  const run = hp.take(2, true)!;
  t.same(run.map((p) => slot(p.pfn)), [2, 3]);
  t.same([hp.reserved, hp.free], [0, 1]);
  t.throws(() => hp.take(1, false), RangeError, 'taking needs a reservation');
  sane(t, mem, hp);
});

t.test('reserveAndTake gives back exactly the surplus it gathered when no run turns up', async (t) => {
  const mem = machine();
  const low = mem.allocBlock('r', 9, null);
  const { hp, released } = pool(mem, 4, 2);
  const pages = takeAll(hp);
  while (mem.allocBlock('r', 9, null) >= 0);
  mem.freeBlockOrder(low, 9);
  hp.put(pages[1]!, 'writecombine');
  hp.put(pages[3]!, 'writecombine');
  // free: slots 2 and 4; one surplus page can come from slot 0
  const before = { c: counters(hp), pages: hp.freePages(), blocks: buddy(mem).freeBlocks() };
  t.equal(hp.reserveAndTake(3, true, 'writecombine'), null);
  t.same(counters(hp), before.c);
  t.same(hp.freePages(), before.pages, 'the persistent pages stay, with their attributes');
  t.same(buddy(mem).freeBlocks(), before.blocks, 'slot 0 is back in buddy');
  t.same(released, []);
  t.equal(hp.reserveAndTake(4, false), null, 'over the overcommit limit');
  t.same(counters(hp), before.c);
  const got = hp.reserveAndTake(3, false, 'writecombine')!;
  t.same(got.map((p) => [slot(p.pfn), p.attr]), [[2, 'writecombine'], [4, 'writecombine'], [0, 'writeback']]);
  t.same([hp.surplus, hp.reserved, hp.free, hp.inUse], [1, 0, 0, 5]);
  sane(t, mem, hp, 27 * H);
});

t.test('take prefers pages carrying the requested attribute, then the lowest', async (t) => {
  const mem = machine();
  const { hp } = pool(mem, 5);
  const pages = takeAll(hp);
  const attrs: CachePolicy[] = ['writeback', 'writecombine', 'uncached', 'writecombine', 'writeback'];
  pages.forEach((pfn, i) => hp.put(pfn, attrs[i]!));
  t.ok(hp.reserve(3));
  const got = hp.take(3, false, 'writecombine')!;
  t.same(got.map((p) => [slot(p.pfn), p.attr]), [[1, 'writecombine'], [3, 'writecombine'], [0, 'writeback']]);
  t.ok(hp.reserve(1));
  t.same(hp.take(1, false, 'uncached')!.map((p) => slot(p.pfn)), [2]);
  t.same(hp.freePages(), [{ pfn: pages[4], attr: 'writeback' }]);
});

t.test('gigantic (1 GiB) pools refuse overcommit', async (t) => {
  const mem = new PhysicalMemory([{ name: 'r', base: BASE, size: 2 ** 32, kind: 'dram' }]);
  const { hp } = pool(mem, 1, 3, 2 ** 30);
  t.ok(hp.isGigantic);
  t.equal(hp.overcommit, 0, 'configured overcommit ignored');
  t.notOk(hp.setOvercommit(1));
  t.equal(hp.overcommit, 0);
  t.ok(hp.setOvercommit(0));
  t.ok(hp.reserve(1));
  t.notOk(hp.reserve(1), 'no surplus gigantic pages');
  t.same([hp.total, hp.surplus], [1, 0]);
  t.equal(hp.setNr(3), 3);
  t.equal(hp.freePages()[0]!.pfn % (2 ** 30 / PAGE), 0, 'aligned to 1 GiB');
  t.equal(pool(machine(), 0, 5).hp.overcommit, 5, '2 MiB pools do overcommit');
});

t.test('random operation sequences keep the hugetlb counters consistent', async (t) => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('reserve' as const), n: fc.integer({ min: 0, max: 6 }) }),
    fc.record({ k: fc.constant('unreserve' as const), n: fc.integer({ min: 0, max: 6 }) }),
    fc.record({ k: fc.constant('take' as const), n: fc.integer({ min: 1, max: 4 }), c: fc.boolean() }),
    fc.record({ k: fc.constant('rt' as const), n: fc.integer({ min: 1, max: 4 }), c: fc.boolean() }),
    fc.record({ k: fc.constant('put' as const), n: fc.nat(), a: fc.constantFrom<CachePolicy>('writeback', 'writecombine') }),
    fc.record({ k: fc.constant('nr' as const), n: fc.integer({ min: 0, max: 40 }) }),
    fc.record({ k: fc.constant('oc' as const), n: fc.integer({ min: 0, max: 8 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 12 }), fc.array(op, { maxLength: 40, size: 'max' }), (nr, ops) => {
      const mem = machine();
      const { hp } = pool(mem, nr, 2);
      const used: number[] = [];
      const ok = (c: boolean, what: string) => {
        if (!c) throw new Error(`${what}: ${JSON.stringify(hp.status())}`);
      };
      for (const o of ops) {
        const before = JSON.stringify([hp.status(), hp.freePages(), buddy(mem).freeBlocks()]);
        if (o.k === 'reserve') {
          const r = hp.reserve(o.n);
          if (!r) ok(before === JSON.stringify([hp.status(), hp.freePages(), buddy(mem).freeBlocks()]), 'failed reserve changed state');
        } else if (o.k === 'unreserve') hp.unreserve(o.n);
        else if (o.k === 'take') {
          if (o.n <= hp.reserved) {
            const got = hp.take(o.n, o.c);
            if (got === null) ok(before === JSON.stringify([hp.status(), hp.freePages(), buddy(mem).freeBlocks()]), 'failed take changed state');
            else used.push(...got.map((p) => p.pfn));
          }
        } else if (o.k === 'rt') {
          const got = hp.reserveAndTake(o.n, o.c);
          if (got === null) ok(before === JSON.stringify([hp.status(), hp.freePages(), buddy(mem).freeBlocks()]), 'failed reserveAndTake changed state');
          else used.push(...got.map((p) => p.pfn));
        } else if (o.k === 'put') {
          if (used.length > 0) hp.put(used.splice(o.n % used.length, 1)[0]!, o.a);
        } else if (o.k === 'nr') {
          const reached = hp.setNr(o.n);
          ok(reached === hp.persistent && reached <= o.n, 'setNr returns the persistent count');
          ok(reached === o.n || buddy(mem).largestFreeOrder() < 9, 'setNr stops short only when memory ran out');
        } else hp.setOvercommit(o.n);
        ok(hp.available === hp.free - hp.reserved && hp.available >= 0, 'available = free − reserved ≥ 0');
        ok(hp.surplus >= 0 && hp.surplus <= hp.total, 'surplus within total');
        ok(hp.inUse === used.length, 'in use = pages taken');
        ok(mem.freeBytes() + hp.total * H === SIZE, 'memory conserved');
      }
      // everything back: no surplus survives, persistent pages remain
      for (const pfn of used) hp.put(pfn, 'writeback');
      hp.unreserve(hp.reserved);
      ok(hp.surplus === 0 && hp.inUse === 0 && hp.total === hp.persistent, 'no surplus after all is freed');
    }),
    { seed: 7, numRuns: 150 },
  );
  t.pass('property held');
});

t.test('CacheAttrTracker: conversions are counted and refused while the pages are in use', async (t) => {
  const tr = new CacheAttrTracker();
  const b = tr.acquire('wc', 'writecombine', 100, 4, 'writeback');
  t.equal(b.attr, 'writecombine');
  const cost = conversionCostNs(4 * PAGE);
  t.ok(cost > 0);
  t.same(tr.stats('wc'), { conversions: 1, convertedBytes: 4 * PAGE, costNs: cost });
  t.same(tr.total, { conversions: 1, convertedBytes: 4 * PAGE, costNs: cost });
  // same policy: no conversion
  const same = tr.acquire('wc', 'writecombine', 200, 1, 'writecombine');
  t.equal(tr.stats('wc').conversions, 1);
  const dup = t.throws(() => tr.acquire('x', 'writeback', 100, 1, 'writeback')) as unknown as BufferdError;
  t.equal(dup.code, 'EBUSY', 'a page frame is held once');
  b.users = 1;
  const e = t.throws(() => tr.convert(b, 'uncached')) as unknown as BufferdError;
  t.ok(e instanceof BufferdError);
  t.equal(e.code, 'EBUSY');
  t.match(e.message, /from writecombine to uncached/);
  t.equal(b.attr, 'writecombine', 'attribute unchanged');
  t.equal(tr.stats('wc').conversions, 1, 'nothing counted');
  t.equal((t.throws(() => tr.release(b, 'writeback')) as unknown as BufferdError).code, 'EBUSY');
  b.users = 0;
  tr.convert(b, 'uncached');
  t.equal(b.attr, 'uncached');
  t.same(tr.stats('wc'), { conversions: 2, convertedBytes: 8 * PAGE, costNs: 2 * cost });
  tr.release(b, 'writeback');
  t.equal(tr.stats('wc').conversions, 3, 'back to write-back is counted');
  tr.release(same, 'writecombine');
  t.equal(tr.heldCount, 0);
  tr.dissolve(5, PER, 'writeback');
  t.equal(tr.total.conversions, 3, 'dissolving a write-back page costs nothing');
  tr.dissolve(5, PER, 'uncached');
  t.same(tr.stats('(hugetlb)'), { conversions: 1, convertedBytes: H, costNs: conversionCostNs(H) });
  t.equal(tr.total.conversions, 4);
});
