/**
 * Cache policies and checker modes through the real daemon, on a
 * non-coherent and a coherent client driver: write-combine buffers reach
 * the device only when flushed (sync end, fence, a full WC buffer);
 * uncached buffers need no syncs; strict mode (global, or a pool's
 * override) refuses the offending op with ECOHERENCY before any data
 * changes; off mode records nothing; status.coherency counters move as
 * the cache model says; bufctl shows the violations and the Coherency line.
 */
import t, { type Test } from 'tap';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { pattern, rejection } from '../helpers/procs.js';
import { DEVICES, rig, violationsSince, total, kinds, syncedRead, syncedWrite, firstDiff, type Rig } from '../helpers/coherency.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { BufferClient, ViolationInfo } from '../../client/index.js';

const SIZE = 8192;
const zeros = (n: number) => Buffer.alloc(n);
const cacheStats = async (c: BufferClient) => (await c.status()).coherency.cache;

const warn = await startDaemon(t);

for (const dev of DEVICES) {
  t.test(`${dev.label}: a write-combine buffer reaches the device only when flushed`, async (t) => {
    const r = await rig(t, warn.socket, { name: `wc-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, pool: 'wc', size: 4096 });
    const { app, h } = r;
    t.equal(r.info.cache, 'writecombine');
    const seq0 = await total(app);

    const A = pattern(256, 1); // 4 lines: fewer than the 8-line WC buffer
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, A);
    t.equal(firstDiff(await app.read(h, 0, 256), A), -1, 'the CPU reads its own pending writes');
    t.equal((await cacheStats(app)).wcPendingLines, 4, '4 lines pending');
    t.equal(firstDiff(await app.device.read(dev.driver, h, 0, 256), zeros(256)), -1, 'the device sees only memory: the old bytes');
    t.same(await app.fence(h), { flushed: 4 }, 'fence flushes the 4 pending lines');
    t.equal(firstDiff(await app.device.read(dev.driver, h, 0, 256), A), -1, 'after the fence the device sees the writes');
    t.match(await app.sync(h, { phase: 'end', access: 'write' }), { flushed: 0, cleaned: 0 }, 'nothing left for sync end');
    t.same(await app.fence(h), { flushed: 0 }, 'a fence with nothing pending');
    const early = await violationsSince(app, r.buffer, seq0);
    t.same(kinds(early), dev.coherent ? ['device-access-during-cpu-access'] : ['device-access-during-cpu-access', 'lost-write'], 'the early device reads were inside the bracket');
    if (!dev.coherent) t.match(early.find((v) => v.kind === 'lost-write')!.message, /write-combine/);

    // the correct flow: sync end flushes
    const seq1 = await total(app);
    const B = pattern(256, 2, 512);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 512, B);
    t.match(await app.sync(h, { phase: 'end', access: 'write' }), { flushed: 4, cleaned: 0 }, 'sync end flushes the WC lines');
    t.equal(firstDiff(await app.device.read(dev.driver, h, 512, 256), B), -1, 'the device sees the writes after sync end');
    // the device writes; the CPU (no cache) sees it after a synced read
    const C = pattern(1000, 3, 3000);
    await app.device.write(dev.driver, h, 3000, C);
    t.equal(firstDiff(await syncedRead(app, h, 3000, 1000), C), -1, "the CPU reads the device's bytes");
    t.same(await violationsSince(app, r.buffer, seq1), [], 'the correct flow records nothing');

    // a full WC buffer pushes its oldest lines to memory
    const D = pattern(1024, 4, 1024); // 16 lines
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 1024, D);
    const part = await app.device.read(dev.driver, h, 1024, 1024);
    t.equal(firstDiff(part.subarray(0, 512), D.subarray(0, 512)), -1, 'the oldest 8 lines were pushed out');
    t.equal(firstDiff(part.subarray(512), zeros(512)), -1, 'the newest 8 still wait');
    t.match(await app.sync(h, { phase: 'end', access: 'write' }), { flushed: 8 });
    t.equal(firstDiff(await app.device.read(dev.driver, h, 1024, 1024), D), -1, 'all of it after sync end');
  });

  t.test(`${dev.label}: an uncached buffer needs no syncs`, async (t) => {
    const r = await rig(t, warn.socket, { name: `uc-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, pool: 'uncached', size: SIZE });
    const { app, h } = r;
    t.equal(r.info.cache, 'uncached');
    const seq0 = await total(app);
    const c0 = await cacheStats(app);
    const A = pattern(SIZE, 5);
    await app.write(h, 0, A);
    t.equal(firstDiff(await app.device.read(dev.driver, h, 0, SIZE), A), -1, 'the device sees CPU writes at once');
    const B = pattern(3000, 6, 1234);
    await app.device.write(dev.driver, h, 1234, B);
    t.equal(firstDiff(await app.read(h, 1234, 3000), B), -1, 'the CPU sees the device write at once');
    const c1 = await cacheStats(app);
    t.equal(c1.dirtyLines, c0.dirtyLines, 'no dirty lines');
    t.equal(c1.cachedLines, c0.cachedLines, 'nothing cached');
    t.equal(c1.prefetches, c0.prefetches, 'no prefetch of uncached memory');
    const vs = await violationsSince(app, r.buffer, seq0);
    t.notOk(vs.some((v) => v.kind === 'lost-write' || v.kind === 'stale-read'), 'no data was lost or stale');
    // the ownership rule still holds for a non-coherent device
    t.same(kinds(vs), dev.coherent ? [] : ['cpu-access-while-device-owned']);
  });

  t.test(`${dev.label}: status.coherency counters`, async (t) => {
    const c0 = await cacheStats((await rig(t, warn.socket, { name: `probe-${dev.driver}`, driver: `${dev.driver}-probe`, coherent: dev.coherent })).app);
    const r = await rig(t, warn.socket, { name: `st-${dev.driver}`, driver: `${dev.driver}-st`, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    const L = SIZE / 64;
    const c1 = await cacheStats(app);
    t.equal(c1.prefetches - c0.prefetches, dev.coherent ? 0 : L, 'registering with a non-coherent device prefetches every line');
    t.equal(c1.cachedLines - c0.cachedLines, dev.coherent ? 0 : L);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, pattern(SIZE, 7));
    const c2 = await cacheStats(app);
    t.equal(c2.dirtyLines - c1.dirtyLines, L, 'CPU writes dirty every line');
    t.equal(c2.cachedLines - c0.cachedLines, L);
    await app.sync(h, { phase: 'end', access: 'write' });
    const c3 = await cacheStats(app);
    t.equal(c3.cleans - c2.cleans, L, 'sync end cleans them');
    t.equal(c3.dirtyLines, c1.dirtyLines, 'no dirty line left');
    t.equal(c3.prefetches, c2.prefetches, 'the lines were still cached: nothing to prefetch');
    await app.device.write(r.driver, h, 0, pattern(SIZE, 8));
    const c4 = await cacheStats(app);
    t.equal(c4.invalidates - c3.invalidates, dev.coherent ? L : 0, 'a coherent device write invalidates the lines; a non-coherent one leaves them');
    await app.sync(h, { phase: 'start', access: 'read' });
    const c5 = await cacheStats(app);
    t.equal(c5.invalidates - c4.invalidates, dev.coherent ? 0 : L, 'sync start read invalidates the stale lines');
    t.equal(c5.cachedLines - c0.cachedLines, 0, 'none cached now');
    await app.read(h, 0, SIZE);
    await app.sync(h, { phase: 'end', access: 'read' });
    const c6 = await cacheStats(app);
    t.equal(c6.cachedLines - c0.cachedLines, L, 'the read cached the lines again');
    t.equal(c6.prefetches, c5.prefetches, 'read-allocated lines need no prefetch');
    const w = await rig(t, warn.socket, { name: `stwc-${dev.driver}`, driver: `${dev.driver}-stwc`, coherent: dev.coherent, pool: 'wc', size: 4096 });
    await w.app.sync(w.h, { phase: 'start', access: 'write' });
    await w.app.write(w.h, 0, pattern(320, 9));
    t.equal((await cacheStats(app)).wcPendingLines - c6.wcPendingLines, 5, 'WC writes are pending');
    await w.app.sync(w.h, { phase: 'end', access: 'write' });
    const c7 = await cacheStats(app);
    t.equal(c7.wcFlushes - c6.wcFlushes, 5, 'sync end flushed them');
    t.equal(c7.wcPendingLines, c6.wcPendingLines);
    t.equal(c7.lineSize, 64);
  });
}

t.test('bufctl violations and bufctl status show the recorded violations', async (t) => {
  const r = await rig(t, warn.socket, { name: 'ctl-app', driver: 'ctl', coherent: false, size: SIZE });
  await r.app.sync(r.h, { phase: 'start', access: 'write' });
  await r.app.write(r.h, 0, pattern(SIZE, 10));
  await r.app.sync(r.h, { phase: 'end', access: 'write', offset: 0, length: 64 });
  await r.app.device.read('ctl', r.h, 0, SIZE); // lost-write
  const all = await r.app.violations();
  const lost = all.violations.filter((v) => v.kind === 'lost-write').at(-1)!;
  t.equal(lost.buffer, r.buffer);

  const json = await bufctlHere(warn.socket, 'violations', '--json');
  t.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as typeof all;
  t.same(parsed, all, '--json: the violations op result');
  const k = await bufctlHere(warn.socket, 'violations', '--kind', 'lost-write', '--json');
  const kj = JSON.parse(k.stdout) as typeof all;
  t.ok(kj.violations.length > 0 && kj.violations.every((v) => v.kind === 'lost-write'), '--kind filters');
  const l = JSON.parse((await bufctlHere(warn.socket, 'violations', '--limit', '1', '--json')).stdout) as typeof all;
  t.same(l.violations, [all.violations.at(-1)], '--limit 1: the newest');

  const human = await bufctlHere(warn.socket, 'violations');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, new RegExp(`Coherency checker: mode warn, ${all.total} violation${all.total === 1 ? '' : 's'} since start: .*lost-write ${all.byKind['lost-write']}`));
  for (const h of ['SEQ', 'KIND', 'CLIENT', 'BUFFER', 'DRIVER', 'OP', 'RANGE']) t.match(human.stdout, h, `column ${h}`);
  const row = human.stdout.split('\n').find((x) => new RegExp(`^\\s*${lost.seq}\\s`).test(x));
  t.ok(row, 'a row for the lost-write');
  t.match(row, new RegExp(`lost-write\\s+${r.app.id} ctl-app\\s+${r.buffer}\\s+ctl\\s+device\\.read\\s+0\\+${SIZE}\\s+.*missing sync`), 'kind, client, buffer, driver, op, range, message');

  const st = await bufctlHere(warn.socket, 'status');
  t.equal(st.code, 0, st.stderr);
  const s = (await r.app.status()).coherency;
  t.match(st.stdout, new RegExp(`Coherency: checker warn, prefetch always; ${s.violations.total} violation${s.violations.total === 1 ? '' : 's'} \\(.*lost-write ${s.violations.byKind['lost-write']}`));
  t.match(st.stdout, /cache: \d+ lines? cached \(64 B\), \d+ dirty; cleans \d+, invalidates \d+, prefetches \d+, WC flushes \d+ \(\d+ pending\), evictions 0/);
  t.match(s, { mode: 'warn', prefetch: 'always', violations: { total: all.total, byKind: all.byKind } }, 'status.coherency agrees with the violations op');
});

