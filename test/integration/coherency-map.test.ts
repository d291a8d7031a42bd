/**
 * CPU mappings and the dma-debug style checks through the real daemon, on a
 * non-coherent and a coherent client driver: map refuses a second cache
 * attribute for the same pages (EINVAL naming both policies); reads and
 * writes through a mapping go through the coherency model; a mapping holds
 * a buffer reference until unmap or disconnect. Unregister of a buffer that
 * isn't registered, sync ranges outside the buffer, unsynced unregister,
 * end without start, start while open and writes inside a read bracket are
 * each reported with client, buffer, driver, op and range.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, rejection, poll } from '../helpers/procs.js';
import { client, nextEvent } from '../helpers/drivers.js';
import { DEVICES, rig, violationsSince, total, kinds, syncedRead, syncedWrite, firstDiff } from '../helpers/coherency.js';
import type { BufferClient, HandleEvent } from '../../client/index.js';

const SIZE = 8192;
const d = await startDaemon(t);
const live = async (c: BufferClient) => (await c.status()).buffers.live;

for (const dev of DEVICES) {
  t.test(`${dev.label}: map refuses another cache attribute; reads and writes through the mapping`, async (t) => {
    const r = await rig(t, d.socket, { name: `map-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    for (const cache of ['writecombine', 'uncached'] as const) {
      const e = await rejection(app.mapRemote(h, { cache }));
      t.equal(e.code, 'EINVAL', `writeback buffer, ${cache} mapping: EINVAL`);
      t.match(e.message, /writeback/, 'the message names the pages\' policy');
      t.match(e.message, cache, 'and the one asked for');
      t.same(e.details, { requested: cache, actual: 'writeback' });
    }
    t.equal((await app.info(h)).refs.mappings, 0, 'a refused map holds nothing');
    const m1 = await app.mapRemote(h);
    t.same(m1, { mapping: m1.mapping, cache: 'writeback', size: SIZE, rights: ['read', 'write', 'share'], bytes: SIZE, fd: false }, 'map with no attribute: the buffer\'s own');
    const m2 = await app.mapRemote(h, { cache: 'writeback' });
    t.not(m2.mapping, m1.mapping, 'a second mapping, a new id');
    t.equal((await app.info(h)).refs.mappings, 2, 'refs.mappings counts both');

    const seq0 = await total(app);
    const A = pattern(SIZE, 1);
    await app.sync(h, { phase: 'start', access: 'write' });
    t.same(await app.write({ mapping: m1.mapping }, 0, A), { written: SIZE });
    await app.sync(h, { phase: 'end', access: 'write' });
    t.equal(firstDiff(await app.device.read(dev.driver, h, 0, SIZE), A), -1, 'the device reads what was written through the mapping');
    const B = pattern(4000, 2, 100);
    await app.device.write(dev.driver, h, 100, B);
    await app.sync(h, { phase: 'start', access: 'read' });
    t.equal(firstDiff(await app.read({ mapping: m2.mapping }, 100, 4000), B), -1, "the other mapping reads the device's bytes");
    await app.sync(h, { phase: 'end', access: 'read' });
    t.same(await violationsSince(app, r.buffer, seq0), [], 'the synced flow through mappings records nothing');

    // the model applies to mappings too: a read without sync start after a device write
    const C = pattern(SIZE, 3);
    await app.device.write(dev.driver, h, 0, C);
    const got = await app.read({ mapping: m1.mapping }, 0, SIZE);
    const vs = await violationsSince(app, r.buffer, seq0);
    if (!dev.coherent) {
      t.not(firstDiff(got, C), -1, 'stale bytes through the mapping');
      t.same(kinds(vs), ['cpu-access-while-device-owned', 'stale-read']);
      t.ok(vs.every((v) => v.op === 'read' && v.client.id === app.id && v.buffer === r.buffer));
    } else {
      t.equal(firstDiff(got, C), -1, 'coherent: fresh bytes');
      t.same(vs, []);
    }

    t.same(await app.unmap(m1.mapping), { mapping: m1.mapping, unmapped: true });
    t.equal((await app.info(h)).refs.mappings, 1);
    for (const [what, p] of [
      ['unmap twice', () => app.unmap(m1.mapping)],
      ['unmap unknown', () => app.unmap(9999)],
      ['read through an unmapped id', () => app.read({ mapping: m1.mapping }, 0, 10)],
      ['write through an unknown id', () => app.write({ mapping: 4242 }, 0, Buffer.from([1]))],
    ] as const) {
      const e = await rejection(p());
      t.equal(e.code, 'EBADF', `${what}: EBADF`);
      t.match(e.message, /mapping \d+ is not open/);
    }
    await app.unmap(m2.mapping);
    t.equal((await app.info(h)).refs.mappings, 0);
  });
}

t.test('write-combine and uncached buffers map with their own policy only', async (t) => {
  const c = await client(t, d.socket, 'policies');
  for (const [pool, own, other] of [['wc', 'writecombine', 'writeback'], ['uncached', 'uncached', 'writecombine']] as const) {
    const h = await c.alloc({ pool, size: 4096 });
    t.match(await c.mapRemote(h.handle, { cache: own }), { cache: own, size: 4096 }, `${pool}: a ${own} mapping`);
    t.match(await c.mapRemote(h.handle), { cache: own }, `${pool}: the default is the buffer's policy`);
    const e = await rejection(c.mapRemote(h.handle, { cache: other }));
    t.equal(e.code, 'EINVAL', `${pool}: a ${other} mapping is refused`);
    t.match(e.message, own);
    t.match(e.message, other);
    const m = await c.mapRemote(h.handle);
    await c.write({ mapping: m.mapping }, 10, Buffer.from('hello'));
    t.same(await c.read({ mapping: m.mapping }, 10, 5), Buffer.from('hello'), `${pool}: the mapping reads its writes`);
  }
});

t.test('a mapping holds the buffer: it survives closing the last handle and is freed at unmap', async (t) => {
  const c = await client(t, d.socket, 'holder');
  const h = await c.alloc({ pool: 'default', size: SIZE });
  await c.write(h.handle, 0, pattern(SIZE, 5));
  const m = await c.mapRemote(h.handle);
  const before = await live(c);
  await c.close(h.handle);
  t.equal(await live(c), before, 'closing the last handle does not free a mapped buffer');
  t.equal(firstDiff(await c.read({ mapping: m.mapping }, 0, SIZE), pattern(SIZE, 5)), -1, 'the mapping still reads the bytes');
  await c.write({ mapping: m.mapping }, 0, Buffer.from([9, 9]));
  t.same(await c.read({ mapping: m.mapping }, 0, 2), Buffer.from([9, 9]));
  t.equal((await rejection(c.mapRemote(h.handle))).code, 'EBADF', 'no handle left to map from');
  await c.unmap(m.mapping);
  t.equal(await live(c), before - 1, 'unmap of the last reference frees it');
});

t.test('a mapping keeps the rights of its handle; disconnect drops the mappings', async (t) => {
  const a = await client(t, d.socket, 'owner');
  const b = await client(t, d.socket, 'reader');
  const h = await a.alloc({ pool: 'default', size: SIZE });
  const got = nextEvent<HandleEvent>(b, 'handle');
  await a.send(h.handle, 'reader', { rights: ['read'] });
  const bh = (await got).handle;
  const m = await b.mapRemote(bh);
  t.same(m.rights, ['read']);
  const m2 = await b.mapRemote(bh);
  const e = await rejection(b.write({ mapping: m.mapping }, 0, Buffer.from([1])));
  t.equal(e.code, 'EPERM', 'writing through a read-only mapping');
  t.match(e.message, /lacks the 'write' right/);
  t.equal((await a.info(h.handle)).refs.mappings, 2, "the owner sees the reader's mappings");

  const before = await live(a);
  await b.close(bh);
  await a.close(h.handle);
  t.equal(await live(a), before, "the reader's mappings keep the buffer");
  t.same(await b.read({ mapping: m2.mapping }, 0, 4), Buffer.alloc(4));
  await b.disconnect();
  t.equal(await poll(() => live(a), (n) => n === before - 1), before - 1, 'disconnect dropped the mappings and freed the buffer');
});

for (const dev of DEVICES) {
  t.test(`${dev.label}: dma-debug checks`, async (t) => {
    const r = await rig(t, d.socket, { name: `dbg-${dev.driver}`, driver: dev.driver, coherent: dev.coherent, size: SIZE });
    const { app, h } = r;
    const who = { id: app.id, name: `dbg-${dev.driver}` };
    const one = async (buffer: number, seq: number, kind: string) => {
      const vs = await violationsSince(app, buffer, seq);
      t.same(kinds(vs), [kind], `exactly one kind: ${kind}`);
      return vs[0]!;
    };

    // unregister of a buffer that isn't registered
    const other = await app.alloc({ pool: 'default', size: 4096 });
    let seq = await total(app);
    let e = await rejection(app.unregister(other.handle, dev.driver));
    t.equal(e.code, 'ENOENT', 'unregister of an unregistered buffer: ENOENT');
    t.match(e.message, `not registered with driver '${dev.driver}'`);
    let v = await one(other.buffer, seq, 'unregister-not-registered');
    t.match(v, { client: who, buffer: other.buffer, driver: dev.driver, op: 'unregister', range: { offset: 0, length: 4096 }, mode: 'warn' });
    t.match(v.message, /which it is not registered with/);

    // sync outside the buffer
    seq = await total(app);
    e = await rejection(app.sync(h, { phase: 'start', access: 'read', offset: SIZE - 10, length: 100 }));
    t.equal(e.code, 'EINVAL', 'sync past the end: EINVAL');
    t.match(e.message, /past the end of the buffer/);
    v = await one(r.buffer, seq, 'sync-out-of-range');
    t.match(v, { client: who, buffer: r.buffer, op: 'sync start', range: { offset: SIZE - 10, length: 100 } });
    t.match(v.message, `size ${SIZE}`);
    seq = await total(app);
    t.equal((await rejection(app.sync(h, { phase: 'end', access: 'write', offset: SIZE + 1 }))).code, 'EINVAL', 'an offset past the end');
    t.match(await one(r.buffer, seq, 'sync-out-of-range'), { op: 'sync end', range: { offset: SIZE + 1 } });
    seq = await total(app);
    await app.sync(h, { phase: 'start', access: 'read' });
    await app.sync(h, { phase: 'end', access: 'read' });
    t.same(await violationsSince(app, r.buffer, seq), [], 'the refused start opened no bracket');
    t.match(await app.sync(h, { phase: 'start', access: 'rw', offset: SIZE, length: 0 }), { phase: 'start' }, 'an empty range at the end is inside');
    await app.sync(h, { phase: 'end', access: 'rw', offset: SIZE, length: 0 });

    // end without start
    seq = await total(app);
    await app.sync(h, { phase: 'end', access: 'write' });
    v = await one(r.buffer, seq, 'end-without-start');
    t.match(v, { client: who, buffer: r.buffer, op: 'sync end', range: { offset: 0, length: SIZE } });
    t.match(v.message, /missing sync \{phase:'start'\}/);

    // start while open
    seq = await total(app);
    await app.sync(h, { phase: 'start', access: 'read' });
    await app.sync(h, { phase: 'start', access: 'write', offset: 64, length: 64 });
    v = await one(r.buffer, seq, 'start-while-open');
    t.match(v, { client: who, buffer: r.buffer, op: 'sync start', range: { offset: 64, length: 64 } });
    t.match(v.message, /without ending the bracket it opened for 'read'/);
    await app.sync(h, { phase: 'end', access: 'write' });

    // direction mismatch: a write inside a read bracket
    seq = await total(app);
    await app.sync(h, { phase: 'start', access: 'read' });
    await app.write(h, 128, Buffer.from('x'));
    await app.sync(h, { phase: 'end', access: 'read' });
    v = await one(r.buffer, seq, 'cpu-write-in-read-bracket');
    t.match(v, { client: who, buffer: r.buffer, op: 'write', range: { offset: 128, length: 1 } });
    t.match(v.message, /opened for 'read': open it for 'write' or 'rw'/);
    seq = await total(app);
    await app.sync(h, { phase: 'start', access: 'rw' });
    await app.write(h, 128, Buffer.from('y'));
    await app.sync(h, { phase: 'end', access: 'rw' });
    t.same(await violationsSince(app, r.buffer, seq), [], "'rw' allows the write");

    // unsynced unregister: a bracket open and dirty lines
    seq = await total(app);
    const U = pattern(256, 7);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, U);
    t.match(await app.unregister(h, dev.driver), { unregistered: true }, 'warn mode: the unregister goes through');
    if (!dev.coherent) {
      v = await one(r.buffer, seq, 'unsynced-unregister');
      t.match(v, { client: who, buffer: r.buffer, driver: dev.driver, op: 'unregister', range: { offset: 0, length: SIZE } });
      t.match(v.message, /4 dirty or pending cache line\(s\) and a CPU bracket open: missing sync \{phase:'end'\}/);
    } else {
      t.same(await violationsSince(app, r.buffer, seq), [], 'a coherent device snoops: nothing has to be synced before unregister');
    }
    await app.sync(h, { phase: 'end', access: 'write' });
    if (dev.coherent) t.equal(firstDiff(await app.read(h, 0, 256), U), -1, "and the CPU's dirty bytes survive it");

    // dirty lines alone (a ranged end missed them)
    await app.register(h, dev.driver);
    await app.sync(h, { phase: 'start', access: 'write' });
    await app.write(h, 0, pattern(SIZE, 8));
    await app.sync(h, { phase: 'end', access: 'write', offset: 0, length: SIZE - 128 });
    seq = await total(app);
    await app.unregister(h, dev.driver);
    if (!dev.coherent) {
      v = await one(r.buffer, seq, 'unsynced-unregister');
      t.match(v.message, /with 2 dirty or pending cache line\(s\): missing/);
      t.notMatch(v.message, /bracket/);
    } else {
      t.same(await violationsSince(app, r.buffer, seq), []);
      t.equal(firstDiff(await app.read(h, 0, SIZE), pattern(SIZE, 8)), -1, 'the unsynced lines were not dropped');
    }

    // synced: a clean unregister
    await app.register(h, dev.driver);
    await syncedWrite(app, h, 0, pattern(SIZE, 9));
    seq = await total(app);
    await app.unregister(h, dev.driver);
    t.same(await violationsSince(app, r.buffer, seq), [], 'a synced unregister records nothing');
    t.equal(firstDiff(await app.read(h, 0, SIZE), pattern(SIZE, 9)), -1, 'after unregister the CPU reads the bytes without syncs');
    t.same(await violationsSince(app, r.buffer, seq), [], 'no ownership once unregistered');
    t.equal(firstDiff(await syncedRead(app, h, 0, SIZE), pattern(SIZE, 9)), -1);
  });
}
