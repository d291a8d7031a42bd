/**
 * The machine's rules, one deterministic test each.
 */
import t from 'tap';
import { Machine } from '../../daemon/alloc/machine.js';
import { MiB, H, withPools, defaultConfig, smallConfig, snap, poolStat, hpStat, regionFree, overlaps } from '../helpers/machine.js';

t.test('a 1-byte buffer maps a chunk; usable sizes and kinds follow the size classes', async (t) => {
  let clock = 0;
  const m = new Machine(smallConfig(), () => clock);
  const free0 = regionFree(m, 'dram');
  const a = m.alloc({ pool: 'default', size: 1, owner: 1 });
  t.match(a, { kind: 'small', usize: 8, size: 1, blocks: [], reservedPages: 0 });
  t.not(a.arena, null);
  t.same(a.segments, [{ addr: a.addr, len: 1 }]);
  t.match(poolStat(m, 'default'), {
    pages: 512,
    mapped: 2 * MiB,
    resident: 2 * MiB,
    active: 4096,
    allocated: 8,
    requested: 1,
    dirty: 0,
    retained: 2 * MiB - 4096,
    arenas: 1,
    buffers: 1,
    directBuffers: 0,
    fragmentation: 512,
  });
  t.equal(regionFree(m, 'dram'), free0 - 2 * MiB, 'one 2 MiB buddy block');
  const b = m.alloc({ pool: 'default', size: 8, owner: 1 });
  t.equal(b.addr, a.addr + 8, 'the next region of the same slab');
  const cases: [string, number, number, string, number][] = [
    ['default', 14336, 1, 'small', 14336],
    ['default', 14337, 1, 'large', 16384],
    ['default', 100, 4096, 'small', 4096],
    ['default', 1, 8192, 'large', 16384],
    ['default', 1.5 * MiB, 1, 'large', 1.5 * MiB],
    ['default', 1.75 * MiB + 1, 1, 'direct', 1.75 * MiB + 4096], // class 2 MiB: direct, in whole pages
    ['default', 1, 4 * MiB, 'direct', 4096],
    ['default', 2 * MiB + 1, 1, 'direct', 2 * MiB + 4096],
    ['huge', 1, 1, 'small', 8],
    ['huge', 1.5 * MiB, 1, 'large', 1.5 * MiB],
    ['huge', H - 1, 1, 'direct', H],
    ['huge', H + 1, 1, 'direct', 2 * H],
  ];
  for (const [pool, size, align, kind, usize] of cases) {
    const x = m.alloc({ pool, size, align, owner: 1 });
    t.match(x, { kind, usize }, `${pool}: ${size} bytes aligned to ${align}`);
    t.equal(x.segments[0]!.addr % align, 0, 'aligned');
    if (kind === 'direct') t.match(x, { addr: -1, arena: null });
    else t.equal(x.blocks.length, 0, 'arena buffers own no blocks');
    t.same(m.checkInvariants(), []);
    m.free(x);
  }
  m.free(a);
  m.free(b);
  t.same(m.checkInvariants(), []);
  clock += 10_000;
  m.purgeExpired();
  t.equal(regionFree(m, 'dram'), free0);
});