/** Expect ECOHERENCY of this kind (details.violation), mode strict. */
async function refused(t: Test, p: Promise<unknown>, kind: string, what: string): Promise<ViolationInfo> {
  const e = await rejection(p);
  t.equal(e.code, 'ECOHERENCY', `${what}: ECOHERENCY`);
  const v = (e.details as { violation: ViolationInfo }).violation;
  t.match(v, { kind, mode: 'strict' }, `${what}: details.violation.kind ${kind}`);
  t.match(e.message, kind);
  return v;
}

async function strictChecks(t: Test, d: Daemon, r: Rig, label: string): Promise<void> {
  const { app, h, driver } = r;
  const coherent = driver.startsWith('co');
  const A = pattern(SIZE, 20);
  await syncedWrite(app, h, 0, A);
  t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), A), -1, `${label}: the correct flow works`);
  const B = pattern(SIZE, 21);

  if (!coherent) {
    await refused(t, app.write(h, 0, B), 'cpu-access-while-device-owned', `${label}: write without sync start`);
    t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), A), -1, `${label}: the refused write changed nothing`);
  } else {
    const s0 = await total(app);
    await app.write(h, 0, A);
    t.equal(await total(app), s0, `${label}: a coherent device does not own the buffer`);
  }

  await app.sync(h, { phase: 'start', access: 'read' });
  await refused(t, app.write(h, 0, B), 'cpu-write-in-read-bracket', `${label}: write inside a read bracket`);
  await refused(t, app.sync(h, { phase: 'start', access: 'read' }), 'start-while-open', `${label}: start while open`);
  await app.sync(h, { phase: 'end', access: 'read' });
  await refused(t, app.sync(h, { phase: 'end', access: 'read' }), 'end-without-start', `${label}: end without start`);
  t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), A), -1, `${label}: still the old bytes`);

  await app.sync(h, { phase: 'start', access: 'write' });
  await refused(t, app.device.write(driver, h, 0, B), 'device-access-during-cpu-access', `${label}: device write during CPU access`);
  await refused(t, app.device.read(driver, h, 0, SIZE), 'device-access-during-cpu-access', `${label}: device read during CPU access`);
  await app.sync(h, { phase: 'end', access: 'write' });
  t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), A), -1, `${label}: the refused device write changed nothing`);

  if (!coherent) {
    // lost-write: half the dirty lines not cleaned when the device reads
    const C = pattern(SIZE, 22);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, C);
    await app.sync(h, { phase: 'end', access: 'write', offset: 0, length: SIZE / 2 });
    await refused(t, app.device.read(driver, h, 0, SIZE), 'lost-write', `${label}: device read with dirty lines`);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.sync(h, { phase: 'end', access: 'write' });
    t.equal(firstDiff(await app.device.read(driver, h, 0, SIZE), C), -1, `${label}: after the clean the device reads the CPU's bytes`);
    // stale-read: the device wrote; a bracket opened for 'write' does not invalidate
    const D = pattern(SIZE, 23);
    await app.device.write(driver, h, 0, D);
    await app.sync(h, { phase: 'start', access: 'write' });
    await refused(t, app.read(h, 0, SIZE), 'stale-read', `${label}: read of stale lines`);
    await app.sync(h, { phase: 'end', access: 'write' });
    t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), D), -1, `${label}: the device's bytes are intact`);
  }

  // unsynced unregister: refused for a non-coherent device; a coherent one needs no sync
  await app.sync(h, { phase: 'start', access: 'write' });
  await app.write(h, 0, B);
  if (!coherent) {
    await refused(t, app.unregister(h, driver), 'unsynced-unregister', `${label}: unregister inside a bracket`);
    t.same((await app.info(h)).registrations, [driver], `${label}: still registered`);
    await app.sync(h, { phase: 'end', access: 'write' });
    t.match(await app.unregister(h, driver), { unregistered: true }, `${label}: synced unregister works`);
  } else {
    const s0 = await total(app);
    t.match(await app.unregister(h, driver), { unregistered: true }, `${label}: a coherent device lets go without a sync`);
    t.equal(await total(app), s0, `${label}: nothing recorded`);
    await app.sync(h, { phase: 'end', access: 'write' });
  }
  t.equal(firstDiff(await app.read(h, 0, SIZE), B), -1, `${label}: the CPU owns the bytes again`);
  void d;
}

