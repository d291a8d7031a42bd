/**
 * The sub-allocator through the real daemon: buffers of many sizes side by
 * side in slabs, large extents and direct pages, each filled with its own
 * pattern and read back byte for byte (neighbours never clobber each
 * other), with the status counters adding up before and after.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { connect, type HandleInfo, type PoolStatus } from '../../client/index.js';
import { alignedUsize, SMALL_MAXCLASS } from '../../daemon/alloc/sizeclasses.js';

const MiB = 2 ** 20;
const SIZES = [1, 7, 8, 9, 16, 100, 128, 129, 1000, 4095, 4096, 4097, 14336, 14337, 20000, 100000, MiB, 2 * MiB - 1, 2 * MiB, 5 * MiB + 3];
const POOLS = ['default', 'huge', 'dma32'];

/** A pattern unique to buffer k: no two buffers agree at any offset below 251 × 256. */
function pattern(k: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (k * 37 + 1 + i + Math.floor(i / 251) * 3) & 0xff;
  return b;
}

t.test('many sizes side by side: written, read back intact, counted, freed', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info' });
  const c = await connect({ socket: d.socket, name: 'suballoc' });
  t.teardown(() => c.disconnect());
  const pool = (st: { pools: PoolStatus[] }, name: string) => st.pools.find((p) => p.name === name)!;
  const st0 = await c.status();

  const bufs: HandleInfo[] = [];
  for (const name of POOLS) for (const size of SIZES) bufs.push(await c.alloc({ pool: name, size }));
  // a second round interleaved across pools, so classes get several neighbours
  for (const size of SIZES.slice(0, 14)) for (const name of POOLS) bufs.push(await c.alloc({ pool: name, size }));

  for (const b of bufs) {
    const want = alignedUsize(b.size, 1);
    const kind = want <= SMALL_MAXCLASS ? 'small' : want < 2 * MiB ? 'large' : 'direct';
    if (b.kind !== kind) t.fail(`${b.pool} size ${b.size}: kind ${b.kind}, expected ${kind}`);
    if (kind !== 'direct' && b.usize !== want) t.fail(`${b.pool} size ${b.size}: usize ${b.usize}, expected ${want}`);
    if (kind === 'direct' && b.usize !== Math.ceil(b.size / b.pageSize) * b.pageSize) t.fail(`${b.pool} size ${b.size}: direct usize ${b.usize}`);
    if (b.segments.reduce((a, s) => a + s.len, 0) !== b.size) t.fail(`${b.pool} size ${b.size}: segments`);
    if (b.pool === 'dma32' && !b.segments.every((s) => s.addr + s.len <= 2 ** 32)) t.fail('dma32 buffer above 4 GiB');
  }
  t.pass(`${bufs.length} buffers allocated with the expected kinds and usable sizes`);

  // no two buffers share a byte of physical memory
  const spans = bufs.flatMap((b) => b.segments.map((s) => ({ ...s, id: b.handle }))).sort((x, y) => x.addr - y.addr);
  const overlaps = spans.filter((s, i) => i > 0 && s.addr < spans[i - 1]!.addr + spans[i - 1]!.len);
  t.same(overlaps, [], 'no overlapping segments');

  await Promise.all(bufs.map((b, k) => c.write(b.handle, 0, pattern(k, b.size))));
  let intact = 0;
  for (const [k, b] of bufs.entries()) {
    const got = await c.read(b.handle, 0, b.size);
    if (got.equals(pattern(k, b.size))) intact++;
    else t.fail(`${b.pool} buffer of ${b.size} bytes: pattern damaged at offset ${got.findIndex((x, i) => x !== pattern(k, b.size)[i])}`);
  }
  t.equal(intact, bufs.length, 'every buffer reads back exactly what was written into it');

  const st = await c.status();
  for (const name of POOLS) {
    const mine = bufs.filter((b) => b.pool === name);
    const infos = await Promise.all(mine.map((b) => c.info(b.handle)));
    const p = pool(st, name);
    t.equal(p.requested, mine.reduce((a, b) => a + b.size, 0), `${name}: requested = sum of sizes`);
    t.equal(p.allocated, infos.reduce((a, b) => a + b.usize, 0), `${name}: allocated = sum of usable sizes`);
    t.equal(p.buffers, mine.length);
    t.equal(p.directBuffers, mine.filter((b) => b.kind === 'direct').length);
    t.ok(p.requested <= p.allocated && p.allocated <= p.active && p.active <= p.mapped, `${name}: requested ≤ allocated ≤ active ≤ mapped`);
    t.equal(p.active + p.dirty + p.retained, p.mapped, `${name}: active + dirty + retained = mapped`);
    t.equal(p.arenas, 1, `${name}: one arena, this client's`);
    t.equal(p.nmalloc - p.ndalloc, p.buffers);

    const detail = (await c.status({ pool: name })).pool!;
    t.equal(detail.name, name);
    t.equal(detail.directThreshold, 2 * MiB);
    t.same(detail.arenas.map((a) => a.owner), [c.id]);
    const perClass = new Map<number, number>();
    for (const b of infos) if (b.kind === 'small') perClass.set(b.usize, (perClass.get(b.usize) ?? 0) + 1);
    t.same(
      detail.bins.filter((b) => b.curregs > 0).map((b) => [b.size, b.curregs]),
      [...perClass.entries()].sort((x, y) => x[0] - y[0]),
      `${name}: bin curregs = small buffers per class`,
    );
    for (const b of detail.bins) if (b.nonfull > b.curslabs || b.curregs > b.curslabs * b.nregs) t.fail(`${name}: bin ${b.size} stats`);
    t.equal(detail.arenas[0]!.live, mine.length - mine.filter((b) => b.kind === 'direct').length, `${name}: arena live = small + large buffers`);
  }

  for (const b of bufs) await c.close(b.handle);
  const end = await c.status();
  for (const name of POOLS) {
    const p = pool(end, name);
    t.match(p, { requested: 0, allocated: 0, active: 0, buffers: 0, directBuffers: 0 }, `${name}: back to zero`);
    t.equal(p.mapped, p.dirty, `${name}: what is still mapped is dirty, waiting for decay`);
    const bins = (await c.status({ pool: name })).pool!.bins;
    t.ok(bins.every((b) => b.curregs === 0 && b.curslabs === 0), `${name}: no regions or slabs left`);
  }
  t.equal(pool(end, 'huge').pages, pool(end, 'huge').mapped / (2 * MiB));
  t.same(
    end.pools.filter((p) => !POOLS.includes(p.name)),
    st0.pools.filter((p) => !POOLS.includes(p.name)),
    'other pools untouched',
  );
});