t.test('empty chunks are dirty until they decay; purgeExpired follows the injected clock', async (t) => {
  let clock = 1000;
  const m = new Machine(smallConfig(), () => clock);
  const free0 = regionFree(m, 'dram');
  const a = m.alloc({ pool: 'default', size: 100, owner: 1 });
  const addr = a.addr;
  clock = 1100;
  m.free(a);
  t.match(poolStat(m, 'default'), { mapped: 2 * MiB, dirty: 2 * MiB, active: 0, retained: 0, allocated: 0, requested: 0, purges: 0, arenas: 1 });
  t.equal(m.nextDecayDeadline(), 11_100, 'due dirtyDecayMs (10 s) after it emptied');
  t.same(m.checkInvariants(), []);
  clock = 11_099;
  t.equal(m.purgeExpired(), 0, 'not yet');
  t.equal(poolStat(m, 'default').dirty, 2 * MiB);
  // a dirty chunk is reused before it decays
  const b = m.alloc({ pool: 'default', size: 100, owner: 1 });
  t.equal(b.addr, addr, 'the dirty chunk is used again');
  t.match(poolStat(m, 'default'), { dirty: 0, mapped: 2 * MiB, purges: 0 });
  t.equal(m.nextDecayDeadline(), null);
  m.free(b);
  t.equal(m.nextDecayDeadline(), 21_099, 'the clock restarts when it empties again');
  clock = 21_099;
  t.equal(m.purgeExpired(), 512, 'the chunk (512 pages) goes back');
  t.match(poolStat(m, 'default'), { mapped: 0, dirty: 0, pages: 0, purges: 1, arenas: 1 });
  t.equal(regionFree(m, 'dram'), free0);
  t.equal(m.nextDecayDeadline(), null);
  t.same(m.checkInvariants(), []);

  // a chunk with a live buffer is never purged, however long it waits
  const c = m.alloc({ pool: 'default', size: 100, owner: 1 });
  clock += 1e9;
  t.equal(m.purgeExpired(), 0);
  t.equal(poolStat(m, 'default').mapped, 2 * MiB);
  m.free(c);
  clock += 10_000;
  t.equal(m.purgeExpired(), 512);

  // decay 0 purges at once; −1 never decays
  const m2 = new Machine(
    withPools(smallConfig(), (p) => ({ dirtyDecayMs: p.name === 'default' ? 0 : p.name === 'uc' ? -1 : p.dirtyDecayMs })),
    () => clock,
  );
  m2.free(m2.alloc({ pool: 'default', size: 1, owner: 1 }));
  t.match(poolStat(m2, 'default'), { mapped: 0, dirty: 0, purges: 1 }, 'decay 0: purged on free');
  m2.free(m2.alloc({ pool: 'uc', size: 1, owner: 1 }));
  t.equal(m2.nextDecayDeadline(), null, 'decay −1: no deadline');
  clock += 1e12;
  t.equal(m2.purgeExpired(), 0);
  t.match(poolStat(m2, 'uc'), { mapped: 2 * MiB, dirty: 2 * MiB, purges: 0 }, 'decay −1: kept');
  m2.ownerGone(1);
  t.match(poolStat(m2, 'uc'), { mapped: 0, dirty: 0, purges: 1, arenas: 0 }, 'until the client goes away');
  t.same(m2.checkInvariants(), []);

  // direct buffers go back at once, without decay
  const d = m.alloc({ pool: 'default', size: 2 * MiB, owner: 1 });
  t.match(d, { kind: 'direct', usize: 2 * MiB });
  t.match(poolStat(m, 'default'), { directBuffers: 1, mapped: 2 * MiB, active: 2 * MiB, allocated: 2 * MiB, pages: 512 });
  m.free(d);
  t.match(poolStat(m, 'default'), { directBuffers: 0, mapped: 0, dirty: 0 });
  t.equal(regionFree(m, 'dram'), free0);
});

