/**
 * Fault injection end to end, on a real daemon driven by real clients: each
 * point fires exactly when armed (nth, times, client and pool filters), its
 * failure is the real one (same code, message and details, plus
 * details.injected), and the counters move exactly as they do when the
 * failure is real: the same request is made once failing for real, then
 * again in the same state with the point armed, and the two deltas of the
 * pool, hugepage, handle, token, registration and bounce counters must match.
 */
import t, { type Test } from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { rejection } from '../helpers/procs.js';
import { client, KiB, MiB } from '../helpers/drivers.js';
import type { BufferClient, Status, BufferdError } from '../../client/index.js';

export const CONFIG = {
  memory: {
    regions: [
      { name: 'dram', base: '0x80000000', size: '64M', kind: 'dram' },
      { name: 'high', base: '0x100000000', size: '16M', kind: 'dram' },
    ],
  },
  hugepages: [{ size: '2M', region: 'dram', nr: 2, overcommit: 2 }],
  pools: [
    { name: 'default', cache: 'writeback', region: 'dram' },
    { name: 'small', cache: 'writeback', region: 'dram', maxBytes: '4M' },
    { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram' },
    { name: 'high', cache: 'writeback', region: 'high' },
    { name: 'uc', cache: 'uncached', region: 'dram' },
  ],
  bounce: { size: '64K', region: 'dram', maxMapping: '64K' },
  drivers: [
    { name: 'mmu', constraints: { iommu: { pageSizes: [4096], iovaSize: 1048576 } } },
    { name: 'cam', constraints: { align: 4096, dmaMask: 32, bounce: true } },
    { name: 'picky', constraints: { cache: ['uncached'] } },
  ],
  faultInjection: { token: { nth: 2, times: 1 } },
};

const pick = <T extends object>(o: T, keys: string[]) => Object.fromEntries(keys.map((k) => [k, (o as Record<string, unknown>)[k]]));

/** The counters a failure must leave as the real one does. */
export function counters(st: Status): Record<string, unknown> {
  return {
    pools: st.pools.map((p) => pick(p, ['name', 'requested', 'allocated', 'active', 'mapped', 'buffers', 'nmalloc', 'ndalloc'])),
    hugepages: st.hugepages.map((h) => pick(h, ['size', 'total', 'free', 'reserved', 'surplus'])),
    buffers: st.buffers,
    drivers: st.drivers.map((d) => pick(d, ['name', 'registrations', 'bytes', 'iovaUsed', 'registered', 'refused', 'bounceSlots'])),
    bounce: st.dma.bounce === null ? null : pick(st.dma.bounce, ['used', 'full']),
    clients: st.clients.filter((c) => c.name !== null && !c.name.startsWith('admin')).map((c) => pick(c, ['name', 'handles', 'registrations', 'bytes'])),
  };
}

/** Numeric leaves of b − a, keyed by path (zero differences left out). */
export function delta(a: unknown, b: unknown, path = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (typeof a === 'number' && typeof b === 'number') {
    if (a !== b) out[path] = b - a;
  } else if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) delta((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`, out);
  } else if (a !== b) out[path] = [a, b];
  return out;
}

/**
 * Make `request` fail for real, then again with the point armed (the state
 * is the same: a failure changes nothing but its own counters). Same code,
 * message and details plus injected; the same counter deltas.
 */
async function sameAsReal(t: Test, admin: BufferClient, arm: () => Promise<unknown>, request: () => Promise<unknown>, what: string): Promise<BufferdError> {
  const s0 = counters(await admin.status());
  const real = await rejection(request());
  const s1 = counters(await admin.status());
  await arm();
  const injected = await rejection(request());
  const s2 = counters(await admin.status());
  await admin.faults.clear();
  t.equal(injected.code, real.code, `${what}: same code (${real.code})`);
  t.equal(injected.message, real.message, `${what}: same message`);
  t.same(injected.details, { ...real.details, injected: true }, `${what}: same details, plus injected`);
  t.equal(real.details?.['injected'], undefined, `${what}: the real one is not marked`);
  t.same(delta(s1, s2), delta(s0, s1), `${what}: the counters moved as for the real failure`);
  return injected;
}

t.test('every point fails as the real failure does, with the same counters', async (t) => {
  const d = await startDaemon(t, { config: CONFIG });
  const admin = await client(t, d.socket, 'admin', { admin: true });
  const app = await client(t, d.socket, 'app');

  // the config armed `token` (nth 2, times 1)
  t.match((await admin.faults.list()).armed, [{ point: 'token', nth: 2, times: 1, source: 'config', calls: 0, fired: 0 }]);
  await admin.faults.clear();

  // alloc: pool 'small' (maxBytes 4M) really refuses a second 3 MiB buffer
  await app.alloc({ pool: 'small', size: 3 * MiB });
  await sameAsReal(t, admin, () => admin.faults.set('alloc', { pool: 'small' }), () => app.alloc({ pool: 'small', size: 3 * MiB }), 'alloc');

  // iova: 1 MiB of IOVA (one page never handed out) can't take a 1 MiB buffer
  const big = await app.alloc({ pool: 'default', size: 1 * MiB });
  await sameAsReal(t, admin, () => admin.faults.set('iova'), () => app.register(big.handle, 'mmu'), 'iova');

  // bounce: 32 slots of 2 KiB, 24 taken; a 32 KiB buffer above 4 GiB needs 16
  const a = await app.alloc({ pool: 'high', size: 48 * KiB });
  const b = await app.alloc({ pool: 'high', size: 32 * KiB });
  t.equal((await app.register(a.handle, 'cam')).bounced, 48 * KiB, 'above 4 GiB: bounced');
  await sameAsReal(t, admin, () => admin.faults.set('bounce'), () => app.register(b.handle, 'cam'), 'bounce');
  await app.unregister(a.handle, 'cam');

  // alloc where it would succeed: the 2nd matching call, once, for 'app' only
  const other = await client(t, d.socket, 'other');
  t.match(await admin.faults.set('alloc', { nth: 2, times: 1, client: 'app' }), { point: 'alloc', nth: 2, times: 1, client: 'app', probability: 100, source: 'op' });
  const ok1 = await app.alloc({ pool: 'default', size: 4 * KiB });
  await other.alloc({ pool: 'default', size: 4 * KiB });
  const before = counters(await admin.status());
  const e = await rejection(app.alloc({ pool: 'default', size: 4 * KiB }));
  t.match(e, { code: 'ENOMEM', details: { pool: 'default', injected: true } });
  t.match(e.message, /^pool 'default': cannot allocate 4 KiB \(4096 bytes\): .* free in region 'dram'/);
  t.same(delta(before, counters(await admin.status())), {}, 'nothing changed');
  await app.alloc({ pool: 'default', size: 4 * KiB });
  t.match((await admin.faults.list()).armed, [{ point: 'alloc', calls: 2, fired: 1, times: 0 }], "two of app's calls seen, other's not counted");

  // iova and bounce where they would succeed: fail once, then succeed
  await admin.faults.set('iova', { times: 1 });
  t.match(await rejection(app.register(ok1.handle, 'mmu')), { code: 'ENOMEM', details: { device: 'mmu', injected: true } });
  t.ok((await app.register(ok1.handle, 'mmu')).iommu, 'then mapped');
  await admin.faults.set('bounce', { times: 1, pool: 'high' });
  t.match(await rejection(app.register(b.handle, 'cam')), { code: 'ENOMEM', details: { device: 'cam', injected: true } });
  t.equal((await app.register(b.handle, 'cam')).bounced, 32 * KiB, 'then bounced');

  const st = await admin.status();
  t.match(st.faults.injected, { alloc: 2, iova: 2, bounce: 2, hugepage: 0 }, 'status counts every injected failure by point');
  t.equal(st.faults.total, 6);
});

t.test('hugepage, register and token: the real failure path, the same counters', async (t) => {
  const d = await startDaemon(t, { config: CONFIG });
  const admin = await client(t, d.socket, 'admin', { admin: true });
  const app = await client(t, d.socket, 'app');

  // hugepage: 2 persistent pages taken; with overcommit 0 the 3rd really fails
  await app.alloc({ pool: 'huge', size: 4 * MiB });
  await admin.setHugepages('2M', 2, 0);
  const s0 = counters(await admin.status());
  const real = await rejection(app.alloc({ pool: 'huge', size: 2 * MiB }));
  const s1 = counters(await admin.status());
  await admin.setHugepages('2M', 2, 2);
  await admin.faults.set('hugepage', { times: 1 });
  const inj = await rejection(app.alloc({ pool: 'huge', size: 2 * MiB }));
  const s2 = counters(await admin.status());
  t.equal(inj.code, real.code);
  t.match(inj.message, /^pool 'huge': cannot allocate 2 MiB \(2097152 bytes\): 0 of 2 2 MiB hugepages available/);
  t.same(Object.keys(inj.details!).sort(), [...Object.keys(real.details!), 'injected'].sort(), 'same details');
  t.same(delta(s1, s2), delta(s0, s1), 'counters as for the real shortfall');
  const h = await app.alloc({ pool: 'huge', size: 2 * MiB });
  t.match((await admin.status()).hugepages[0], { surplus: 1 }, 'times spent: the surplus page comes');
  await app.close(h.handle);

  // register: the device refuses; a real refusal is a constraint mismatch
  const wb = await app.alloc({ pool: 'default', size: 8 * KiB });
  const uc = await app.alloc({ pool: 'uc', size: 8 * KiB });
  const r0 = counters(await admin.status());
  const refused = await rejection(app.register(wb.handle, 'picky'));
  const r1 = counters(await admin.status());
  await admin.faults.set('register', { pool: 'uc', times: 1 });
  const injected = await rejection(app.register(uc.handle, 'picky'));
  const r2 = counters(await admin.status());
  t.equal(injected.code, 'EATTR');
  t.equal(refused.code, 'EATTR');
  t.match(injected.message, new RegExp(`^buffer ${uc.buffer} does not fit driver 'picky': injected \\(required`));
  t.match(injected.details, { driver: 'picky', buffer: uc.buffer, mismatches: [{ attribute: 'injected' }], injected: true });
  t.same(Object.keys(injected.details!).sort(), [...Object.keys(refused.details!), 'injected'].sort());
  t.same(delta(r1, r2), delta(r0, r1), 'refused counted, nothing registered, as for the real refusal');
  t.match(await app.register(uc.handle, 'picky'), { driver: 'picky', buffer: uc.buffer }, 'then it registers');

  // token: a valid token taken for expired; a real expiry for comparison
  const buf = await app.alloc({ pool: 'default', size: 4 * KiB });
  const k0 = counters(await admin.status());
  const short = await app.export(buf.handle, { ttlMs: 1 });
  await new Promise((r) => setTimeout(r, 20));
  const expired = await rejection(app.import(short.token));
  const k1 = counters(await admin.status());
  const k1b = counters(await admin.status());
  const long = await app.export(buf.handle, { ttlMs: 60_000 });
  await admin.faults.set('token', { times: 1 });
  const gone = await rejection(app.import(long.token));
  const k2 = counters(await admin.status());
  t.equal(gone.code, expired.code);
  t.equal(gone.message, expired.message);
  t.same(gone.details, { injected: true });
  t.same(delta(k1b, k2), delta(k0, k1), 'from export to the failed import: issued, expired, the in-flight reference dropped, as for a real expiry');
  t.match(await rejection(app.import(long.token)), { code: 'ENOENT', details: undefined }, 'the token is gone for good');
  t.match((await admin.status()).faults.injected, { hugepage: 1, register: 1, token: 1 });
});
