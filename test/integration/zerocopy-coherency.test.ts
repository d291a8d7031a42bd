/**
 * The coherency model through real mappings (client.map: the CPU's view of
 * the buffer, no request per access). A write-back buffer registered with a
 * built-in non-coherent device — 'video' (IOMMU) and 'capture' (bounces
 * above 4 GiB) — keeps its CPU view and memory apart, both when it is
 * mapped before the registration and after it:
 *   (a) stores through the mapping without sync are lost to the device
 *       (device.read returns the old bytes, `lost-write`);
 *   (b) the device's writes are not in the mapping until sync start read;
 *   (c) stores through the mapping while the device owns the buffer are
 *       reported (`cpu-access-while-device-owned`) at the next sync start
 *       or device access;
 *   (d) the correct brackets move the bytes both ways and record nothing.
 * With uncached or write-combine pages, or a coherent device, the mapping
 * is memory: the device sees CPU stores without sync, and the mapping the
 * device's writes.
 */
import t, { type Test } from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, sha256 } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { violationsSince, total, kinds } from '../helpers/coherency.js';
import { patternSha, KiB, MiB, PAGE } from '../helpers/zerocopy.js';
import type { ViolationInfo } from '../../client/index.js';

const d = await startDaemon(t, { logLevel: 'info' });
const SIZE = 64 * KiB;
const OLD = 1;
const NEW = 2;
const DEV = 3;

const DEVICES = ['video', 'capture'] as const;
const ORDERS = ['mapped, then registered', 'registered, then mapped'] as const;

/** A client, a write-back buffer holding pattern OLD, mapped here and registered with `dev` in `order`. */
async function rig(t: Test, name: string, dev: string, order: (typeof ORDERS)[number], opts: { pool?: string; size?: number } = {}) {
  const size = opts.size ?? SIZE;
  const c = await client(t, d.socket, name);
  const info = await c.alloc({ pool: opts.pool ?? 'default', size });
  const h = info.handle;
  await c.write(h, 0, pattern(size, OLD));
  let m;
  if (order === 'mapped, then registered') {
    m = await c.map(h);
    await c.register(h, dev);
  } else {
    await c.register(h, dev);
    m = await c.map(h);
  }
  const mapping = m;
  t.teardown(() => mapping.unmap());
  t.equal(sha256(m.bytes), patternSha(size, OLD), 'the mapping starts with the bytes written before');
  const seq0 = await total(c);
  return { c, h, m, buffer: info.buffer, info, seq0, size, since: () => violationsSince(c, info.buffer, seq0) };
}

const only = (vs: ViolationInfo[], kind: string) => vs.filter((v) => v.kind === kind);