t.test('arenas: one per client (or shared); a gone client\'s arena is purged and dropped once empty', async (t) => {
  let clock = 0;
  const m = new Machine(smallConfig(), () => clock);
  const free0 = regionFree(m, 'dram');
  const a1 = m.alloc({ pool: 'default', size: 64, owner: 1 });
  const a2 = m.alloc({ pool: 'default', size: 64, owner: 2 });
  t.not(Math.floor(a1.addr / (2 * MiB)), Math.floor(a2.addr / (2 * MiB)), 'clients never share a chunk');
  t.not(a1.arena, a2.arena);
  t.match(poolStat(m, 'default'), { arenas: 2, mapped: 4 * MiB });
  t.same(m.poolDetail('default').arenas.map((a) => [a.owner, a.live, a.chunks]), [[1, 1, 1], [2, 1, 1]]);
  // client 1 goes away with a live buffer: its arena stays until the buffer is freed
  m.ownerGone(1);
  t.equal(poolStat(m, 'default').arenas, 2);
  m.free(a1);
  t.match(poolStat(m, 'default'), { arenas: 1, mapped: 2 * MiB, dirty: 0 }, 'purged and dropped without waiting for decay');
  t.same(m.poolDetail('default').arenas.map((a) => a.owner), [2]);
  // client 2 frees first, then goes away
  m.free(a2);
  t.equal(poolStat(m, 'default').dirty, 2 * MiB);
  m.ownerGone(2);
  t.match(poolStat(m, 'default'), { arenas: 0, mapped: 0, dirty: 0, purges: 2 });
  t.equal(regionFree(m, 'dram'), free0);
  m.ownerGone(3);
  t.same(m.checkInvariants(), []);

  // a shared arena packs every client into one chunk and outlives them
  const s = new Machine(withPools(smallConfig(), () => ({ arena: 'shared' })), () => clock);
  const b1 = s.alloc({ pool: 'default', size: 64, owner: 1 });
  const b2 = s.alloc({ pool: 'default', size: 64, owner: 2 });
  t.equal(b1.arena, b2.arena);
  t.equal(b2.addr, b1.addr + 64, 'neighbours in one slab');
  t.match(poolStat(s, 'default'), { arenas: 1, mapped: 2 * MiB, active: 4096 });
  t.same(s.poolDetail('default').arenas.map((a) => a.owner), [0]);
  s.free(b1);
  s.ownerGone(1);
  s.free(b2);
  s.ownerGone(2);
  t.match(poolStat(s, 'default'), { arenas: 1, mapped: 2 * MiB, dirty: 2 * MiB }, 'left to decay');
  clock += 10_000;
  s.purgeExpired();
  t.match(poolStat(s, 'default'), { arenas: 1, mapped: 0 });
  t.same(s.checkInvariants(), []);
});

t.test('buffers are zeroed when their pages or regions are reused', async (t) => {
  const m = new Machine(defaultConfig(), () => 0);
  for (const [pool, size] of [
    ['default', 3 * 4096 - 100],
    ['default', 100],
    ['huge', 5000],
    ['huge', H + 12345],
    ['contig', 5 * 4096 + 7],
    ['contig', 3 * MiB],
  ] as const) {
    const a = m.alloc({ pool, size, owner: 1 });
    m.fill(a, 0, size, 0xff);
    t.ok(m.read(a, 0, size).every((x) => x === 0xff), `${pool} ${a.kind}: written`);
    const segs = a.segments.map((s) => ({ ...s }));
    m.free(a);
    const b = m.alloc({ pool, size, owner: 1 });
    t.ok(overlaps(segs, b.segments), `${pool} ${b.kind}: the same memory is reused`);
    t.ok(m.read(b, 0, size).every((x) => x === 0), `${pool} ${b.kind}: reads as zeros`);
    m.fill(b, 0, size, 0xab);
    m.free(b);
    // also when the buffer is backed lazily
    if (pool === 'huge' && b.kind === 'direct') {
      const c = m.alloc({ pool, size, owner: 1, populate: false });
      t.same(c.segments, []);
      const data = m.read(c, 0, size);
      t.ok(overlaps(segs, c.segments), 'huge (lazy): the same pages are reused');
      t.ok(data.every((x) => x === 0), 'huge (lazy): reads as zeros');
      m.free(c);
    }
    t.same(m.checkInvariants(), []);
  }
  // a region of a slab that stays in use is handed out again
  const keep = m.alloc({ pool: 'default', size: 100, owner: 2 });
  const r = m.alloc({ pool: 'default', size: 100, owner: 2 });
  t.equal(r.addr, keep.addr + 112, 'the next region (class 112)');
  m.fill(r, 0, 100, 0xee);
  m.free(r);
  const r2 = m.alloc({ pool: 'default', size: 97, owner: 2 });
  t.equal(r2.addr, r.addr, 'the same region');
  t.ok(m.read(r2, 0, 97).every((x) => x === 0), 'reads as zeros');
  // the tail of the region beyond the old size is zeroed too (usize bytes)
  m.fill(r2, 0, 97, 0x11);
  m.free(r2);
  const r3 = m.alloc({ pool: 'default', size: 112, owner: 2 });
  t.equal(r3.addr, r.addr);
  t.ok(m.read(r3, 0, 112).every((x) => x === 0), 'all usable bytes read as zeros');
  // the pages of a freed slab become a large extent
  const slab = m.alloc({ pool: 'default', size: 3000, owner: 3 }); // class 3072: 4 regions in a 3-page slab
  const slab2 = m.alloc({ pool: 'default', size: 3000, owner: 3 });
  m.fill(slab, 0, 3000, 0x77);
  m.fill(slab2, 0, 3000, 0x77);
  const slabStart = slab.addr;
  m.free(slab);
  m.free(slab2);
  const large = m.alloc({ pool: 'default', size: 16 * 1024, owner: 3 });
  t.equal(large.kind, 'large');
  t.equal(large.addr, slabStart, 'carved where the slab was');
  t.ok(m.read(large, 0, 16 * 1024).every((x) => x === 0), 'reads as zeros');
  for (const b of [keep, r3, large]) m.free(b);
  t.same(m.checkInvariants(), []);
});

