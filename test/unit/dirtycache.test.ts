/**
 * The direct dirty cache (daemon/alloc/dirtycache.ts): with decay off
 * (`dirtyDecayMs: -1`) a 4 KiB pool keeps a freed direct buffer's blocks and
 * the next direct buffer takes them, as jemalloc keeps oversize extents in
 * ecache_dirty when extent_may_force_decay is false; with any other decay
 * they go back at once, as extent_record's eager purge.
 */
import t from 'tap';
import fc from 'fast-check';
import { Machine } from '../../daemon/alloc/machine.js';
import { DirtyCache } from '../../daemon/alloc/dirtycache.js';
import type { HeldBlock } from '../../daemon/memory/cacheattr.js';
import type { PhysBuffer } from '../../daemon/alloc/pool.js';
import { MiB, PAGE, withPools, smallConfig, poolStat, regionFree, errorOf } from '../helpers/machine.js';

const decayOff = () => withPools(smallConfig(), (p) => (p.name === 'uc' || p.name === 'default' ? { dirtyDecayMs: -1 } : {}));
const block = (pfn: number, npages: number): HeldBlock => ({ pfn, npages, attr: 'writeback', pool: 'x', users: 0, hugeSize: 0 });
/** A cache whose splits are recorded (the tracker's split: the head stays, the tail is a new block). */
const cache = () => {
  const splits: [number, number][] = [];
  const c = new DirtyCache((b, n) => {
    splits.push([b.pfn, n]);
    const tail = block(b.pfn + n, b.npages - n);
    b.npages = n;
    return tail;
  });
  return { c, splits };
};
const pagesOf = (bs: HeldBlock[]) => bs.reduce((s, b) => s + b.npages, 0);
const MB = 256; // pages in 1 MiB

t.test('an extent of exactly the request is taken whole, the most recent first, without a block looked at', async (t) => {
  const { c, splits } = cache();
  const a = [block(0, 4 * MB), block(8 * MB, MB)];
  const b = [block(16 * MB, 5 * MB)];
  c.put(a, 5 * MB);
  c.put(b, 5 * MB);
  t.equal(c.pages, 10 * MB);
  t.equal(c.count, 3);
  t.equal(c.takeExact(5 * MB), b, 'the same array, the last kept');
  t.equal(c.takeExact(5 * MB), a);
  t.equal(c.takeExact(5 * MB), null, 'none left');
  t.equal(c.pages, 0);
  t.same(splits, []);
});

t.test('take: the smallest larger extent is split, its rest kept; with none large enough the largest ones go first', async (t) => {
  const { c, splits } = cache();
  c.put([block(0, 6 * MB)], 6 * MB);
  c.put([block(64 * MB, 10 * MB)], 10 * MB);
  const got = c.take(5 * MB);
  t.same(got.map((b) => [b.pfn, b.npages]), [[0, 5 * MB]], 'the 6 MiB extent, not the 10 MiB one');
  t.same(splits, [[0, 5 * MB]]);
  t.equal(c.pages, 11 * MB, 'its last 1 MiB stays, with the 10 MiB extent');
  const all = c.take(12 * MB);
  t.equal(pagesOf(all), 11 * MB, 'everything kept when it is less than asked');
  t.same(all.map((b) => b.npages), [10 * MB, MB], 'largest first');
  t.equal(c.pages, 0);
  t.same(c.take(1), []);
});

t.test('serve: a miss gives the oldest extents back while the cache keeps more than spare, then takes fresh pages; all or nothing', async (t) => {
  const { c } = cache();
  c.put([block(0, 5 * MB)], 5 * MB);
  c.put([block(8 * MB, 5 * MB)], 5 * MB);
  c.put([block(16 * MB, 6 * MB)], 6 * MB);
  const released: number[] = [];
  const fresh = (n: number) => [block(1000 * MB, n)];
  const got = c.serve(7 * MB, fresh, (b) => released.push(b.pfn), 18 * MB);
  t.same(got!.map((b) => b.pfn), [1000 * MB], 'fresh pages for a class nobody kept');
  t.same(released, [0], '16 + 7 > 18: the oldest extent of the longest list (5 MiB) went back, 11 + 7 ≤ 18');
  t.equal(c.pages, 11 * MB);
  t.equal(c.serve(5 * MB, fresh, () => t.fail('a hit releases nothing'), 0)![0]!.pfn, 8 * MB, 'a hit ignores spare');
  // the page source fails: kept pages of another class, the rest from the source, or nothing at all
  t.equal(c.serve(8 * MB, () => null, () => {}, 100 * MB), null);
  t.equal(c.pages, 6 * MB, 'nothing taken');
  const mixed = c.serve(8 * MB, (n) => (n === 2 * MB ? [block(2000 * MB, n)] : null), () => {}, 100 * MB)!;
  t.same(mixed.map((b) => [b.pfn, b.npages]), [[16 * MB, 6 * MB], [2000 * MB, 2 * MB]], 'kept 6 MiB and 2 MiB fresh, largest first');
  t.equal(c.pages, 0);
});