for (const dev of DEVICES) {
  for (const [o, order] of ORDERS.entries()) {
    const tag = `${dev}-${o}`;

    t.test(`${dev}, ${order}: (a) a store through the mapping without sync is a lost write`, async (t) => {
      const r = await rig(t, `lost-${tag}`, dev, order);
      r.m.bytes.set(pattern(SIZE, NEW));
      t.equal(sha256(await r.c.read(r.h, 0, SIZE)), patternSha(SIZE, NEW), "the CPU's own read (through the daemon) sees its store");
      const got = await r.c.device.read(dev, r.h, 0, SIZE);
      t.equal(sha256(got), patternSha(SIZE, OLD), 'device.read returns the OLD bytes: the store never reached memory');
      const vs = await r.since();
      t.equal(only(vs, 'lost-write').length, 1, 'one lost-write recorded');
      t.match(only(vs, 'lost-write')[0], { driver: dev, op: 'device.read', buffer: r.buffer, client: { id: r.c.id }, message: /missing sync \{phase:'end', access:'write'\}/ });
    });

    t.test(`${dev}, ${order}: (b) the device's write is not in the mapping until sync start read`, async (t) => {
      const r = await rig(t, `stale-${tag}`, dev, order);
      await r.c.device.write(dev, r.h, 0, pattern(SIZE, DEV));
      t.equal(sha256(r.m.bytes), patternSha(SIZE, OLD), 'without sync start the mapping still shows the old bytes');
      await r.c.sync(r.h, { phase: 'start', access: 'read' });
      t.equal(sha256(r.m.bytes), patternSha(SIZE, DEV), "after sync start read the mapping shows the device's bytes");
      await r.c.sync(r.h, { phase: 'end', access: 'read' });
      t.same(await r.since(), [], 'a read through a mapping is invisible: nothing recorded');
    });

    t.test(`${dev}, ${order}: (c) a store through the mapping while the device owns the buffer is reported at the next sync start`, async (t) => {
      const r = await rig(t, `owned-sync-${tag}`, dev, order);
      r.m.bytes.set(pattern(PAGE, NEW, 2 * PAGE), 2 * PAGE);
      t.same(await r.since(), [], 'the store itself is invisible to the daemon');
      await r.c.sync(r.h, { phase: 'start', access: 'write' });
      const vs = await r.since();
      t.same(kinds(vs), ['cpu-access-while-device-owned'], 'reported when the CPU takes the buffer back');
      t.match(vs[0], { op: 'sync start', driver: dev, buffer: r.buffer, client: { id: r.c.id }, message: /1 page\(s\) through a mapping/ });
      await r.c.sync(r.h, { phase: 'end', access: 'write' });
      t.equal(sha256((await r.c.device.read(dev, r.h, 2 * PAGE, PAGE))), patternSha(PAGE, NEW, 2 * PAGE), 'sync end publishes the store: the device reads it');
      t.equal((await r.since()).length, 1, 'nothing more recorded');
    });

    t.test(`${dev}, ${order}: (c) … or at the next device access to those pages`, async (t) => {
      const r = await rig(t, `owned-dev-${tag}`, dev, order);
      r.m.bytes.set(pattern(2 * PAGE, NEW), 0);
      await r.c.device.write(dev, r.h, 0, pattern(4 * PAGE, DEV));
      const vs = await r.since();
      t.same(kinds(vs), ['cpu-access-while-device-owned'], 'reported at the device write over the stored pages');
      t.match(vs[0], { op: 'device.write', driver: dev, buffer: r.buffer, client: { id: r.c.id }, message: /2 page\(s\) through a mapping/ });
      await r.c.device.fill(dev, r.h, 0, 4 * PAGE, 7);
      t.equal((await r.since()).length, 1, 'once per ownership: the next device access does not report it again');
      await r.c.sync(r.h, { phase: 'start', access: 'read' });
      t.equal(Buffer.from(r.m.bytes.subarray(0, 4 * PAGE)).every((x) => x === 7), true, "sync start read: the device's bytes replace the store in the mapping");
      await r.c.sync(r.h, { phase: 'end', access: 'read' });
      t.equal((await r.since()).length, 1);
    });

    t.test(`${dev}, ${order}: (c) a store reported nowhere else is reported by the next sync start at the latest`, async (t) => {
      const r = await rig(t, `owned-late-${tag}`, dev, order);
      r.m.bytes.set(pattern(PAGE, NEW, 3 * PAGE), 3 * PAGE);
      // device accesses of other pages, then the CPU takes the buffer back
      await r.c.device.write(dev, r.h, 8 * PAGE, pattern(PAGE, DEV, 8 * PAGE));
      await r.c.device.read(dev, r.h, 10 * PAGE, PAGE);
      await r.c.sync(r.h, { phase: 'start', access: 'write' });
      const vs = await r.since();
      t.same(kinds(vs), ['cpu-access-while-device-owned'], 'one report');
      t.equal(vs.length, 1);
      await r.c.sync(r.h, { phase: 'end', access: 'write' });
    });

    t.test(`${dev}, ${order}: (d) the correct brackets move the bytes both ways and record nothing`, async (t) => {
      const r = await rig(t, `bracket-${tag}`, dev, order);
      await r.c.sync(r.h, { phase: 'start', access: 'rw' });
      r.m.bytes.set(pattern(SIZE, NEW));
      await r.c.sync(r.h, { phase: 'end', access: 'rw' });
      t.equal(sha256(await r.c.device.read(dev, r.h, 0, SIZE)), patternSha(SIZE, NEW), 'sync start rw, store, sync end rw: device.read sees the new bytes');
      await r.c.device.write(dev, r.h, 0, pattern(SIZE, DEV));
      await r.c.sync(r.h, { phase: 'start', access: 'read' });
      t.equal(sha256(r.m.bytes), patternSha(SIZE, DEV), "device.write, sync start read: the mapping sees the device's bytes");
      await r.c.sync(r.h, { phase: 'end', access: 'read' });
      t.same(await r.since(), [], 'no violation');
      await r.c.unregister(r.h, dev);
      t.same(await r.since(), [], 'unregister after the brackets: still none');
      t.equal(sha256(r.m.bytes), patternSha(SIZE, DEV), 'unregistered: the mapping is memory again and keeps the bytes');
    });
  }
}

