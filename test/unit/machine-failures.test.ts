/**
 * Failed allocations: all or nothing, dirty chunks purged first, and ENOMEM
 * messages that name the pool, the request and what is free.
 */
import t from 'tap';
import { Machine } from '../../daemon/alloc/machine.js';
import { MiB, H, smallConfig, eager, snap, sameSnap, poolStat, hpStat, regionFree, errorOf } from '../helpers/machine.js';

t.test('a failed allocation changes nothing, even after part of it was found', async (t) => {
  // decay 0: no pool holds dirty chunks, so nothing at all may change
  const m = new Machine(eager(smallConfig()));
  m.setHugepages(H, 14);
  const one = m.alloc({ pool: 'default', size: 1, owner: 1 });
  t.equal(regionFree(m, 'dram'), 2 * MiB, 'the 1-byte buffer took a 2 MiB chunk');
  // an aligned first extent is found, the rest is not: nothing may stay converted or counted
  const before = snap(m);
  t.equal(errorOf(() => m.alloc({ pool: 'uc', size: 4 * MiB, align: 64 * 1024, owner: 1 })).code, 'ENOMEM');
  sameSnap(t, snap(m), before, 'nothing changed');
  t.equal(poolStat(m, 'uc').conversions, 0);
  t.same(m.checkInvariants(), []);
  // client 2 has used 'uc' (its arena stays, empty), then the region runs out
  m.free(m.alloc({ pool: 'uc', size: 100, owner: 2 }));
  t.match(poolStat(m, 'uc'), { arenas: 1, mapped: 0, purges: 1 });
  const rest = m.alloc({ pool: 'uc', size: 2 * MiB, owner: 1 });
  t.equal(regionFree(m, 'dram'), 0);
  const big = m.alloc({ pool: 'default', size: 1.5 * MiB, owner: 1 });
  const before1 = snap(m);
  for (const [pool, size, owner] of [
    ['uc', 100, 2], // an existing empty arena: it stays, with its history
    ['uc', 3000, 2], // a size class the arena never had: no bin is left behind
    ['uc', 100, 3], // a new client: no arena is left behind
    ['default', 1.5 * MiB, 1], // no room in the client's chunk, and no new chunk
    ['default', 2 * MiB, 1], // direct
  ] as const) {
    const e = errorOf(() => m.alloc({ pool, size, owner }));
    t.equal(e.code, 'ENOMEM', `${pool} ${size} for client ${owner}`);
    sameSnap(t, snap(m), before1, 'nothing changed');
  }
  t.same(m.checkInvariants(), []);
  for (const b of [one, rest, big]) m.free(b);
  t.same(m.checkInvariants(), []);
  // a contiguous hugepage request gathers a surplus page, then finds no run
  const m2 = new Machine(eager(smallConfig()));
  m2.setHugepages(H, 12); // every 2 MiB block above the 'low' zone
  const bufs = Array.from({ length: 12 }, () => m2.alloc({ pool: 'huge', size: H, owner: 1 }));
  m2.free(bufs[9]!);
  m2.free(bufs[11]!);
  const before2 = snap(m2);
  t.equal(errorOf(() => m2.alloc({ pool: 'hcontig', size: 3 * H, owner: 1 })).code, 'ENOMEM');
  sameSnap(t, snap(m2), before2, 'the surplus page gathered for the attempt is the one given back');
  t.same(m2.checkInvariants(), []);
  for (const b of bufs) if (m2.buffer(b.id) !== undefined) m2.free(b);
});