t.test('property: takes return disjoint kept pages of exactly min(ask, kept), and pages are conserved', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 6 }), { maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 20 }),
        (extents, asks) => {
          const { c } = cache();
          let at = 0;
          let kept = 0;
          for (const sizes of extents) {
            const bs = sizes.sort((x, y) => y - x).map((n) => block((at += 4096) , n));
            c.put(bs, pagesOf(bs));
            kept += pagesOf(bs);
          }
          const taken: [number, number][] = [];
          for (const ask of asks) {
            const got = c.take(ask);
            if (pagesOf(got) !== Math.min(ask, kept)) return false;
            for (let i = 1; i < got.length; i++) if (got[i - 1]!.npages < got[i]!.npages) return false;
            for (const b of got) taken.push([b.pfn, b.pfn + b.npages]);
            kept -= pagesOf(got);
            if (c.pages !== kept) return false;
          }
          for (const b of c.drain()) taken.push([b.pfn, b.pfn + b.npages]);
          taken.sort((x, y) => x[0] - y[0]);
          for (let i = 1; i < taken.length; i++) if (taken[i - 1]![1] > taken[i]![0]) return false;
          return c.pages === 0 && c.count === 0;
        },
      ),
    ),
  );
});

t.test('decay off: a freed direct buffer stays dirty in the pool and the next one reuses its pages without a conversion', async (t) => {
  const m = new Machine(decayOff(), () => 0);
  const free0 = regionFree(m, 'dram');
  const a = m.alloc({ pool: 'uc', size: 6 * MiB, owner: 1 });
  const conv = poolStat(m, 'uc').conversions;
  const pages = a.blocks.map((b) => b.pfn).sort();
  m.free(a);
  t.match(poolStat(m, 'uc'), { dirty: 6 * MiB, mapped: 6 * MiB, allocated: 0, directBuffers: 0 });
  t.equal(regionFree(m, 'dram'), free0 - 6 * MiB, 'the pages stay out of the buddy allocator');
  t.same(m.checkInvariants(), []);
  const b = m.alloc({ pool: 'uc', size: 6 * MiB, owner: 2 });
  t.same(b.blocks.map((x) => x.pfn).sort(), pages, 'the same pages');
  t.equal(poolStat(m, 'uc').conversions, conv, 'no page converted again');
  t.match(poolStat(m, 'uc'), { dirty: 0, mapped: 6 * MiB });
  m.mem.store.write(b.segments[0]!.addr, new Uint8Array([7]));
  m.free(b);
  const c = m.alloc({ pool: 'uc', size: 8 * MiB, owner: 1 });
  t.equal(c.usize, 8 * MiB);
  t.equal(poolStat(m, 'uc').mapped, 8 * MiB, 'kept 6 MiB plus 2 MiB from the buddy allocator');
  for (let i = 1; i < c.blocks.length; i++) t.ok(c.blocks[i - 1]!.npages >= c.blocks[i]!.npages, 'largest block first');
  t.same([...m.mem.store.read(c.segments[0]!.addr, 1)], [0], 'zeroed on reuse');
  t.same(m.checkInvariants(), []);
  m.free(c);
});

t.test('decay on: direct pages go back at once (jemalloc purges oversize extents eagerly)', async (t) => {
  const m = new Machine(smallConfig(), () => 0);
  const free0 = regionFree(m, 'dram');
  m.free(m.alloc({ pool: 'uc', size: 6 * MiB, owner: 1 }));
  t.match(poolStat(m, 'uc'), { dirty: 0, mapped: 0 });
  t.equal(regionFree(m, 'dram'), free0);
});