t.test('the daemon purges dirty chunks once dirtyDecayMs has passed', async (t) => {
  const config = {
    memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64M', kind: 'dram' }] },
    hugepages: [{ size: '2M', region: 'dram', nr: 4 }],
    pools: [
      { name: 'fast', cache: 'writeback', region: 'dram', dirtyDecayMs: 300 },
      { name: 'hfast', cache: 'writeback', pageSize: '2M', region: 'dram', dirtyDecayMs: 300 },
      { name: 'keep', cache: 'writeback', region: 'dram', dirtyDecayMs: -1 },
    ],
  };
  const d = await startDaemon(t, { config, logLevel: 'info' });
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  const dram = async () => (await c.status()).memory.regions[0]!.free;
  const free0 = await dram();
  const bufs = await Promise.all(['fast', 'hfast', 'keep'].flatMap((pool) => [100, 20000].map((size) => c.alloc({ pool, size }))));
  for (const b of bufs) await c.close(b.handle);
  const freedAt = Date.now();
  const st = await c.status();
  for (const name of ['fast', 'hfast', 'keep']) {
    const p = st.pools.find((x) => x.name === name)!;
    t.match(p, { mapped: 2 * MiB, dirty: 2 * MiB, buffers: 0 }, `${name}: a dirty chunk right after the frees`);
  }
  let mapped = -1;
  while (Date.now() - freedAt < 5000) {
    await new Promise((r) => setTimeout(r, 50));
    const s = await c.status();
    mapped = s.pools.filter((p) => p.name !== 'keep').reduce((a, p) => a + p.mapped, 0);
    if (mapped === 0) break;
  }
  const took = Date.now() - freedAt;
  t.equal(mapped, 0, `purged by the daemon's decay timer after ${took} ms`);
  t.ok(took >= 250, 'not before the decay time');
  const end = await c.status();
  t.match(end.pools.find((p) => p.name === 'keep'), { mapped: 2 * MiB, dirty: 2 * MiB, purges: 0 }, 'decay −1 keeps its chunk');
  t.ok(end.pools.filter((p) => p.name !== 'keep').every((p) => p.purges >= 1 && p.dirty === 0));
  t.equal(end.hugepages[0]!.free, 4, 'the hugepage is back');
  t.equal(await dram(), free0 - 2 * MiB, "every page is back but 'keep''s chunk");
});

