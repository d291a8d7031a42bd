/**
 * The memory model through the real daemon: pools, alloc/info/free,
 * all-or-nothing failures, hugepage resize, lazy population, cleanup on
 * disconnect, and bufctl's views of it.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { connect, BufferdError, type BufferClient, type Status } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The default machine with every pool purging empty chunks at once (no dirty chunks, ever). */
const EAGER_MACHINE = { ...DEFAULT_MACHINE, pools: DEFAULT_MACHINE.pools.map((p) => ({ ...p, dirtyDecayMs: 0 })) };

/** The parts of status that allocation may change. */
function memoryView(st: Status) {
  return { memory: st.memory, hugepages: st.hugepages, pools: st.pools, conversions: st.conversions };
}

/** Pool status without the counters that are history (they only grow). */
function present(st: { pools: Status['pools'] }) {
  return st.pools.map(({ conversions: _c, conversionCostUs: _u, nmalloc: _m, ndalloc: _d, purges: _p, ...rest }) => rest);
}

/** Status once the client named `name` is gone (its disconnect is handled asynchronously). */
/**
 * Status once client `name` is gone and its teardown (done in slices, after
 * it leaves the list) is over: `settled` says when. Polled, not slept: up to
 * 30 s on a loaded machine, then the caller's assertions show what is left.
 */
async function statusWithout(c: BufferClient, name: string, settled: (st: Status) => boolean = () => true): Promise<Status> {
  const end = Date.now() + 30_000;
  let st = await c.status();
  while ((st.clients.some((x) => x.name === name) || !settled(st)) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    st = await c.status();
  }
  t.notOk(st.clients.some((x) => x.name === name), `client '${name}' is gone`);
  return st;
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
  t.equal(a.kind, 'small');
  t.equal(a.usize, 10_240, 'the size class');
  t.same(a.segments.map((s) => s.len), [10_000], 'one piece of a slab');
  t.ok(a.segments[0]!.addr >= 2 ** 32, 'default pool prefers the Normal zone above 4 GiB');
  t.same(await c.info(a.handle), a);

  const h = await c.alloc({ pool: 'huge', size: 5 * MiB });
  t.equal(h.kind, 'direct');
  t.equal(h.usize, 6 * MiB, 'whole hugepages');
  t.ok(h.segments.every((s) => s.addr % (2 * MiB) === 0), 'hugepage aligned');
  const dma = await c.alloc({ pool: 'dma32', size: 3 * MiB });
  t.equal(dma.kind, 'direct');
  t.ok(dma.segments.every((s) => s.addr + s.len <= 2 ** 32), 'dma32 stays below 4 GiB');
  const con = await c.alloc({ pool: 'contig', size: 3 * MiB + 5, align: 64 * 1024 });
  t.equal(con.segments.length, 1, 'contiguous');
  t.equal(con.segments[0]!.addr % (64 * 1024), 0, 'aligned to 64 KiB');
  t.equal(con.cache, 'writecombine');
  t.equal(con.usize, 3 * MiB + 4096);

  const mid = await c.status();
  const huge = mid.pools.find((p) => p.name === 'huge')!;
  t.match(huge, { buffers: 1, directBuffers: 1, pages: 3, requested: 5 * MiB, allocated: 6 * MiB, active: 6 * MiB, mapped: 6 * MiB, arenas: 0 });
  const def = mid.pools.find((p) => p.name === 'default')!;
  t.match(def, {
    buffers: 1,
    directBuffers: 0,
    requested: 10_000,
    allocated: 10_240,
    active: 20_480, // the slab of class 10240: 5 pages, 2 regions
    mapped: 2 * MiB, // one chunk
    pages: 512,
    dirty: 0,
    retained: 2 * MiB - 20_480,
    arenas: 1,
  });
  const hp2 = mid.hugepages.find((x) => x.size === 2 * MiB)!;
  t.equal(hp2.inUse, 3);
  t.equal(hp2.free, hp2.total - 3);
  t.equal(mid.clients.find((x) => x.id === c.id)!.handles, 4);

  for (const b of [a, h, dma, con]) t.same(await c.close(b.handle), { handle: b.handle, closed: true });
  t.equal((await err(c.info(a.handle))).code, 'EBADF');
  t.equal((await err(c.close(a.handle))).code, 'EBADF');
  const after = memoryView(await c.status());
  // direct pages went back at once; the client's empty chunk waits for decay (10 s)
  t.same(after.hugepages, before.hugepages);
  const keys = ['name', 'requested', 'allocated', 'active', 'buffers', 'directBuffers', 'retained'] as const;
  const pick = (ps: Status['pools']) => ps.map((p) => keys.map((k) => p[k]));
  t.same(pick(after.pools), pick(before.pools), 'nothing allocated or active');
  t.match(after.pools.find((p) => p.name === 'default')!, { dirty: 2 * MiB, mapped: 2 * MiB, arenas: 1 });
  // when the client goes, its arena is purged and dropped: everything is back to the baseline
  const o = await connect({ socket: d.socket, name: 'observer' });
  t.teardown(() => o.disconnect());
  await c.disconnect();
  const gone = await statusWithout(o, 'mem', (st) => JSON.stringify(st.memory) === JSON.stringify(before.memory) && st.pools.every((p) => p.arenas === 0));
  t.same(gone.memory, before.memory);
  t.same(gone.hugepages, before.hugepages);
  t.same(present(gone), present(before), 'pools as at the start');
  t.equal(gone.pools.find((p) => p.name === 'default')!.purges, 1, 'the chunk was purged');
});