t.test('the dirty cache is purged when memory runs short, and after a reload turns decay on', async (t) => {
  let clock = 0;
  const m = new Machine(decayOff(), () => clock);
  const free0 = regionFree(m, 'dram');
  const bufs: PhysBuffer[] = [];
  for (let i = 0; i < 3; i++) bufs.push(m.alloc({ pool: 'uc', size: 4 * MiB, owner: 1 }));
  for (const b of bufs) m.free(b);
  t.equal(poolStat(m, 'uc').dirty, 12 * MiB);
  // more than the buddy allocator has: the pool purges its cache, then finds everything
  t.equal(free0, 24 * MiB);
  const big = m.alloc({ pool: 'uc', size: free0 - 2 * MiB, owner: 1 });
  t.equal(big.usize, 24 * MiB, 'its size class: the kept 12 MiB and the rest of the region');
  m.free(big);
  const purges = poolStat(m, 'uc').purges;
  m.pool('uc').setDecay(0);
  t.equal(m.nextDecayDeadline(), clock, 'due at once');
  m.purgeExpired();
  t.match(poolStat(m, 'uc'), { dirty: 0, mapped: 0, purges: purges + 1 });
  t.equal(regionFree(m, 'dram'), free0);
  t.same(m.checkInvariants(), []);
});

t.test('decay off rounds direct buffers to size classes (sz_s2u), unless only the exact pages fit', async (t) => {
  const m = new Machine(decayOff(), () => 0);
  for (const [size, usize] of [
    [2 * MiB + 1, 2.5 * MiB],
    [5 * MiB, 5 * MiB],
    [9 * MiB, 10 * MiB],
    [17 * MiB, 20 * MiB],
  ] as const) {
    t.equal(m.pool('uc').usizeFor(size, 1), usize, `${size} bytes: ${usize / MiB} MiB`);
    const b = m.alloc({ pool: 'uc', size, owner: 1 });
    t.equal(b.usize, usize);
    t.equal(b.blocks.reduce((s, x) => s + x.npages, 0) * PAGE, usize, 'the blocks hold the class');
    t.equal(b.segments.reduce((s, x) => s + x.len, 0), size, 'the segments cover the request');
    m.free(b);
  }
  m.purgeExpired();
  m.pool('uc').purge(true);
  const hold = m.alloc({ pool: 'default', size: 1 * MiB, owner: 1 });
  t.equal(regionFree(m, 'dram'), 22 * MiB, "the default pool's arena took a 2 MiB chunk");
  const b = m.alloc({ pool: 'uc', size: 21 * MiB, owner: 1 });
  t.equal(b.usize, 21 * MiB, 'class 24 MiB does not fit in 22 MiB free: the exact pages');
  m.free(b);
  t.match(poolStat(m, 'uc'), { dirty: 21 * MiB }, 'kept as any other');
  const c = m.alloc({ pool: 'uc', size: 20 * MiB + 1, owner: 1 });
  t.equal(c.usize, 20 * MiB + PAGE, 'its class does not fit either: the kept pages went back, then the exact pages');
  m.free(c);
  m.free(hold);
  t.same(m.checkInvariants(), []);
});

t.test("another pool's shortfall leaves the kept pages alone, as it leaves dirty chunks (a failed request changes nothing)", async (t) => {
  const m = new Machine(decayOff(), () => 0);
  const free0 = regionFree(m, 'dram');
  m.free(m.alloc({ pool: 'uc', size: 8 * MiB, owner: 1 }));
  const e = errorOf(() => m.alloc({ pool: 'default', size: free0, owner: 1 }));
  t.equal(e.code, 'ENOMEM');
  t.match(poolStat(m, 'uc'), { dirty: 8 * MiB, mapped: 8 * MiB });
  t.same(m.checkInvariants(), []);
});

t.test('property: with decay off every page is accounted for through any alloc/free sequence', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 2 * MiB, max: 9 * MiB }), fc.nat(7)), { maxLength: 40 }), (ops) => {
        const m = new Machine(decayOff(), () => 0);
        const free0 = regionFree(m, 'dram');
        const live: PhysBuffer[] = [];
        for (const [alloc, size, k] of ops) {
          if (alloc || live.length === 0) {
            try {
              live.push(m.alloc({ pool: k % 2 === 0 ? 'uc' : 'default', size, owner: 1 }));
            } catch {
              /* ENOMEM: fine */
            }
          } else m.free(live.splice(k % live.length, 1)[0]!);
          const held = ['uc', 'default'].reduce((s, n) => s + poolStat(m, n).mapped, 0);
          if (regionFree(m, 'dram') + held !== free0) return false;
          if (m.checkInvariants().length !== 0) return false;
        }
        for (const b of live) m.free(b);
        for (const n of ['uc', 'default']) m.pool(n).setDecay(0);
        m.purgeExpired();
        return regionFree(m, 'dram') === free0;
      }),
      { numRuns: 60 },
    ),
  );
});

void PAGE;
