/**
 * Streaming DMA through the real daemon, on a non-coherent client driver and
 * then on a coherent one: the correct flow (CPU writes inside sync
 * start/end write, the device reads them; the device writes, the CPU syncs
 * for read and sees them) records nothing; a missing sync end makes the
 * non-coherent device read old bytes ('lost-write'); a missing sync start
 * read after a device write makes the CPU read stale bytes ('stale-read').
 * A coherent device snoops: the same mistakes lose no data. Each violation
 * names the client, buffer, driver, op and range and the missing call, and
 * reaches every holder of the buffer as a 'violation' event.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern } from '../helpers/procs.js';
import { client, nextEvent } from '../helpers/drivers.js';
import { DEVICES, rig, violationsSince, total, kinds, syncedRead, syncedWrite, atLeast, firstDiff } from '../helpers/coherency.js';
import type { HandleEvent, ViolationEvent } from '../../client/index.js';

const SIZE = 8192;
const LINES = SIZE / 64;

const d = await startDaemon(t);

for (const dev of DEVICES) {
  t.test(`${dev.label}: the correct streaming flow records no violation`, async (t) => {
    const r = await rig(t, d.socket, { name: `ok-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    const before = await total(app);

    // CPU → device
    const A = pattern(SIZE, 1);
    t.match(await app.sync(h, { phase: 'start', access: 'write' }), { phase: 'start', access: 'write', invalidated: 0 }, 'start write invalidates nothing');
    await app.write(h, 0, A);
    const end = await app.sync(h, { phase: 'end', access: 'write' });
    t.match(end, { phase: 'end', access: 'write', cleaned: LINES, flushed: 0 }, 'end write cleans every dirty line');
    t.equal(firstDiff(await app.device.read(dev.driver, h, 0, SIZE), A), -1, 'the device reads what the CPU wrote');
    t.equal(firstDiff(await app.device.read(dev.driver, r.dh, 0, SIZE), A), -1, "through the driver's own handle too");

    // device → CPU
    const B = pattern(SIZE, 2);
    await app.device.write(dev.driver, h, 0, B);
    const start = await app.sync(h, { phase: 'start', access: 'read' });
    t.match(start, { phase: 'start', access: 'read', cleaned: 0 });
    if (!dev.coherent) t.equal(start.invalidated, LINES, 'start read drops the prefetched (now stale) lines');
    t.equal(firstDiff(await app.read(h, 0, SIZE), B), -1, "the CPU reads the device's data");
    await app.sync(h, { phase: 'end', access: 'read' });

    // a sub-range: only [4096, 6144) goes through the bracket
    const C = pattern(2048, 3, 4096);
    await app.sync(h, { phase: 'start', access: 'write', offset: 4096, length: 2048 });
    await app.write(h, 4096, C);
    t.match(await app.sync(h, { phase: 'end', access: 'write', offset: 4096, length: 2048 }), { cleaned: 2048 / 64 }, 'a ranged end cleans the range');
    t.equal(firstDiff(await app.device.read(dev.driver, h, 4096, 2048), C), -1, 'the device reads the ranged write');
    const D = pattern(1024, 4, 100);
    await app.device.write(dev.driver, h, 100, D);
    t.equal(firstDiff(await syncedRead(app, h, 100, 1024), D), -1, "a synced read at an offset sees the device's bytes");

    t.equal(await total(app), before, 'client.violations().total unchanged');
    t.same(await violationsSince(app, r.buffer, 0), [], 'nothing recorded for the buffer');
    t.same(r.events, [], 'no violation event');
  });

  t.test(`${dev.label}: a missing sync end before the device reads`, async (t) => {
    const r = await rig(t, d.socket, { name: `noend-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    const A = pattern(SIZE, 11);
    await syncedWrite(app, h, 0, A);
    const seq0 = await total(app);

    const B = pattern(SIZE, 12);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, B);
    // no sync end: the new bytes are still in dirty cache lines
    const got = await app.device.read(dev.driver, h, 0, SIZE);
    const vs = await violationsSince(app, r.buffer, seq0);
    const dacc = vs.find((v) => v.kind === 'device-access-during-cpu-access');
    t.match(dacc, { client: { id: app.id, name: `noend-${dev.driver}` }, buffer: r.buffer, driver: dev.driver, op: 'device.read', range: { offset: 0, length: SIZE }, mode: 'warn' }, 'the open bracket is reported');
    t.match(dacc?.message, /missing sync \{phase:'end'\}/, 'its message names the missing call');
    if (!dev.coherent) {
      t.equal(firstDiff(got, A), -1, 'the non-coherent device reads the OLD bytes');
      t.same(kinds(vs), ['device-access-during-cpu-access', 'lost-write']);
      const lost = vs.find((v) => v.kind === 'lost-write')!;
      t.match(lost, { client: { id: app.id, name: `noend-${dev.driver}` }, buffer: r.buffer, driver: dev.driver, op: 'device.read', range: { offset: 0, length: SIZE }, mode: 'warn' }, 'lost-write names client, buffer, driver, op and range');
      t.match(lost.message, /missing sync \{phase:'end', access:'write'\}/, 'the message names the missing sync end');
      t.match(lost.message, new RegExp(`${LINES} dirty`), 'and how many lines were dirty');
    } else {
      t.equal(firstDiff(got, B), -1, 'the coherent device snoops the new bytes');
      t.same(kinds(vs), ['device-access-during-cpu-access'], 'no lost-write');
    }
    const evs = await atLeast(r.events, vs.length);
    t.same(evs.map((e) => e.seq).sort(), vs.map((v) => v.seq).sort(), 'each violation reached the holder as an event');

    // the late end makes it right
    await app.sync(h, { phase: 'end', access: 'write' });
    t.equal(firstDiff(await app.device.read(dev.driver, h, 0, SIZE), B), -1, 'after sync end the device reads the new bytes');

    // a partial miss: only the first half is synced; the device reads the second half old
    const C = pattern(SIZE, 13);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, C);
    await app.sync(h, { phase: 'end', access: 'write', offset: 0, length: SIZE / 2 });
    const seq1 = await total(app);
    const half = await app.device.read(dev.driver, h, 0, SIZE);
    t.equal(firstDiff(half.subarray(0, SIZE / 2), C.subarray(0, SIZE / 2)), -1, 'the synced half is new');
    const v2 = await violationsSince(app, r.buffer, seq1);
    if (!dev.coherent) {
      t.equal(firstDiff(half.subarray(SIZE / 2), B.subarray(SIZE / 2)), -1, 'the unsynced half is old');
      t.same(kinds(v2), ['lost-write'], 'lost-write alone (the bracket is closed)');
      t.match(v2[0]!.message, new RegExp(`${LINES / 2} dirty`), 'only the unsynced lines counted');
    } else {
      t.equal(firstDiff(half.subarray(SIZE / 2), C.subarray(SIZE / 2)), -1, 'the coherent device sees the unsynced half too');
      t.same(v2, [], 'nothing recorded');
    }
  });

  t.test(`${dev.label}: a missing sync start read after the device wrote`, async (t) => {
    const r = await rig(t, d.socket, { name: `nostart-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    const A = pattern(SIZE, 21);
    await syncedWrite(app, h, 0, A);
    const seq0 = await total(app);

    const B = pattern(2000, 22, 1000);
    await app.device.write(dev.driver, h, 1000, B);
    const want = Buffer.from(A);
    B.copy(want, 1000);
    const got = await app.read(h, 0, SIZE); // no sync start
    const vs = await violationsSince(app, r.buffer, seq0);
    if (!dev.coherent) {
      t.equal(firstDiff(got, A), -1, 'the CPU reads STALE bytes: the prefetched lines still hold the old data');
      t.same(kinds(vs), ['cpu-access-while-device-owned', 'stale-read']);
      const stale = vs.find((v) => v.kind === 'stale-read')!;
      // the device wrote [1000, 3000): lines 960..3008 are stale
      t.match(stale, { client: { id: app.id, name: `nostart-${dev.driver}` }, buffer: r.buffer, op: 'read', range: { offset: 960, length: 2048 }, mode: 'warn' }, 'stale-read names client, buffer, op and the stale range (whole lines)');
      t.match(stale.message, /missing sync \{phase:'start', access:'read'\}/, 'the message names the missing sync start');
      t.match(stale.message, /32 cache line\(s\)/);
      const own = vs.find((v) => v.kind === 'cpu-access-while-device-owned')!;
      t.match(own, { client: { id: app.id }, buffer: r.buffer, driver: dev.driver, op: 'read', range: { offset: 0, length: SIZE } }, 'the ownership violation names the device');
      t.match(own.message, /missing sync \{phase:'start', access:'read'\}/);
      t.match(own.message, new RegExp(`'${dev.driver}'`));
    } else {
      t.equal(firstDiff(got, want), -1, "coherent: the device's write invalidated the lines; the CPU reads the new bytes");
      t.same(vs, [], 'nothing recorded');
    }

    // with sync start read first, the bytes are right either way
    const seq1 = await total(app);
    t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), want), -1, 'after sync start read the CPU sees the device data');
    t.same(await violationsSince(app, r.buffer, seq1), [], 'and nothing is recorded');
  });

  t.test(`${dev.label}: the stale-read violation names the device`, async (t) => {
    const r = await rig(t, d.socket, { name: `sdrv-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    await syncedWrite(r.app, r.h, 0, pattern(SIZE, 31));
    const seq0 = await total(r.app);
    await r.app.device.write(r.driver, r.h, 0, pattern(SIZE, 32));
    await r.app.read(r.h, 0, SIZE);
    const stale = (await violationsSince(r.app, r.buffer, seq0)).filter((v) => v.kind === 'stale-read');
    if (dev.coherent) t.same(stale, [], 'no stale read on a coherent device');
    else t.match(stale, [{ driver: dev.driver }], 'stale-read names the driver');
  });

  t.test(`${dev.label}: the 'violation' event reaches every holder of the buffer, and only them`, async (t) => {
    const r = await rig(t, d.socket, { name: `ev-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const peer = await client(t, d.socket, `peer-${dev.driver}`);
    const outsider = await client(t, d.socket, `outsider-${dev.driver}`);
    const peerEvents: ViolationEvent[] = [];
    const outsiderEvents: ViolationEvent[] = [];
    peer.on('violation', (e) => peerEvents.push(e));
    outsider.on('violation', (e) => outsiderEvents.push(e));
    const got = nextEvent<HandleEvent>(peer, 'handle');
    await r.app.send(r.h, `peer-${dev.driver}`);
    await got;
    // the outsider holds a buffer of its own, not this one
    await outsider.alloc({ pool: 'default', size: 4096 });

    const seq0 = await total(r.app);
    await r.app.sync(r.h, { phase: 'start', access: 'write' });
    await r.app.write(r.h, 0, pattern(SIZE, 41));
    await r.app.device.read(r.driver, r.h, 0, SIZE); // bracket still open
    await r.app.sync(r.h, { phase: 'end', access: 'write' });
    const vs = await violationsSince(r.app, r.buffer, seq0);
    t.same(kinds(vs), dev.coherent ? ['device-access-during-cpu-access'] : ['device-access-during-cpu-access', 'lost-write']);
    await atLeast(peerEvents, vs.length);
    await atLeast(r.events, vs.length);
    for (const evs of [r.events, peerEvents]) {
      t.same(evs.map((e) => e.seq), vs.map((v) => v.seq), 'one event per violation, in order');
      for (const [i, e] of evs.entries()) t.same(e, { event: 'violation', ...vs[i] }, `event ${e.kind}: the recorded violation`);
    }
    t.same(outsiderEvents, [], 'a client not holding the buffer hears nothing');
    const logged = await d.waitForLog((l) => l['violation'] === 'device-access-during-cpu-access' && l['buffer'] === r.buffer);
    t.match(logged, { level: 40, client: r.app.id, driver: r.driver, op: 'device.read', mode: 'warn', msg: /missing sync/ }, 'the violation is logged as a warning');
  });
}

t.test('small buffers sharing a cache line keep their CPU writes when a neighbour is allocated or freed', async (t) => {
  const c = await client(t, d.socket, 'small');
  const line = (a: number) => Math.floor(a / 64);
  const X = Buffer.alloc(40, 0x58);
  // 48-byte class: find two neighbours whose slots share a 64-byte line (x is written before y is allocated)
  let x = await c.alloc({ pool: 'default', size: 40 });
  await c.write(x.handle, 0, X);
  let y = await c.alloc({ pool: 'default', size: 40 });
  for (let i = 0; i < 4 && line(x.segments[0]!.addr + 39) !== line(y.segments[0]!.addr); i++) {
    x = y;
    await c.write(x.handle, 0, X);
    y = await c.alloc({ pool: 'default', size: 40 });
  }
  t.equal(line(x.segments[0]!.addr + 39), line(y.segments[0]!.addr), 'precondition: x and y share a cache line');
  t.same(await c.read(x.handle, 0, 40), X, "allocating a neighbour does not drop x's unwritten-back bytes");
  const Y = Buffer.alloc(40, 0x59);
  await c.write(y.handle, 0, Y);
  await c.close(x.handle);
  t.same(await c.read(y.handle, 0, 40), Y, "freeing a neighbour does not drop y's bytes");
});
