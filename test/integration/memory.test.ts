/**
 * The memory model through the real daemon: pools, alloc/info/free,
 * all-or-nothing failures, hugepage resize, lazy population, cleanup on
 * disconnect, and bufctl's views of it.
 */
import t from 'tap';
import { startDaemon, bufctl } from '../helpers/daemon.js';
import { connect, BufferdError, type BufferClient, type Status } from '../../client/index.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The parts of status that allocation may change. */
function memoryView(st: Status) {
  return { memory: st.memory, hugepages: st.hugepages, pools: st.pools, conversions: st.conversions };
}

async function err(p: Promise<unknown>): Promise<BufferdError> {
  try {
    await p;
  } catch (e) {
    return e as BufferdError;
  }
  throw new Error('expected a rejection');
}

t.test('alloc, info, free through the daemon', async (t) => {
  const d = await startDaemon(t);
  const c = await connect({ socket: d.socket, name: 'mem' });
  t.teardown(() => c.disconnect());
  const before = memoryView(await c.status());
  const { pools } = await c.pools();
  t.same(
    pools.map((p) => p.name),
    ['default', 'huge', 'wc', 'uncached', 'contig', 'dma32', 'tcm', 'giant'],
  );

  const a = await c.alloc({ pool: 'default', size: 10_000 });
  t.equal(a.pool, 'default');
  t.equal(a.cache, 'writeback');
  t.equal(a.size, 10_000);
  t.equal(a.footprint, 12_288);
  t.equal(a.segments.reduce((n, s) => n + s.len, 0), 10_000);
  t.ok(a.segments.every((s) => s.addr % 4096 === 0));
  t.ok(a.segments[0]!.addr >= 2 ** 32, 'default pool prefers the Normal zone above 4 GiB');
  t.same(await c.info(a.buffer), a);

  const h = await c.alloc({ pool: 'huge', size: 5 * MiB });
  t.equal(h.footprint, 6 * MiB);
  t.ok(h.segments.every((s) => s.addr % (2 * MiB) === 0), 'hugepage aligned');
  const dma = await c.alloc({ pool: 'dma32', size: 3 * MiB });
  t.ok(dma.segments.every((s) => s.addr + s.len <= 2 ** 32), 'dma32 stays below 4 GiB');
  const con = await c.alloc({ pool: 'contig', size: 3 * MiB + 5, align: 64 * 1024 });
  t.equal(con.segments.length, 1, 'contiguous');
  t.equal(con.segments[0]!.addr % (64 * 1024), 0, 'aligned to 64 KiB');
  t.equal(con.cache, 'writecombine');

  const mid = await c.status();
  const huge = mid.pools.find((p) => p.name === 'huge')!;
  t.equal(huge.buffers, 1);
  t.equal(huge.pages, 3);
  t.equal(huge.allocated, 5 * MiB);
  t.equal(huge.active, 6 * MiB);
  const hp2 = mid.hugepages.find((x) => x.size === 2 * MiB)!;
  t.equal(hp2.inUse, 3);
  t.equal(hp2.free, hp2.total - 3);
  t.equal(mid.clients.find((x) => x.id === c.id)!.handles, 4);

  for (const b of [a, h, dma, con]) t.same(await c.free(b.buffer), { buffer: b.buffer, freed: true });
  t.equal((await err(c.info(a.buffer))).code, 'ENOENT');
  t.equal((await err(c.free(a.buffer))).code, 'ENOENT');
  const after = memoryView(await c.status());
  // conversions are history; everything else is back to the baseline
  t.same({ ...after, pools: after.pools.map((p) => ({ ...p, conversions: 0, conversionCostUs: 0, nmalloc: 0, ndalloc: 0 })), conversions: null },
    { ...before, pools: before.pools.map((p) => ({ ...p, conversions: 0, conversionCostUs: 0, nmalloc: 0, ndalloc: 0 })), conversions: null });
});