t.test('a page never carries two cache policies: hugepages are converted between pools', async (t) => {
  let clock = 0;
  const m = new Machine(defaultConfig(), () => clock);
  t.equal(poolStat(m, 'wc').conversions, 0);
  const a = m.alloc({ pool: 'huge', size: H, owner: 1 });
  t.equal(a.kind, 'direct');
  const page = a.segments[0]!.addr;
  t.equal(poolStat(m, 'huge').conversions, 0, 'write-back pages need no conversion for a write-back pool');
  m.free(a);
  t.same(m.checkInvariants(), []);
  const b = m.alloc({ pool: 'wc', size: H, owner: 1 });
  t.equal(b.segments[0]!.addr, page, 'the page freed by huge');
  t.equal(b.blocks[0]!.attr, 'writecombine');
  t.equal(poolStat(m, 'wc').conversions, 1, 'converted once');
  t.ok(poolStat(m, 'wc').conversionCostUs > 0, 'at a cost');
  t.same(m.checkInvariants(), []);
  m.free(b);
  t.same(m.checkInvariants(), []);
  // the page waits in the hugepage pool as write-combine
  const c = m.alloc({ pool: 'wc', size: H, owner: 1 });
  t.equal(c.segments[0]!.addr, page, 'wc reuses its own page');
  t.equal(poolStat(m, 'wc').conversions, 1, 'without a conversion');
  const d = m.alloc({ pool: 'huge', size: H, owner: 1 });
  t.not(d.segments[0]!.addr, page);
  t.equal(poolStat(m, 'huge').conversions, 0);
  t.same(m.checkInvariants(), []);
  m.free(c);
  m.free(d);
  // a write-back pool takes the write-combine page only when nothing else is free
  const all = m.alloc({ pool: 'huge', size: hpStat(m).available * H, owner: 1 });
  t.equal(poolStat(m, 'huge').conversions, 1, 'the one write-combine page is converted back');
  t.same(m.checkInvariants(), []);
  m.free(all);
  t.same(m.checkInvariants(), []);

  // small buffers of two policies never share a hugepage: each pool's arena has chunks of its own
  const hs = m.alloc({ pool: 'huge', size: 100, owner: 1 });
  const ws = m.alloc({ pool: 'wc', size: 100, owner: 1 });
  t.not(Math.floor(hs.addr / H), Math.floor(ws.addr / H));
  t.same(m.checkInvariants(), []);
  m.free(ws);
  // a hugepage used as a chunk goes back to the hugepage pool only when purged
  const chunk = hs.addr - (hs.addr % H);
  m.free(hs);
  t.match(poolStat(m, 'huge'), { dirty: H, mapped: H });
  const conv = poolStat(m, 'wc').conversions;
  const avail = hpStat(m).available;
  const w = m.alloc({ pool: 'wc', size: avail * H, owner: 2 });
  t.notOk(overlaps(w.segments, [{ addr: chunk, len: H }]), "the dirty chunk stays 'huge''s");
  t.same(m.checkInvariants(), []);
  m.free(w);
  const conv2 = poolStat(m, 'wc').conversions;
  t.ok(conv2 > conv, 'write-back pages were converted');
  clock += 10_000;
  t.ok(m.purgeExpired() >= 512, 'the chunks decay');
  t.match(poolStat(m, 'huge'), { dirty: 0, mapped: 0 });
  t.match(poolStat(m, 'wc'), { dirty: 0, mapped: 0 });
  t.equal(hpStat(m).available, avail + 2, "the chunks of 'huge' and 'wc' are back in the hugepage pool");
  const w2 = m.alloc({ pool: 'wc', size: (avail + 2) * H, owner: 2 });
  t.ok(overlaps(w2.segments, [{ addr: chunk, len: H }]), 'now write-combine may have it');
  t.equal(poolStat(m, 'wc').conversions, conv2 + 1, 'converted: it is the one write-back page');
  t.same(m.checkInvariants(), []);
  m.free(w2);
  t.same(m.checkInvariants(), []);
});