t.test('a departing client gives its arenas back; another client never shares its hugepage', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info' });
  const a = await connect({ socket: d.socket, name: 'a' });
  const b = await connect({ socket: d.socket, name: 'b' });
  t.teardown(() => b.disconnect());
  const hp = async () => (await b.status()).hugepages.find((h) => h.size === 2 * MiB)!.free;
  const free0 = await hp();
  const xa = await Promise.all([64, 64, 3000, 50000].map((size) => a.alloc({ pool: 'huge', size })));
  const xb = await Promise.all([64, 64, 3000, 50000].map((size) => b.alloc({ pool: 'huge', size })));
  const page = (x: HandleInfo) => Math.floor(x.segments[0]!.addr / (2 * MiB));
  t.equal(new Set(xa.map(page)).size, 1, "a's buffers share one hugepage");
  t.equal(new Set(xb.map(page)).size, 1, "b's buffers share one hugepage");
  t.not(page(xa[0]!), page(xb[0]!), 'but not with each other');
  t.equal(await hp(), free0 - 2);
  t.equal((await b.status({ pool: 'huge' })).pool!.arenas.length, 2);
  await a.disconnect();
  // the daemon frees a's buffers, drops its arena and purges the hugepage at once
  let left = 0;
  for (let i = 0; i < 100; i++) {
    left = (await b.status({ pool: 'huge' })).pool!.arenas.length;
    if (left === 1) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(left, 1, "a's arena is gone");
  t.equal(await hp(), free0 - 1, "a's hugepage is back in the hugepage pool");
  for (const x of xb) await b.close(x.handle);
  t.match((await b.status()).pools.find((p) => p.name === 'huge'), { buffers: 0, requested: 0, arenas: 1 });
});

t.test('decay off: a closed direct buffer stays dirty in its pool and the next one, from another client, gets its pages', async (t) => {
  const config = {
    memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64M', kind: 'dram' }] },
    pools: [{ name: 'keep', cache: 'writecombine', region: 'dram', dirtyDecayMs: -1 }],
  };
  const d = await startDaemon(t, { config });
  const a = await connect({ socket: d.socket, name: 'first' });
  const b = await connect({ socket: d.socket, name: 'second' });
  t.teardown(() => Promise.all([a.disconnect(), b.disconnect()]));
  const free0 = (await a.status()).memory.regions[0]!.free;
  const x = await a.alloc({ pool: 'keep', size: 8 * MiB });
  await a.write(x.handle, 0, Buffer.from('secret'));
  const pages = x.segments.map((s) => `${s.addr}+${s.len}`).sort();
  const conv = (await a.status()).pools[0]!.conversions;
  await a.close(x.handle);
  const st = await a.status();
  t.match(st.pools[0], { dirty: 8 * MiB, mapped: 8 * MiB, buffers: 0 });
  t.equal(st.memory.regions[0]!.free, free0 - 8 * MiB, 'not back in the buddy allocator');
  const y = await b.alloc({ pool: 'keep', size: 8 * MiB });
  t.same(y.segments.map((s) => `${s.addr}+${s.len}`).sort(), pages, 'the same pages');
  t.same([...(await b.read(y.handle, 0, 6))], [0, 0, 0, 0, 0, 0], 'zeroed for the next holder');
  const end = await b.status();
  t.match(end.pools[0], { dirty: 0, mapped: 8 * MiB, conversions: conv }, 'no page converted again');
  // direct buffers of a decay-off pool take jemalloc's large size classes, so a kept extent fits the next request of its class whole
  const z = await b.alloc({ pool: 'keep', size: 17 * MiB });
  t.match(z, { size: 17 * MiB, usize: 20 * MiB }, '17 MiB: size class 20 MiB');
  t.equal(z.segments.reduce((n, s) => n + s.len, 0), 17 * MiB, 'its segments cover the 17 MiB asked for');
  await b.close(z.handle);
  const again = await a.alloc({ pool: 'keep', size: 19 * MiB });
  t.same(again.segments.map((s) => s.addr), z.segments.map((s) => s.addr), "19 MiB, the same class: the freed extent's pages, whole");
  t.match((await a.status()).pools[0], { dirty: 0, mapped: 28 * MiB });
});