t.test('failed allocations are all-or-nothing and say what is free', async (t) => {
  const d = await startDaemon(t);
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  const keep = await c.alloc({ pool: 'huge', size: 2 * MiB });
  const before = memoryView(await c.status());
  let e = await err(c.alloc({ pool: 'giant', size: 3 * GiB }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, "pool 'giant': cannot allocate 3 GiB");
  t.match(e.message, '2 of 2 1 GiB hugepages available');
  t.equal(e.details?.['pool'], 'giant');
  t.same(memoryView(await c.status()), before, 'nothing changed');
  e = await err(c.alloc({ pool: 'tcm', size: MiB }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, "256 KiB free in region 'tcm', largest contiguous free block 256 KiB");
  t.equal(e.details?.['largestFree'], 256 * 1024);
  // 256 + 128 overcommit hugepages of 2 MiB exist at most: ask for more
  e = await err(c.alloc({ pool: 'huge', size: 400 * 2 * MiB }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, 'hugepages available');
  t.same(memoryView(await c.status()), before, 'surplus gathered for the failed request was given back');
  e = await err(c.alloc({ pool: 'nosuch', size: 1 }));
  t.equal(e.code, 'ENOENT');
  t.match(e.message, 'pools: default, huge');
  e = await err(c.alloc({ pool: 'default', size: 4096, align: 3 }));
  t.equal(e.code, 'EINVAL');
  t.match(e.message, "field 'align' must be a power of two");
  e = await err(c.alloc({ pool: 'huge', size: 4096, align: 4 * MiB }));
  t.equal(e.code, 'EINVAL');
  t.match(e.message, 'at most 2 MiB');
  e = await err(c.alloc({ pool: 'default', size: 0 }));
  t.equal(e.code, 'EINVAL');
  t.match(e.message, "field 'size'");
  t.same(memoryView(await c.status()), before);
  await c.free(keep.buffer);
});

t.test('buffers belong to their connection and are freed when it closes', async (t) => {
  const d = await startDaemon(t);
  const a = await connect({ socket: d.socket, name: 'a' });
  const b = await connect({ socket: d.socket, name: 'b' });
  t.teardown(() => b.disconnect());
  const base = memoryView(await b.status());
  const bufs: number[] = [];
  for (let i = 0; i < 50; i++) bufs.push((await a.alloc({ pool: i % 2 ? 'default' : 'huge', size: 4096 * (i + 1) })).buffer);
  t.equal((await err(b.free(bufs[0]!))).code, 'ENOENT', "another client's buffer");
  t.equal((await err(b.info(bufs[1]!))).code, 'ENOENT');
  t.ok((await a.info(bufs[0]!)).size > 0, 'the owner is undisturbed');
  await a.disconnect();
  let st = await b.status();
  for (let i = 0; i < 50 && st.clients.some((x) => x.name === 'a'); i++) st = await b.status();
  const after = memoryView(st);
  t.same(after.hugepages, base.hugepages);
  t.same(after.memory, base.memory);
  t.same(after.pools.map((p) => [p.name, p.buffers, p.allocated, p.active, p.pages]), base.pools.map((p) => [p.name, p.buffers, p.allocated, p.active, p.pages]));
});

t.test('hugepage resize, surplus and reservations through the daemon', async (t) => {
  const d = await startDaemon(t, {
    config: {
      memory: { regions: [{ name: 'ram', base: '0x40000000', size: '64M', kind: 'dram' }] },
      hugepages: [{ size: '2M', region: 'ram', nr: 8, overcommit: 4 }],
      pools: [
        { name: 'small', cache: 'writeback', region: 'ram' },
        { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'ram' },
        { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'ram' },
      ],
    },
  });
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  const hp = async () => (await c.status()).hugepages[0]!;
  t.match(await hp(), { total: 8, free: 8, reserved: 0, surplus: 0, nr: 8, overcommit: 4 });
  // 10 pages: 8 persistent + 2 surplus
  const big = await c.alloc({ pool: 'huge', size: 10 * 2 * MiB });
  t.match(await hp(), { total: 10, free: 0, surplus: 2, inUse: 10 });
  // lazy: reserve without backing
  const e = await err(c.alloc({ pool: 'huge', size: 3 * 2 * MiB, populate: false }));
  t.equal(e.code, 'ENOMEM', 'only 2 more surplus allowed');
  const lazy = await c.alloc({ pool: 'huge', size: 2 * 2 * MiB, populate: false });
  t.equal(lazy.populated, false);
  t.equal(lazy.reservedHugepages, 2);
  t.same(lazy.segments, []);
  t.match(await hp(), { total: 12, free: 2, reserved: 2, available: 0, surplus: 4 });
  // shrink below in-use: in-use pages become surplus beyond overcommit
  const r = await c.setHugepages(2 * MiB, 2);
  t.equal(r.reached, 2);
  t.match(r.status, { nr: 2, surplus: 10, total: 12 });
  // grow: surplus is promoted first
  const g = await c.setHugepages(2 * MiB, 11);
  t.match(g.status, { nr: 11, surplus: 1, total: 12 });
  // grow beyond memory: as far as possible
  const far = await c.setHugepages(2 * MiB, 1000, 4);
  t.equal(far.requested, 1000);
  t.ok(far.reached < 1000 && far.reached >= 28, `reached ${far.reached}`);
  t.equal(far.status.surplus, 0);
  await c.free(lazy.buffer);
  await c.free(big.buffer);
  const back = await c.setHugepages(2 * MiB, 8);
  t.match(back.status, { total: 8, free: 8, reserved: 0, surplus: 0 });
  t.equal((await err(c.setHugepages(1 * GiB, 1))).code, 'ENOENT');
  // conversions: a write-back hugepage taken by the write-combine pool
  const convBefore = (await c.status()).pools.find((p) => p.name === 'wc')!.conversions;
  const w = await c.alloc({ pool: 'wc', size: 1 });
  await c.free(w.buffer);
  const w2 = await c.alloc({ pool: 'wc', size: 1 });
  t.same(w2.segments[0]!.addr, w.segments[0]!.addr, 'the write-combine page is reused');
  const wc = (await c.status()).pools.find((p) => p.name === 'wc')!;
  t.equal(wc.conversions, convBefore + 1, 'converted once, reused without conversion');
  t.ok(wc.conversionCostUs > 0);
  await c.free(w2.buffer);
});

t.test('bufctl pools and hugepages', async (t) => {
  const d = await startDaemon(t);
  const c: BufferClient = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  await c.alloc({ pool: 'huge', size: 3 * MiB });
  const p = await bufctl(d.socket, 'pools');
  t.equal(p.code, 0, p.stderr);
  t.match(p.stdout, /POOL\s+CACHE\s+PAGE\s+REGION/);
  t.match(p.stdout, /huge\s+writeback\s+2 MiB\s+dram/);
  t.match(p.stdout, /dma32\s+writeback\s+4 KiB\s+dram <0x100000000/);
  const pj = JSON.parse((await bufctl(d.socket, 'pools', '--json')).stdout) as { name: string; buffers: number }[];
  t.equal(pj.find((x) => x.name === 'huge')!.buffers, 1);
  const h = await bufctl(d.socket, 'hugepages');
  t.match(h.stdout, /2 MiB\s+dram\s+256\s+254\s+0\s+0/);
  const set = await bufctl(d.socket, 'hugepages', 'set', '2M', '300', '--overcommit', '10');
  t.equal(set.code, 0, set.stderr);
  t.match(set.stdout, 'nr_hugepages 300, overcommit 10');
  const js = JSON.parse((await bufctl(d.socket, 'hugepages', 'set', '1G', '3', '--json')).stdout) as { reached: number };
  t.equal(js.reached, 3);
  const bad = await bufctl(d.socket, 'hugepages', 'set', '1G', '3', '--overcommit', '2');
  t.equal(bad.code, 1);
  t.match(bad.stderr, 'cannot be overcommitted');
  for (const args of [['hugepages', 'grow'], ['hugepages', 'set', 'big', '3'], ['hugepages', 'set', '2M', '-1'], ['hugepages', '--overcommit', '3']]) {
    t.equal((await bufctl(d.socket, ...args)).code, 2, args.join(' '));
  }
  const none = await bufctl(d.socket, 'hugepages', 'set', '4M', '1');
  t.equal(none.code, 1);
  t.match(none.stderr, 'ENOENT');
  const st = await bufctl(d.socket, 'status');
  t.match(st.stdout, 'Free blocks by buddy order');
  t.match(st.stdout, /Pools \(conversions: \d+/);
});