t.test('failed allocations are all-or-nothing and say what is free', async (t) => {
  // no pool ever holds dirty chunks, so a failed request has nothing to purge and changes nothing
  const d = await startDaemon(t, { config: EAGER_MACHINE });
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  const keep = await c.alloc({ pool: 'huge', size: 2 * MiB });
  const small = await c.alloc({ pool: 'huge', size: 100 });
  await c.close((await c.alloc({ pool: 'tcm', size: 100 })).handle);
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
  t.same(memoryView(await c.status()), before, 'nothing changed');
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
  // a small request whose arena cannot get a chunk: no hugepage is left
  const rest = await c.alloc({ pool: 'giant', size: 2 * GiB });
  const before2 = memoryView(await c.status());
  e = await err(c.alloc({ pool: 'giant', size: 1 }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, "pool 'giant': cannot allocate 1 B (1 bytes): 0 of 2 1 GiB hugepages available");
  t.same(memoryView(await c.status()), before2, 'nothing changed');
  await c.close(rest.handle);
  await c.close(keep.handle);
  await c.close(small.handle);
});

t.test('a failed allocation purges the pool\'s dirty chunks, and still fails cleanly', async (t) => {
  const d = await startDaemon(t);
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  const base = await c.status();
  // a small buffer takes a hugepage as its chunk; freed, the chunk stays dirty (10 s decay)
  await c.close((await c.alloc({ pool: 'huge', size: 100 })).handle);
  let huge = (await c.status()).pools.find((p) => p.name === 'huge')!;
  t.match(huge, { dirty: 2 * MiB, mapped: 2 * MiB, purges: 0 });
  // 256 + 128 overcommit hugepages of 2 MiB exist at most: ask for more
  const e = await err(c.alloc({ pool: 'huge', size: 400 * 2 * MiB }));
  t.equal(e.code, 'ENOMEM');
  t.match(e.message, '256 of 256 2 MiB hugepages available', 'the dirty chunk was purged before the retry');
  const st = await c.status();
  huge = st.pools.find((p) => p.name === 'huge')!;
  t.match(huge, { dirty: 0, mapped: 0, pages: 0, purges: 1, buffers: 0, requested: 0, arenas: 1 });
  t.same(st.hugepages, base.hugepages, 'every hugepage is back, none gathered for the attempt stayed');
  t.same(st.memory, base.memory);
  t.same(
    present(st).filter((p) => p.name !== 'huge'),
    present(base).filter((p) => p.name !== 'huge'),
    'other pools untouched',
  );
});

t.test('buffers belong to their connection and are freed when it closes', async (t) => {
  const d = await startDaemon(t);
  const a = await connect({ socket: d.socket, name: 'a' });
  const b = await connect({ socket: d.socket, name: 'b' });
  t.teardown(() => b.disconnect());
  const base = memoryView(await b.status());
  const bufs: number[] = [];
  for (let i = 0; i < 50; i++) bufs.push((await a.alloc({ pool: i % 2 ? 'default' : 'huge', size: 4096 * (i + 1) })).handle);
  // direct buffers too, and a buffer freed before the disconnect (its chunk is dirty)
  bufs.push((await a.alloc({ pool: 'huge', size: 3 * MiB })).handle, (await a.alloc({ pool: 'default', size: 5 * MiB })).handle);
  await a.close((await a.alloc({ pool: 'dma32', size: 100 })).handle);
  t.equal((await err(b.close(bufs[0]!))).code, 'EBADF', "another client's buffer");
  t.equal((await err(b.info(bufs[1]!))).code, 'EBADF');
  t.ok((await a.info(bufs[0]!)).size > 0, 'the owner is undisturbed');
  const mid = await b.status();
  t.match(mid.pools.find((p) => p.name === 'dma32')!, { dirty: 2 * MiB, arenas: 1 });
  t.match(mid.pools.find((p) => p.name === 'default')!, { buffers: 26, directBuffers: 1, arenas: 1 });
  await a.disconnect();
  // its buffers are freed and its arenas purged and dropped, without waiting for decay
  const after = memoryView(await statusWithout(b, 'a', (st) => JSON.stringify(memoryView(st).memory) === JSON.stringify(base.memory) && st.pools.every((p) => p.arenas === 0)));
  t.same(after.hugepages, base.hugepages);
  t.same(after.memory, base.memory);
  t.same(present(after), present(base));
  t.ok(after.pools.every((p) => p.arenas === 0 && p.mapped === 0 && p.dirty === 0), 'no arena is left');
});

t.test('hugepage resize, surplus and reservations through the daemon', async (t) => {
  const d = await startDaemon(t, {
    config: {
      memory: { regions: [{ name: 'ram', base: '0x40000000', size: '64M', kind: 'dram' }] },
      hugepages: [{ size: '2M', region: 'ram', nr: 8, overcommit: 4 }],
      pools: [
        { name: 'small', cache: 'writeback', region: 'ram' },
        { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'ram' },
        // empty chunks go back to the hugepage pool at once
        { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'ram', dirtyDecayMs: 0 },
      ],
    },
  });
  const c = await connect({ socket: d.socket, admin: true });
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
  await c.close(lazy.handle);
  await c.close(big.handle);
  const back = await c.setHugepages(2 * MiB, 8);
  t.match(back.status, { total: 8, free: 8, reserved: 0, surplus: 0 });
  t.equal((await err(c.setHugepages(1 * GiB, 1))).code, 'ENOENT');
  // conversions: a write-back hugepage taken by the write-combine pool
  const convBefore = (await c.status()).pools.find((p) => p.name === 'wc')!.conversions;
  const w = await c.alloc({ pool: 'wc', size: 1 });
  t.equal(w.kind, 'small');
  await c.close(w.handle);
  let wc = (await c.status()).pools.find((p) => p.name === 'wc')!;
  t.match(wc, { mapped: 0, purges: 1 }, 'the chunk went back to the hugepage pool');
  t.match(await hp(), { free: 8, inUse: 0 });
  const w2 = await c.alloc({ pool: 'wc', size: 1 });
  t.same(w2.segments[0]!.addr, w.segments[0]!.addr, 'the write-combine page is reused');
  wc = (await c.status()).pools.find((p) => p.name === 'wc')!;
  t.equal(wc.conversions, convBefore + 1, 'converted once, reused without conversion');
  t.ok(wc.conversionCostUs > 0);
  await c.close(w2.handle);
});

t.test('bufctl pools and hugepages', async (t) => {
  const d = await startDaemon(t);
  const c: BufferClient = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  await c.alloc({ pool: 'huge', size: 3 * MiB });
  const p = await bufctlHere(d.socket, 'pools');
  t.equal(p.code, 0, p.stderr);
  t.match(p.stdout, /POOL\s+CACHE\s+PAGE\s+REGION/);
  t.match(p.stdout, /huge\s+writeback\s+2 MiB\s+dram/);
  t.match(p.stdout, /dma32\s+writeback\s+4 KiB\s+dram <0x100000000/);
  const pj = JSON.parse((await bufctlHere(d.socket, 'pools', '--json')).stdout) as { name: string; buffers: number }[];
  t.equal(pj.find((x) => x.name === 'huge')!.buffers, 1);
  const h = await bufctlHere(d.socket, 'hugepages');
  t.match(h.stdout, /2 MiB\s+dram\s+256\s+254\s+0\s+0/);
  const set = await bufctlHere(d.socket, 'hugepages', 'set', '2M', '300', '--overcommit', '10');
  t.equal(set.code, 0, set.stderr);
  t.match(set.stdout, 'nr_hugepages 300, overcommit 10');
  const js = JSON.parse((await bufctlHere(d.socket, 'hugepages', 'set', '1G', '3', '--json')).stdout) as { reached: number };
  t.equal(js.reached, 3);
  const bad = await bufctlHere(d.socket, 'hugepages', 'set', '1G', '3', '--overcommit', '2');
  t.equal(bad.code, 1);
  t.match(bad.stderr, 'cannot be overcommitted');
  for (const args of [['hugepages', 'grow'], ['hugepages', 'set', 'big', '3'], ['hugepages', 'set', '2M', '-1'], ['hugepages', '--overcommit', '3']]) {
    t.equal((await bufctlHere(d.socket, ...args)).code, 2, args.join(' '));
  }
  const none = await bufctlHere(d.socket, 'hugepages', 'set', '4M', '1');
  t.equal(none.code, 1);
  t.match(none.stderr, 'ENOENT');
  const st = await bufctlHere(d.socket, 'status');
  t.match(st.stdout, 'Free blocks per zone by buddy order, as /proc/buddyinfo');
  // one line per zone (as /proc/buddyinfo), its counts those of status --json
  const sj = JSON.parse((await bufctlHere(d.socket, 'status', '--json')).stdout) as Status;
  const zones = sj.memory.regions.flatMap((r) => r.zones);
  t.same(zones.map((z) => z.name), ['tcm/DMA32', 'carveout/DMA32', 'dram/DMA32', 'dram/Normal'], 'the default machine: dram split at 4 GiB');
  for (const r of sj.memory.regions) {
    const summed = r.freeByOrder.map((_, o) => r.zones.reduce((a, z) => a + (z.freeByOrder[o] ?? 0), 0));
    t.same(summed, r.freeByOrder, `${r.name}: the zones' freeByOrder add up to the region's`);
  }
  for (const z of zones) {
    t.equal(z.freeByOrder.reduce((a, n, o) => a + n * 4096 * 2 ** o, 0), z.free, `${z.name}: freeByOrder counts its free bytes`);
    const line = st.stdout.split('\n').find((l) => l.trim().startsWith(`${z.name} `));
    t.ok(line !== undefined, `a table line for ${z.name}`);
    const counts = line!.trim().split(/\s+/).slice(3).map(Number); // name, free (number unit), orders
    t.same(counts.slice(0, z.freeByOrder.length), z.freeByOrder, `${z.name}: the line shows its orders`);
  }
  t.match(st.stdout, /Pools \(conversions: \d+/);
});
