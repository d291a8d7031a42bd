/**
 * The arena allocator (slabs, large extents, decay, per-client arenas),
 * driven through Machine and Pool with a fake clock. The pack and
 * first-fit tests restate jemalloc's test/unit/pack.c and extent tests.
 */
import t from 'tap';
import { Machine } from '../../daemon/alloc/machine.js';
import { buildConfig } from '../../daemon/config/config.js';
import type { PhysBuffer } from '../../daemon/alloc/pool.js';
import type { Arena } from '../../daemon/alloc/arena.js';
import { nregs, size2index, slabSize, SMALL_MAXCLASS, PAGE } from '../../daemon/alloc/sizeclasses.js';
import { BufferdError } from '../../protocol/errors.js';

const KiB = 1024;
const MiB = 2 ** 20;
const H = 2 * MiB;

const RAW = {
  memory: { regions: [{ name: 'dram', base: '0x80000000', size: '160M', kind: 'dram' }] },
  hugepages: [{ size: '2M', region: 'dram', nr: 24, overcommit: 0 }],
  pools: [
    { name: 'small', cache: 'writeback', region: 'dram', dirtyDecayMs: 1000 },
    { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram', dirtyDecayMs: 1000 },
    { name: 'shared', cache: 'writeback', region: 'dram', arena: 'shared', dirtyDecayMs: 1000 },
    { name: 'hshared', cache: 'writeback', pageSize: '2M', region: 'dram', arena: 'shared' },
    { name: 'now', cache: 'writeback', region: 'dram', dirtyDecayMs: 0 },
    { name: 'never', cache: 'writeback', region: 'dram', dirtyDecayMs: -1 },
    { name: 'hnever', cache: 'writeback', pageSize: '2M', region: 'dram', dirtyDecayMs: -1 },
    { name: 'cap', cache: 'writeback', region: 'dram', dirtyDecayMs: -1, maxBytes: '4M' },
  ],
};

function setup() {
  const clk = { t: 0 };
  const m = new Machine(buildConfig(structuredClone(RAW), 'test').machine, () => clk.t);
  return { m, clk };
}

const pst = (m: Machine, name: string) => m.poolStatus().find((p) => p.name === name)!;
const hpFree = (m: Machine) => m.hugepageStatus()[0]!.free;
const dramFree = (m: Machine) => m.regionStatus()[0]!.free;
const hpIndex = (addr: number) => Math.floor(addr / H);

/** Deterministic PRNG (LCG): r(n) is uniform in [0, n). */
const rng = (seed: number) => (n: number) => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * n;

t.test('pack: freed regions are reused lowest address first, no new slab', async (t) => {
  const NSLABS = 5;
  for (const pool of ['small', 'huge']) {
    for (const size of [64, 112]) {
      const { m } = setup();
      const ind = size2index(size);
      const n = nregs(ind);
      const bufs = Array.from({ length: n * NSLABS }, () => m.alloc({ pool, size, owner: 1 }));
      const base = bufs[0]!.addr;
      t.ok(bufs.every((b, k) => b.addr === base + k * size), `${pool}/${size}: ${NSLABS} slabs of ${slabSize(ind) / PAGE} pages packed back to back`);
      const bin = () => m.poolDetail(pool).bins.find((b) => b.size === size)!;
      t.match(bin(), { curslabs: NSLABS, nonfull: 0, curregs: n * NSLABS, nregs: n, slabSize: slabSize(ind) });
      const freed: number[] = [];
      for (let i = 0; i < NSLABS; i++) {
        for (let j = 0; j < n; j++) {
          if (j === i % n) continue;
          const b = bufs[i * n + j]!;
          freed.push(b.addr);
          m.free(b);
        }
      }
      t.match(bin(), { curslabs: NSLABS, nonfull: NSLABS, curregs: NSLABS });
      const again = freed.map(() => m.alloc({ pool, size, owner: 1 }).addr);
      t.same(again, [...freed].sort((a, b) => a - b), `${pool}/${size}: exactly the freed addresses, ascending`);
      t.match(bin(), { curslabs: NSLABS, nonfull: 0, curregs: n * NSLABS });
      t.same(m.checkInvariants(), []);
    }
  }
});

t.test('a reused region reads as zeros; neighbours are untouched', async (t) => {
  const { m } = setup();
  for (const [pool, size] of [['small', 48], ['huge', 3000], ['small', 20000]] as const) {
    const [a, b, c] = [1, 2, 3].map(() => m.alloc({ pool, size, owner: 1 }));
    for (const [x, v] of [[a!, 0xa1], [b!, 0xb2], [c!, 0xc3]] as const) m.fill(x, 0, size, v);
    const addr = b!.addr;
    m.free(b!);
    const d = m.alloc({ pool, size, owner: 1 });
    t.equal(d.addr, addr, `${pool}/${size}: same region`);
    t.ok(m.read(d, 0, size).every((x) => x === 0), 'zeroed');
    t.ok(m.read(a!, 0, size).every((x) => x === 0xa1) && m.read(c!, 0, size).every((x) => x === 0xc3), 'neighbours kept');
  }
});

t.test('stats invariants hold through many random operations', async (t) => {
  const { m, clk } = setup();
  const r = rng(42);
  const live: PhysBuffer[] = [];
  const pools = ['small', 'huge', 'shared'];
  const sizes = (k = r(10)) => (k < 6 ? 1 + Math.floor(r(SMALL_MAXCLASS)) : k < 9 ? SMALL_MAXCLASS + 1 + Math.floor(r(600 * KiB)) : 1 + Math.floor(r(1.9 * MiB)));
  let checks = 0;
  for (let step = 0; step < 4000; step++) {
    if (live.length === 0 || r(10) < 5.5) {
      const align = 2 ** Math.floor(r(13));
      live.push(m.alloc({ pool: pools[Math.floor(r(3))]!, size: sizes(), align, owner: 1 + Math.floor(r(3)) }));
    } else m.free(live.splice(Math.floor(r(live.length)), 1)[0]!);
    if (r(50) < 1) {
      clk.t += 600;
      m.purgeExpired();
    }
    if (step % 200 !== 199) continue;
    checks++;
    for (const name of pools) {
      const pool = m.pool(name);
      for (const a of pool.allArenas()) {
        const s = a.stats();
        const mine = live.filter((b) => b.arena === a);
        const bad: string[] = [];
        if (!(s.allocated <= s.active && s.active <= s.mapped)) bad.push(`allocated ${s.allocated} ≤ active ${s.active} ≤ mapped ${s.mapped}`);
        if (s.active + s.dirty + s.retained !== s.mapped) bad.push('active + dirty + retained ≠ mapped');
        if (s.retained < 0 || s.dirty < 0) bad.push('negative retained or dirty');
        if (s.nmalloc - s.ndalloc !== s.live || s.live !== mine.length) bad.push(`nmalloc ${s.nmalloc} − ndalloc ${s.ndalloc} vs live ${s.live} vs ${mine.length}`);
        if (s.allocated !== mine.reduce((x, b) => x + b.usize, 0)) bad.push('allocated ≠ sum of usize');
        for (const b of a.binStats()) {
          const n = mine.filter((x) => x.kind === 'small' && x.usize === b.size).length;
          if (b.curregs !== n) bad.push(`bin ${b.size}: curregs ${b.curregs}, live ${n}`);
          if (b.nonfull > b.curslabs) bad.push(`bin ${b.size}: nonfull ${b.nonfull} > curslabs ${b.curslabs}`);
          if (b.curregs > b.curslabs * b.nregs) bad.push(`bin ${b.size}: more regions than slabs hold`);
          if (b.nmalloc - b.ndalloc !== b.curregs) bad.push(`bin ${b.size}: nmalloc − ndalloc ≠ curregs`);
        }
        if (bad.length > 0) t.fail(`step ${step} pool ${name} arena ${a.id}: ${bad.join('; ')}`);
      }
      const ps = pst(m, name);
      if (ps.nmalloc - ps.ndalloc !== ps.buffers) t.fail(`pool ${name}: nmalloc − ndalloc ≠ buffers`);
    }
    const inv = m.checkInvariants();
    if (inv.length > 0) t.fail(`step ${step}: ${inv.join('; ')}`);
  }
  t.equal(checks, 20);
  t.ok(live.length > 50, `${live.length} live at the end`);
  for (const b of live) m.free(b);
  t.same(m.checkInvariants(), []);
});

t.test('decay: dirty chunks are purged exactly dirtyDecayMs after they empty', async (t) => {
  for (const pool of ['small', 'huge']) {
    const { m, clk } = setup();
    const freeBefore = pool === 'huge' ? hpFree(m) : dramFree(m);
    clk.t = 5000;
    const bufs = [100, 5000, 20000, 300 * KiB, 64].map((size) => m.alloc({ pool, size, owner: 1 }));
    const mapped = pst(m, pool).mapped;
    t.ok(mapped > 0);
    clk.t = 6000;
    for (const b of bufs) m.free(b);
    const st = () => pst(m, pool);
    t.match(st(), { dirty: mapped, mapped, active: 0, allocated: 0, purges: 0 }, `${pool}: every chunk dirty after freeing everything`);
    t.equal(m.nextDecayDeadline(), 7000);
    t.equal(m.purgeExpired(), 0, '+0 ms: nothing');
    clk.t = 6999;
    t.equal(m.purgeExpired(), 0, '+999 ms: nothing');
    t.match(st(), { dirty: mapped, mapped });
    clk.t = 7000;
    t.equal(m.purgeExpired(), mapped / PAGE, '+1000 ms: every page');
    t.match(st(), { dirty: 0, mapped: 0, retained: 0 });
    t.ok(st().purges >= 1, 'purges counted');
    t.ok(m.poolDetail(pool).arenas[0]!.purged === mapped, 'purged bytes counted');
    t.equal(pool === 'huge' ? hpFree(m) : dramFree(m), freeBefore, 'the page source has its pages back');
    t.equal(m.nextDecayDeadline(), null);
    t.same(m.checkInvariants(), []);
  }
});

t.test('decay: a reused dirty chunk is no longer dirty; a partly used chunk is never purged', async (t) => {
  const { m, clk } = setup();
  const a = m.alloc({ pool: 'small', size: 100, owner: 1 });
  m.free(a);
  t.equal(pst(m, 'small').dirty, H);
  clk.t = 900;
  const b = m.alloc({ pool: 'small', size: 100, owner: 1 });
  t.equal(b.addr, a.addr, 'the dirty chunk is reused');
  t.equal(pst(m, 'small').dirty, 0);
  clk.t = 10_000;
  t.equal(m.purgeExpired(), 0);
  t.equal(pst(m, 'small').retained, H - 7 * PAGE, 'a 7-page slab of class 112 in use');
  m.free(b);
  clk.t = 10_999;
  t.equal(m.purgeExpired(), 0, 'the decay clock restarted when it emptied again');
  clk.t = 11_000;
  t.equal(m.purgeExpired(), 512);
});

t.test('decay: chunks emptied at different times are purged in turn', async (t) => {
  const { m, clk } = setup();
  const a = m.alloc({ pool: 'huge', size: 64, owner: 1 });
  const b = m.alloc({ pool: 'huge', size: 64, owner: 2 });
  const c = m.alloc({ pool: 'huge', size: 64, owner: 3 });
  m.free(a);
  clk.t = 300;
  m.free(c);
  clk.t = 500;
  m.free(b);
  t.equal(m.nextDecayDeadline(), 1000);
  clk.t = 1000;
  t.equal(m.purgeExpired(), 512, 'the first at 1000');
  t.equal(m.nextDecayDeadline(), 1300);
  clk.t = 1499;
  t.equal(m.purgeExpired(), 512, 'the second at 1300');
  t.equal(pst(m, 'huge').dirty, H);
  clk.t = 1500;
  t.equal(m.purgeExpired(), 512, 'the third at 1500');
  t.equal(m.nextDecayDeadline(), null);
});

t.test('the direct path: usable size at or above 2 MiB, or alignment above it', async (t) => {
  const { m } = setup();
  for (const pool of ['small', 'huge']) {
    t.equal(m.poolDetail(pool).directThreshold, H);
    const kinds = [14336, 14337, 1835008, 1835009, H - 1, H, 5 * MiB + 3].map((size) => m.alloc({ pool, size, owner: 1 }));
    t.same(kinds.map((b) => b.kind), ['small', 'large', 'large', 'direct', 'direct', 'direct', 'direct'], pool);
    t.same(kinds.map((b) => b.usize), [14336, 16384, 1835008, ...(pool === 'huge' ? [H, H, H, 3 * H] : [1835008 + PAGE, H, H, 5 * MiB + PAGE])]);
    for (const b of kinds) m.free(b);
  }
  const d = m.alloc({ pool: 'small', size: 100, align: 4 * MiB, owner: 1 });
  t.match(d, { kind: 'direct', usize: PAGE });
  t.equal(d.segments[0]!.addr % (4 * MiB), 0);
  m.free(d);
  t.same(m.checkInvariants(), []);
});

t.test('decay 0 purges at once; −1 never, but a forced purge or an ENOMEM retry does', async (t) => {
  const { m, clk } = setup();
  const f0 = dramFree(m);
  const a = m.alloc({ pool: 'now', size: 3000, owner: 1 });
  m.free(a);
  t.match(pst(m, 'now'), { mapped: 0, dirty: 0, purges: 1 });
  t.equal(dramFree(m), f0);

  for (const pool of ['never', 'hnever']) {
    const bufs = [10, 50_000].map((size) => m.alloc({ pool, size, owner: 1 }));
    bufs.forEach((b) => m.free(b));
    const mapped = pst(m, pool).mapped;
    t.ok(mapped > 0);
    t.equal(m.pool(pool).nextDeadline(), null);
    clk.t += 3_600_000;
    t.equal(m.purgeExpired(), 0, `${pool}: not even after an hour`);
    t.match(pst(m, pool), { mapped, dirty: mapped });
    t.equal(m.pool(pool).purge(true), mapped / PAGE, `${pool}: forced`);
    t.match(pst(m, pool), { mapped: 0, dirty: 0 });
  }
  t.equal(dramFree(m), f0);

  // maxBytes 4M: two owners hold a 2M chunk each; a third gets room only by purging
  const x = m.alloc({ pool: 'cap', size: 64, owner: 1 });
  const y = m.alloc({ pool: 'cap', size: 64, owner: 2 });
  m.free(x);
  t.match(pst(m, 'cap'), { mapped: 4 * MiB, dirty: H, purges: 0 });
  const z = m.alloc({ pool: 'cap', size: 64, owner: 3 });
  t.match(pst(m, 'cap'), { mapped: 4 * MiB, dirty: 0, purges: 1 }, 'the ENOMEM retry purged the dirty chunk');
  m.free(y);
  m.free(z);
  m.pool('cap').purge(true);

  // hugepages: owner 1's dirty hugepage is the last one; owner 2 gets it after a purge
  const h1 = m.alloc({ pool: 'hnever', size: 64, owner: 1 });
  m.free(h1);
  const big = m.alloc({ pool: 'huge', size: hpFree(m) * H, owner: 9 });
  t.equal(hpFree(m), 0);
  const h2 = m.alloc({ pool: 'hnever', size: 64, owner: 2 });
  t.equal(hpIndex(h2.addr), hpIndex(h1.addr), 'the purged hugepage went to owner 2');
  t.equal(pst(m, 'hnever').purges >= 1, true);
  m.free(h2);
  m.free(big);
  t.same(m.checkInvariants(), []);
});

t.test('arenas: per client by default, a chunk never holds two clients', async (t) => {
  const { m, clk } = setup();
  const sizes = [8, 100, 4000, 14336, 20000, 700 * KiB, 64, 1 * MiB];
  const bufs: PhysBuffer[] = [];
  for (const pool of ['huge', 'small', 'shared', 'hshared']) {
    for (let k = 0; k < 24; k++) bufs.push(m.alloc({ pool, size: sizes[k % sizes.length]!, owner: 1 + (k % 3) }));
  }
  const chunkOwner = (pool: string) => {
    const own = new Map<number, number>();
    for (const a of m.pool(pool).allArenas()) {
      for (const c of a.allChunks()) {
        t.notOk(own.has(c.pfn), `${pool}: chunk ${c.pfn} held by one arena only`);
        own.set(c.pfn, a.owner);
      }
    }
    return own;
  };
  const chunkOf = (a: Arena, addr: number) => [...a.allChunks()].find((c) => addr >= c.pfn * PAGE && addr < (c.pfn + c.npages) * PAGE);
  for (const pool of ['huge', 'small']) {
    chunkOwner(pool);
    t.same(m.poolDetail(pool).arenas.map((a) => a.owner).sort(), [1, 2, 3]);
    for (const b of bufs.filter((x) => x.pool.name === pool)) {
      const c = chunkOf(b.arena!, b.addr);
      if (c === undefined || b.addr + b.usize > (c.pfn + c.npages) * PAGE) t.fail(`buffer ${b.id} not inside a chunk of its owner's arena`);
      if (b.arena!.owner !== b.owner) t.fail(`buffer ${b.id} in another client's arena`);
    }
    if (pool === 'huge') {
      const byHp = new Map<number, Set<number>>();
      for (const b of bufs.filter((x) => x.pool.name === pool)) byHp.set(hpIndex(b.addr), (byHp.get(hpIndex(b.addr)) ?? new Set()).add(b.owner));
      t.ok([...byHp.values()].every((s) => s.size === 1), 'each hugepage holds one client');
    }
  }
  for (const pool of ['shared', 'hshared']) {
    t.same(m.poolDetail(pool).arenas.map((a) => a.owner), [0], `${pool}: one shared arena`);
    const small = bufs.filter((x) => x.pool.name === pool && x.size === 8);
    t.ok(new Set(small.map((b) => b.owner)).size > 1 && new Set(small.map((b) => hpIndex(b.addr))).size === 1, `${pool}: owners share a chunk`);
  }

  // ownerGone: an empty arena is dropped and its chunks purged at once, whatever the decay
  const hp0 = hpFree(m);
  for (const b of bufs.filter((x) => x.owner === 1 && x.pool.name !== 'shared' && x.pool.name !== 'hshared')) m.free(b);
  t.equal(pst(m, 'huge').arenas, 3, 'still there until the owner goes');
  m.ownerGone(1);
  t.equal(pst(m, 'huge').arenas, 2);
  t.equal(pst(m, 'small').arenas, 2);
  t.ok(hpFree(m) > hp0, "owner 1's hugepages are back at once");
  t.equal(pst(m, 'shared').arenas, 1, 'the shared arena stays');
  // an arena with live buffers stays until the last one is freed
  const two = bufs.filter((x) => x.owner === 2 && x.pool.name === 'huge');
  m.ownerGone(2);
  t.equal(pst(m, 'huge').arenas, 2);
  for (const b of two.slice(1)) m.free(b);
  t.equal(pst(m, 'huge').arenas, 2, 'one live buffer keeps it');
  const mappedBefore = pst(m, 'huge').mapped;
  m.free(two[0]!);
  t.equal(pst(m, 'huge').arenas, 1, 'dropped with its last buffer');
  t.ok(pst(m, 'huge').mapped < mappedBefore, 'and its chunks purged');
  clk.t += 1;
  t.same(m.checkInvariants(), []);
});

t.test('alignment: every power of two up to the page (64 KiB for large, 2 MiB in hugepage pools)', async (t) => {
  const { m } = setup();
  for (const pool of ['small', 'huge']) {
    const maxLarge = pool === 'small' ? 64 * KiB : H;
    for (let align = 1; align <= maxLarge; align *= 2) {
      const sizes = align <= PAGE ? [1, 8, 24, 100, 1000, 3000, 5000, 14000, 16384, 20000, 100_000, 1_000_000] : [16384, 20000, 100_000, 1_000_000];
      const bufs = sizes.map((size) => m.alloc({ pool, size, align, owner: 1 }));
      for (const b of bufs) {
        if (b.addr % align !== 0 || b.segments[0]!.addr % align !== 0) t.fail(`${pool}: size ${b.size} align ${align} at 0x${b.addr.toString(16)}`);
        if (b.usize < b.size) t.fail('usize < size');
      }
      t.same(m.checkInvariants(), [], `${pool} align ${align}`);
      for (const b of bufs) m.free(b);
    }
  }
});

t.test('metadata stays small with 100,000 live small allocations', async (t) => {
  const { m } = setup();
  const N = 100_000;
  const bufs: PhysBuffer[] = new Array(N);
  for (let i = 0; i < N; i++) bufs[i] = m.alloc({ pool: 'small', size: 64, owner: 1 });
  const a = m.poolDetail('small').arenas[0]!;
  t.equal(a.live, N);
  const per = a.metadata / N;
  t.comment(`metadata: ${a.metadata} bytes for ${N} live 64-byte allocations = ${per.toFixed(2)} bytes each`);
  t.ok(per < 16, `${per.toFixed(2)} bytes of metadata per live allocation`);
  // free and alloc still work with many live allocations around
  for (let i = 0; i < N; i += 2) m.free(bufs[i]!);
  const again: PhysBuffer[] = [];
  for (let i = 0; i < 1000; i++) again.push(m.alloc({ pool: 'small', size: 64, owner: 1 }));
  t.equal(again[0]!.addr, bufs[0]!.addr, 'the lowest freed region first');
  t.same(m.poolDetail('small').bins.map((b) => b.curregs), [N / 2 + 1000]);
  for (const b of again) m.free(b);
  for (let i = 1; i < N; i += 2) m.free(bufs[i]!);
  t.match(pst(m, 'small'), { allocated: 0, active: 0, buffers: 0 });
});

t.test('large extents: first fit by lowest address, split and coalesced', async (t) => {
  const { m } = setup();
  const al = (size: number) => m.alloc({ pool: 'small', size, owner: 1 });
  const [a, b, c] = [al(16 * KiB), al(16 * KiB), al(16 * KiB)];
  t.equal(b!.addr, a!.addr + 16 * KiB, 'adjacent');
  t.equal(c!.addr, b!.addr + 16 * KiB, 'adjacent');
  m.free(b!);
  m.free(a!);
  const arena = a!.arena!;
  t.same(arena.freeExtents().map((e) => [e.pfn * PAGE, e.npages]).slice(0, 1), [[a!.addr, 8]], 'the two freed extents coalesced');
  const d = al(32 * KiB);
  t.equal(d.addr, a!.addr, 'their combined size fits exactly at the first address');
  const e = al(16 * KiB);
  t.equal(e.addr, c!.addr + 16 * KiB, 'the next one splits the rest of the chunk');
  for (const x of [c!, d, e]) m.free(x);
  t.same(arena.freeExtents().map((x) => x.npages), [512], 'everything coalesced back into the whole chunk');
  // a small request takes the lowest hole
  const s1 = al(16 * KiB);
  al(16 * KiB);
  const s3 = al(32 * KiB);
  al(16 * KiB);
  m.free(s1);
  m.free(s3);
  t.equal(al(16 * KiB).addr, s1.addr, '4 pages: the lowest hole');
  t.same(m.checkInvariants(), []);
});

t.test('large extents: the lowest-addressed fit wins even when a smaller hole of its size bucket comes first', async (t) => {
  const { m } = setup();
  const al = (size: number) => m.alloc({ pool: 'small', size, owner: 1 });
  const h1 = al(16 * KiB); // pages 0..3
  al(16 * KiB); // 4..7
  const h2 = al(28 * KiB); // 8..14
  al(16 * KiB); // 15..18, then the free tail 19..511
  m.free(h1);
  m.free(h2);
  // free: [0,4) and [8,15) both in bucket 2 (4..7 pages), and the tail
  const got = al(28 * KiB).addr;
  t.equal(got, h2.addr, `7 pages: the 7-page hole at page 8, not page ${(got - h1.addr) / PAGE}`);
});

t.test('bad frees are refused and change nothing', async (t) => {
  const { m } = setup();
  const s = m.alloc({ pool: 'small', size: 64, owner: 1 });
  const keep = m.alloc({ pool: 'small', size: 64, owner: 1 });
  const l = m.alloc({ pool: 'small', size: 20000, owner: 1 });
  const a = s.arena!;
  const before = JSON.stringify(a.stats());
  t.throws(() => a.free(s.addr + 8), RangeError, 'not a region start');
  t.throws(() => a.free(l.addr + PAGE), RangeError, 'inside a large extent');
  t.throws(() => a.free(l.addr + 16), RangeError, 'not a large start');
  t.throws(() => a.free(0x1000), RangeError, 'not in the arena');
  t.equal(JSON.stringify(a.stats()), before);
  m.free(s);
  t.throws(() => a.free(s.addr), RangeError, 'double free of a region');
  t.throws(() => m.free(s), BufferdError);
  m.free(keep);
  m.free(l);
  t.same(m.checkInvariants(), []);
});
