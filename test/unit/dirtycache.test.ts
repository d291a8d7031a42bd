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

t.test('a take never exceeds the request, goes largest list first and keeps the counts', async (t) => {
  const c = new DirtyCache();
  c.put([block(0, 512), block(1024, 16), block(2048, 1), block(4096, 300)]);
  t.equal(c.pages, 829);
  const got = c.take(600);
  t.same(
    got.map((b) => b.npages),
    [512, 16, 1],
    'the 300-page block does not fit after 512; 16 and 1 do',
  );
  t.equal(c.pages, 300);
  t.equal(c.count, 1);
  t.same(c.take(299), [], 'nothing fits in 299 pages');
  t.equal(c.drain().length, 1);
  t.equal(c.pages, 0);
  t.same(
    c.serve(10, (n) => [block(9000, n)])!.map((b) => b.npages),
    [10],
    'an empty cache asks for everything',
  );
  c.put([block(0, 4)]);
  t.equal(c.serve(10, () => null), null, 'all or nothing');
  t.equal(c.pages, 4, 'the kept block stays when the rest cannot be had');
  t.same(
    c.serve(10, (n) => [block(100, n)])!.map((b) => b.npages),
    [6, 4],
    'largest block first',
  );
});

t.test('property: take returns distinct kept blocks summing to at most the request', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 60 }), fc.array(fc.integer({ min: 1, max: 6000 }), { maxLength: 20 }), (sizes, asks) => {
        const c = new DirtyCache();
        c.put(sizes.map((n, i) => block(i * 4096, n)));
        let left = sizes.reduce((s, n) => s + n, 0);
        const seen = new Set<number>();
        for (const ask of asks) {
          const got = c.take(ask);
          const sum = got.reduce((s, b) => s + b.npages, 0);
          if (sum > ask) return false;
          for (const b of got) {
            if (seen.has(b.pfn)) return false;
            seen.add(b.pfn);
          }
          left -= sum;
          if (c.pages !== left) return false;
        }
        return c.drain().length === sizes.length - seen.size;
      }),
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
  const big = m.alloc({ pool: 'uc', size: free0 - 2 * MiB, owner: 1 });
  t.equal(big.usize, free0 - 2 * MiB, 'the kept 12 MiB and the rest of the region');
  m.free(big);
  const purges = poolStat(m, 'uc').purges;
  m.pool('uc').setDecay(0);
  t.equal(m.nextDecayDeadline(), clock, 'due at once');
  m.purgeExpired();
  t.match(poolStat(m, 'uc'), { dirty: 0, mapped: 0, purges: purges + 1 });
  t.equal(regionFree(m, 'dram'), free0);
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