t.test('strict mode: the offending op fails with ECOHERENCY and changes no data', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, coherency: { mode: 'strict', ringSize: 5 } } });
  for (const dev of DEVICES) {
    const r = await rig(t, d.socket, { name: `strict-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    await strictChecks(t, d, r, dev.label);
  }
  const c = (await rig(t, d.socket, { name: 'strict-status', driver: 'x', coherent: false })).app;
  const v = await c.violations();
  t.equal(v.mode, 'strict');
  t.ok(v.total > 5, 'refused violations are recorded');
  t.equal(v.violations.length, 5, 'the ring keeps the newest ringSize');
  t.equal(v.violations.at(-1)!.seq, v.total, 'newest last');
  t.equal(Object.values(v.byKind).reduce((a, n) => a + n, 0), v.total, 'byKind counts every one, kept or not');
  t.equal((await c.status()).coherency.mode, 'strict');
  t.match((await bufctlHere(d.socket, 'status')).stdout, /Coherency: checker strict, prefetch always/);
});

t.test("a pool's coherency override: strict for 'default', off for 'dma32', warn elsewhere", async (t) => {
  const pools = DEFAULT_MACHINE.pools.map((p) => (p.name === 'default' ? { ...p, coherency: 'strict' as const } : p.name === 'dma32' ? { ...p, coherency: 'off' as const } : p));
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, pools } });
  for (const dev of DEVICES) {
    const r = await rig(t, d.socket, { name: `pool-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    await strictChecks(t, d, r, `${dev.label}, strict pool`);
    // the same mistakes elsewhere: warn ('huge') and off ('dma32')
    for (const [pool, mode] of [['huge', 'warn'], ['dma32', 'off']] as const) {
      const info = await r.app.alloc({ pool, size: SIZE });
      await r.app.register(info.handle, dev.driver);
      const seq0 = await total(r.app);
      await r.app.sync(info.handle, { phase: 'start', access: 'write' });
      await r.app.write(info.handle, 0, pattern(SIZE, 30));
      const got = await r.app.device.read(dev.driver, info.handle, 0, SIZE); // not refused
      t.equal(firstDiff(got, dev.coherent ? pattern(SIZE, 30) : zeros(SIZE)), -1, `${dev.label}, ${pool}: the device read goes through`);
      const vs = await violationsSince(r.app, info.buffer, seq0);
      if (mode === 'off') t.same(vs, [], `${dev.label}, ${pool}: off records nothing`);
      else {
        t.same(kinds(vs), dev.coherent ? ['device-access-during-cpu-access'] : ['device-access-during-cpu-access', 'lost-write'], `${dev.label}, ${pool}: recorded`);
        t.ok(vs.every((v) => v.mode === 'warn'), `${dev.label}, ${pool}: in warn mode`);
      }
      await r.app.sync(info.handle, { phase: 'end', access: 'write' });
    }
  }
  const c = (await rig(t, d.socket, { name: 'pool-status', driver: 'y', coherent: false })).app;
  const v = await c.violations();
  t.equal(v.mode, 'warn', 'the global mode');
  t.ok(v.violations.some((x) => x.mode === 'strict') && v.violations.some((x) => x.mode === 'warn'), 'each violation carries its own mode');
});