t.test('a write-back mapping with unpublished stores at unregister: unsynced-unregister', async (t) => {
  const r = await rig(t, 'unsynced', 'video', 'mapped, then registered');
  await r.c.sync(r.h, { phase: 'start', access: 'write' });
  r.m.bytes.set(pattern(PAGE, NEW), 0);
  await r.c.unregister(r.h, 'video');
  const vs = await r.since();
  t.match(only(vs, 'unsynced-unregister')[0], { driver: 'video', op: 'unregister', message: /1 page\(s\) of the CPU view not published to memory and a CPU bracket open/ });
});

t.test("mapped inside the CPU's bracket: its unwritten-back stores are in the mapping and reach the device at sync end", async (t) => {
  const c = await client(t, d.socket, 'dirty-promote');
  const info = await c.alloc({ pool: 'default', size: SIZE });
  const h = info.handle;
  await c.write(h, 0, pattern(SIZE, OLD));
  await c.register(h, 'video');
  const seq0 = await total(c);
  await c.sync(h, { phase: 'start', access: 'rw' });
  await c.write(h, 0, pattern(SIZE, NEW)); // dirty lines in the CPU cache model, not in memory yet
  const m = await c.map(h);
  t.teardown(() => m.unmap());
  t.equal(sha256(m.bytes), patternSha(SIZE, NEW), "the mapping shows the CPU's stores (what the CPU reads)");
  m.bytes.set(pattern(PAGE, DEV), 5 * PAGE);
  await c.sync(h, { phase: 'end', access: 'rw' });
  const want = pattern(SIZE, NEW);
  pattern(PAGE, DEV).copy(want, 5 * PAGE);
  t.equal(sha256(await c.device.read('video', h, 0, SIZE)), sha256(want), 'sync end: the device reads both the stores made before the mapping and through it');
  t.same(await violationsSince(c, info.buffer, seq0), [], 'a correct flow: nothing recorded');
});

t.test('mapped while the device owns it after a device write: with no CPU store, a device read and unregister record nothing', async (t) => {
  // the prefetch on register filled the CPU cache with OLD; the device then writes DEV: the lines are stale but clean
  const c = await client(t, d.socket, 'stale-promote');
  const info = await c.alloc({ pool: 'default', size: SIZE });
  const h = info.handle;
  await c.write(h, 0, pattern(SIZE, OLD));
  await c.register(h, 'video');
  await c.device.write('video', h, 0, pattern(SIZE, DEV));
  const seq0 = await total(c);
  const m = await c.map(h);
  t.teardown(() => m.unmap());
  t.equal(sha256(await c.device.read('video', h, 0, SIZE)), patternSha(SIZE, DEV), 'the device reads its own bytes back');
  t.same(kinds(await violationsSince(c, info.buffer, seq0)), [], 'nobody stored anything: no lost-write');
  const seq1 = await total(c);
  await c.unregister(h, 'video');
  t.same(kinds(await violationsSince(c, info.buffer, seq1)), [], 'nothing to publish: no unsynced-unregister');
  t.equal(sha256(m.bytes), patternSha(SIZE, DEV), "unregistered (dma_unmap): the mapping shows the device's bytes");
});