t.test('populate: false reserves hugepages for direct buffers and backs them on first touch', async (t) => {
  let clock = 0;
  const m = new Machine(smallConfig(), () => clock);
  const start = snap(m);
  const a = m.alloc({ pool: 'huge', size: H + 1, owner: 1, populate: false });
  t.match(a, { kind: 'direct', usize: 2 * H, reservedPages: 2, blocks: [] });
  t.same([hpStat(m).reserved, hpStat(m).inUse, hpStat(m).free], [2, 0, 4], 'reserved, not in use');
  t.same(a.segments, []);
  t.match(
    poolStat(m, 'huge'),
    { pages: 0, resident: 0, mapped: 2 * H, active: 2 * H, allocated: 2 * H, requested: H + 1, directBuffers: 1 },
    'the reservation counts at once; nothing is resident yet',
  );
  t.same(m.checkInvariants(), []);
  m.touch(a);
  t.same([hpStat(m).reserved, hpStat(m).inUse, hpStat(m).free], [0, 2, 2], 'the reservation is consumed');
  t.equal(a.reservedPages, 0);
  t.equal(a.segments.reduce((n, s) => n + s.len, 0), H + 1);
  t.match(poolStat(m, 'huge'), { pages: 2, resident: 2 * H, mapped: 2 * H });
  m.touch(a);
  t.equal(hpStat(m).inUse, 2, 'a second touch does nothing');
  t.same(m.checkInvariants(), []);
  // beyond the free pages: surplus is gathered for the reservation
  const b = m.alloc({ pool: 'wc', size: 5 * H, owner: 1, populate: false });
  t.same([hpStat(m).reserved, hpStat(m).surplus, hpStat(m).total], [5, 3, 7]);
  t.equal(regionFree(m, 'dram'), 32 * MiB - 7 * H);
  t.same(m.checkInvariants(), []);
  // freeing an untouched buffer unreserves and returns the surplus
  m.free(b);
  t.same([hpStat(m).reserved, hpStat(m).surplus, hpStat(m).total, hpStat(m).free], [0, 0, 4, 2]);
  t.equal(poolStat(m, 'wc').conversions, 0, 'untouched pages were never converted');
  t.match(poolStat(m, 'wc'), { mapped: 0, directBuffers: 0 });
  // only direct buffers of hugepage pools without `contiguous` are lazy
  const small = m.alloc({ pool: 'huge', size: 100, owner: 1, populate: false });
  t.match(small, { kind: 'small', reservedPages: 0 });
  t.equal(small.segments.length, 1, 'an arena buffer is backed at once');
  t.equal(hpStat(m).inUse, 3, 'its chunk is a hugepage in use');
  const large = m.alloc({ pool: 'huge', size: H / 2, owner: 1, populate: false });
  t.match(large, { kind: 'large', reservedPages: 0 });
  const d4k = m.alloc({ pool: 'default', size: 2 * MiB, owner: 1, populate: false });
  t.match(d4k, { kind: 'direct', reservedPages: 0 });
  t.equal(d4k.segments.reduce((n, s) => n + s.len, 0), 2 * MiB, '4 KiB pools have nothing to reserve');
  const hc = m.alloc({ pool: 'hcontig', size: H, owner: 1, populate: false });
  t.match(hc, { kind: 'direct', reservedPages: 0 });
  t.equal(hc.blocks.length, 1, 'contiguous pools back at once');
  t.same(m.checkInvariants(), []);
  for (const x of [a, small, large, d4k, hc]) m.free(x);
  clock += 10_000;
  m.purgeExpired();
  t.same(m.checkInvariants(), []);
  const end = JSON.parse(snap(m));
  const s0 = JSON.parse(start);
  t.same(end.r, s0.r, 'regions as at the start');
  t.same(end.h, s0.h, 'hugepages as at the start');
});