t.test('off mode records nothing (the data is still wrong)', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, coherency: { mode: 'off' } } });
  for (const dev of DEVICES) {
    const r = await rig(t, d.socket, { name: `off-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    const A = pattern(SIZE, 40);
    await app.write(h, 0, A); // no sync at all
    const got = await app.device.read(dev.driver, h, 0, SIZE);
    t.equal(firstDiff(got, dev.coherent ? A : zeros(SIZE)), -1, `${dev.label}: ${dev.coherent ? 'snooped' : 'the device reads the old bytes'}`);
    await syncedWrite(app, h, 0, A);
    await app.device.write(dev.driver, h, 0, pattern(SIZE, 41));
    t.equal(firstDiff(await app.read(h, 0, SIZE), dev.coherent ? pattern(SIZE, 41) : A), -1, `${dev.label}: ${dev.coherent ? 'fresh' : 'stale'} bytes, unreported`);
    await app.sync(h, { phase: 'end', access: 'read' }); // end without start
    t.match(await app.unregister(h, dev.driver), { unregistered: true });
    t.same(r.events, [], `${dev.label}: no violation event`);
  }
  const c = (await rig(t, d.socket, { name: 'off-status', driver: 'z', coherent: false })).app;
  t.match(await c.violations(), { mode: 'off', total: 0, violations: [] });
  t.match((await c.status()).coherency, { mode: 'off', violations: { total: 0 } });
  t.notOk(d.logs.some((l) => l['violation'] !== undefined), 'nothing logged');
});

t.test("prefetch 'none': only lines the CPU touched can go stale", async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, coherency: { prefetch: 'none' } } });
  const r = await rig(t, d.socket, { name: 'nopf', driver: 'nc', coherent: false, size: SIZE });
  const { app, h } = r;
  t.match((await app.status()).coherency, { prefetch: 'none', cache: { prefetches: 0, cachedLines: 0 } }, 'registering prefetched nothing');
  const seq0 = await total(app);
  await app.device.write('nc', h, 0, pattern(SIZE, 50));
  t.equal(firstDiff(await app.read(h, 0, SIZE / 2), pattern(SIZE / 2, 50)), -1, 'lines never cached: the unsynced read is right');
  t.same(kinds(await violationsSince(app, r.buffer, seq0)), ['cpu-access-while-device-owned'], 'only the ownership rule');
  const seq1 = await total(app);
  await app.device.write('nc', h, 0, pattern(SIZE, 52));
  const got = await app.read(h, 0, SIZE);
  t.equal(firstDiff(got.subarray(0, SIZE / 2), pattern(SIZE / 2, 50)), -1, 'the half the CPU read (and so cached) is stale');
  t.equal(firstDiff(got.subarray(SIZE / 2), pattern(SIZE, 52).subarray(SIZE / 2)), -1, 'the other half comes from memory');
  t.match(await violationsSince(app, r.buffer, seq1), [{ kind: 'cpu-access-while-device-owned' }, { kind: 'stale-read', range: { offset: 0, length: SIZE / 2 } }]);
  t.equal((await app.status()).coherency.cache.prefetches, 0, 'still no prefetch');
});