t.test('the same flow without the mapping records nothing (control for the test above)', async (t) => {
  const c = await client(t, d.socket, 'stale-lines');
  const info = await c.alloc({ pool: 'default', size: SIZE });
  const h = info.handle;
  await c.write(h, 0, pattern(SIZE, OLD));
  await c.register(h, 'video');
  await c.device.write('video', h, 0, pattern(SIZE, DEV));
  const seq0 = await total(c);
  t.equal(sha256(await c.device.read('video', h, 0, SIZE)), patternSha(SIZE, DEV), 'the device reads its own bytes back');
  await c.unregister(h, 'video');
  t.same(await violationsSince(c, info.buffer, seq0), [], 'no violation in the line model');
});

for (const mapped of [true, false]) {
  t.test(`sync start write after a device write, a 16-byte store${mapped ? ' through the mapping' : ' (no mapping: the line model, control)'}, sync end write: the device keeps its bytes elsewhere`, async (t) => {
    const c = await client(t, d.socket, `partial-${mapped}`);
    const info = await c.alloc({ pool: 'default', size: SIZE });
    const h = info.handle;
    await c.write(h, 0, pattern(SIZE, OLD));
    const m = mapped ? await c.map(h) : null;
    if (m !== null) t.teardown(() => m.unmap());
    await c.register(h, 'video');
    await c.device.write('video', h, 0, pattern(SIZE, DEV));
    const seq0 = await total(c);
    // a correct bracket for a CPU that only writes: 'write' needs no invalidate; stale lines are clean and never written back
    await c.sync(h, { phase: 'start', access: 'write' });
    if (m !== null) m.bytes.fill(9, 0, 16);
    else await c.write(h, 0, Buffer.alloc(16, 9));
    await c.sync(h, { phase: 'end', access: 'write' });
    const got = await c.device.read('video', h, 0, SIZE);
    t.same([...got.subarray(0, 16)], Array(16).fill(9), "the device reads the CPU's 16 bytes");
    // the dirty line goes back whole: its other 48 bytes are the CPU's stale copy; the rest of the page is the device's
    t.same(got.subarray(16, 64), pattern(SIZE, OLD).subarray(16, 64), 'the rest of the written-back line is what the CPU had cached');
    t.same(got.subarray(64, PAGE), pattern(SIZE, DEV).subarray(64, PAGE), 'the lines the CPU did not store to keep the device bytes');
    t.equal(sha256(got.subarray(PAGE)), patternSha(SIZE - PAGE, DEV, PAGE), "pages the CPU never touched keep the device's bytes");
    t.same(await violationsSince(c, info.buffer, seq0), [], 'nothing recorded');
  });
}

const MEMORY = [
  { label: "uncached pages, non-coherent 'gpu'", pool: 'uncached', dev: 'gpu', size: SIZE },
  { label: "write-combine pages, non-coherent 'gpu'", pool: 'wc', dev: 'gpu', size: 2 * MiB },
  { label: "write-back pages, coherent 'nic'", pool: 'default', dev: 'nic', size: SIZE },
] as const;

for (const [i, x] of MEMORY.entries()) {
  for (const order of ORDERS) {
    t.test(`${x.label}, ${order}: the mapping is memory`, async (t) => {
      const r = await rig(t, `memory-${i}-${order.length}`, x.dev, order, { pool: x.pool, size: x.size });
      t.equal(r.m.cache, r.info.cache, `the mapping carries the pages' policy (${r.info.cache})`);
      r.m.bytes.set(pattern(x.size, NEW));
      t.equal(sha256(await r.c.device.read(x.dev, r.h, 0, x.size)), patternSha(x.size, NEW), 'the device sees stores through the mapping without sync');
      await r.c.device.write(x.dev, r.h, 0, pattern(x.size, DEV));
      t.equal(sha256(r.m.bytes), patternSha(x.size, DEV), "the mapping sees the device's write without sync");
      t.same(only(await r.since(), 'lost-write'), [], 'no lost write');
      t.same(kinds(await r.since()), [], 'nothing recorded');
    });
  }
}