t.test('a failed allocation purges the pool\'s dirty chunks first, and nothing else', async (t) => {
  let clock = 0;
  const m = new Machine(smallConfig(), () => clock);
  const start = snap(m);
  // a small buffer in 'huge' takes a hugepage as its chunk; freed, the chunk stays dirty
  m.free(m.alloc({ pool: 'huge', size: 1, owner: 1 }));
  t.match(poolStat(m, 'huge'), { mapped: H, dirty: H, pages: 1, purges: 0 });
  t.match(hpStat(m), { free: 3, inUse: 1 });
  // another pool's failure does not touch it (and changes nothing)
  const before = snap(m);
  const wc = errorOf(() => m.alloc({ pool: 'wc', size: 7 * H, owner: 1 }));
  t.equal(wc.code, 'ENOMEM');
  sameSnap(t, snap(m), before, "'wc' holds no dirty chunk: nothing changed");
  // 8 hugepages cannot be had even with the dirty one: it is purged, the request still fails
  const e = errorOf(() => m.alloc({ pool: 'huge', size: 8 * H, owner: 1 }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, /^pool 'huge': cannot allocate 16 MiB \(16777216 bytes\): 4 of 4 2 MiB hugepages available/);
  t.match(poolStat(m, 'huge'), { mapped: 0, dirty: 0, pages: 0, purges: 1, buffers: 0, requested: 0, arenas: 1 });
  t.match(hpStat(m), { free: 4, inUse: 0, surplus: 0, reserved: 0 });
  const s0 = JSON.parse(start);
  const s1 = JSON.parse(snap(m));
  t.same(s1.r, s0.r, 'regions as at the start');
  t.same(s1.h, s0.h, 'hugepages as at the start');
  t.same(m.checkInvariants(), []);
  // when the purged page is what was missing, the retry succeeds
  m.free(m.alloc({ pool: 'huge', size: 100, owner: 1 }));
  t.equal(poolStat(m, 'huge').dirty, H);
  const all = m.alloc({ pool: 'huge', size: 7 * H, owner: 1 });
  t.match(all, { kind: 'direct', usize: 7 * H });
  t.match(poolStat(m, 'huge'), { dirty: 0, purges: 2, directBuffers: 1, mapped: 7 * H });
  t.match(hpStat(m), { total: 7, surplus: 3, free: 0 });
  m.free(all);
  t.same(m.checkInvariants(), []);
});

t.test('ENOMEM names the pool, the request and what is free', async (t) => {
  const m = new Machine(smallConfig(), () => 0);
  const uc = errorOf(() => m.alloc({ pool: 'uc', size: 40 * MiB, owner: 1 }));
  t.equal(uc.code, 'ENOMEM');
  const dramFree = regionFree(m, 'dram');
  t.equal(dramFree, 24 * MiB);
  t.equal(uc.message, `pool 'uc': cannot allocate 40 MiB (41943040 bytes): 24 MiB free in region 'dram', largest contiguous free block 4 MiB`);
  t.match(uc.details, { pool: 'uc', requested: 40 * MiB, free: dramFree, largestFree: 4 * MiB, requestedPages: 10240 });

  const huge = errorOf(() => m.alloc({ pool: 'huge', size: 8 * H, owner: 1 }));
  t.equal(huge.code, 'ENOMEM');
  t.match(huge.message, /^pool 'huge': cannot allocate 16 MiB \(16777216 bytes\): 4 of 4 2 MiB hugepages available \(free 4, reserved 0, surplus 0 of overcommit 3\)/);
  t.match(huge.message, /up to 3 more as surplus if region 'dram' has contiguous 2 MiB blocks/);
  t.match(huge.details, { pool: 'huge', requested: 16 * MiB, hugepagesFree: 4, hugepagesAvailable: 4, hugepagesTotal: 4, largestFreeRun: 4, requestedHugepages: 8 });
  t.ok('hugepagesSurplus' in huge.details! && 'hugepagesOvercommit' in huge.details!, 'details carry every figure the message names, surplus and overcommit too');

  // a contiguous hugepage pool: two free hugepages, but not adjacent
  m.setHugepages(H, 4, 0);
  const bufs = [0, 1, 2, 3].map(() => m.alloc({ pool: 'huge', size: H, owner: 1 }));
  m.free(bufs[0]!);
  m.free(bufs[2]!);
  const hc = errorOf(() => m.alloc({ pool: 'hcontig', size: 2 * H, owner: 1 }));
  t.equal(hc.code, 'ENOMEM');
  t.equal(
    hc.message,
    `pool 'hcontig': cannot allocate 4 MiB (4194304 bytes): 2 of 4 2 MiB hugepages available ` +
      `(free 2, reserved 0, surplus 0 of overcommit 0), longest run of adjacent free hugepages 1`,
  );
  t.match(hc.details, { pool: 'hcontig', requested: 4 * MiB, hugepagesFree: 2, largestFreeRun: 1, requestedHugepages: 2 });

  // a small request whose arena needs a chunk: one hugepage
  const w = m.alloc({ pool: 'wc', size: 2 * H, owner: 1 });
  const ws = errorOf(() => m.alloc({ pool: 'wc', size: 100, owner: 1 }));
  t.equal(
    ws.message,
    `pool 'wc': cannot allocate 100 B (100 bytes): 0 of 4 2 MiB hugepages available (free 0, reserved 0, surplus 0 of overcommit 0), ` +
      `longest run of adjacent free hugepages 0`,
  );
  t.match(ws.details, { pool: 'wc', requested: 100, hugepagesAvailable: 0, requestedHugepages: 1 });
  m.free(w);

  // a contiguous 4K pool: enough free in total, but not in one piece
  const c1 = m.alloc({ pool: 'contig', size: 3 * MiB, owner: 1 });
  t.equal(c1.kind, 'direct');
  // no 2 MiB block is left: the arena takes a chunk of just the size it needs
  const c2 = m.alloc({ pool: 'contig', size: 512 * 1024, owner: 1 });
  t.equal(c2.kind, 'large');
  t.match(poolStat(m, 'contig'), { mapped: 3.5 * MiB, retained: 0, active: 3.5 * MiB });
  m.free(c1);
  const cg = errorOf(() => m.alloc({ pool: 'contig', size: 3 * MiB, owner: 1 }));
  t.equal(cg.code, 'ENOMEM');
  t.equal(cg.message, `pool 'contig': cannot allocate 3 MiB (3145728 bytes): 3.5 MiB free in region 'carve', largest contiguous free block 2 MiB`);
  t.match(cg.details, { pool: 'contig', requested: 3 * MiB, free: 3.5 * MiB, largestFree: 2 * MiB, requestedPages: 768 });
  // a small request when the region is used up reports what the page source has free
  const c3 = m.alloc({ pool: 'contig', size: 2 * MiB, owner: 1 });
  const c4 = m.alloc({ pool: 'contig', size: 1 * MiB, owner: 1 });
  const c5 = m.alloc({ pool: 'contig', size: 512 * 1024, owner: 1 });
  t.equal(regionFree(m, 'carve'), 0);
  t.match(poolStat(m, 'contig'), { mapped: 4 * MiB, retained: 0, arenas: 1 });
  t.equal(m.poolDetail('contig').arenas[0]!.chunks, 3, 'three chunks of just the size needed');
  const cs = errorOf(() => m.alloc({ pool: 'contig', size: 1, owner: 1 }));
  t.equal(cs.message, `pool 'contig': cannot allocate 1 B (1 bytes): 0 B free in region 'carve', largest contiguous free block 0 B`);
  t.match(cs.details, { pool: 'contig', requested: 1, free: 0, largestFree: 0, requestedPages: 1 });
  for (const b of [c2, c3, c4, c5]) m.free(b);

  // maxBytes: each client's arena maps a chunk of its own
  const lows = [1, 2, 3].map((owner) => m.alloc({ pool: 'low', size: 1, owner }));
  t.match(poolStat(m, 'low'), { mapped: 6 * MiB, arenas: 3, requested: 3 });
  const lim = errorOf(() => m.alloc({ pool: 'low', size: 1, owner: 4 }));
  t.equal(lim.message, `pool 'low': cannot allocate 1 B (1 bytes): the pool's limit maxBytes 6 MiB would be exceeded (6 MiB held)`);
  t.match(lim.details, { pool: 'low', requested: 1, maxBytes: 6 * MiB, inUse: 6 * MiB });
  const limd = errorOf(() => m.alloc({ pool: 'low', size: 2 * MiB, owner: 1 }));
  t.match(limd.message, /^pool 'low': cannot allocate 2 MiB \(2097152 bytes\): the pool's limit maxBytes 6 MiB would be exceeded/);
  const more = m.alloc({ pool: 'low', size: 1000, owner: 1 });
  t.equal(Math.floor(more.addr / (2 * MiB)), Math.floor(lows[0]!.addr / (2 * MiB)), 'room in its own chunk');
  for (const b of [...lows, more]) m.free(b);

  m.free(bufs[1]!);
  m.free(bufs[3]!);
  t.same(m.checkInvariants(), []);
});
