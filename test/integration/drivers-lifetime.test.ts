/**
 * Registrations and buffer lifetime: a registration holds a reference, so a
 * registered buffer outlives its handles until unregistered; client drivers
 * (a separate process with the 'driver' capability) get a handle per
 * registration, only they may drive their device, and unregister closes the
 * handle; a departed driver or registrant leaves leaks, reported to the
 * buffer's holders, counted, and the buffers are freed once nothing holds
 * them. Plus the error cases: EPERM, EEXIST, EBUSY, ENOENT, EINVAL.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, sha256, poll, rejection } from '../helpers/procs.js';
import { spawnDeviceClient, client, driverStatus, nextEvent, collect, KiB, MiB } from '../helpers/drivers.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { BufferClient, HandleInfo, LeakEvent, Status } from '../../client/index.js';

const poolBuffers = async (c: BufferClient, pool: string) => (await c.status()).pools.find((p) => p.name === pool)!.buffers;
const live = async (c: BufferClient) => (await c.status()).buffers.live;
const equalTo = (len: number, seed: number, off = 0) => ({ equal: true, length: len, firstMismatch: -1, sha256: sha256(pattern(len, seed, off)) });

t.test('a registered buffer survives its handles; unregister {buffer} by the registrant frees it', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const other = await client(t, d.socket, 'other');
  const h = await app.alloc({ pool: 'contig', size: 64 * KiB, align: 64 * KiB });
  await app.write(h.handle, 0, pattern(64 * KiB, 7));
  await app.register(h.handle, 'jpeg');
  t.match(await app.info(h.handle), { refs: { handles: 1, registrations: 1 }, registrations: ['jpeg'] });
  const ohEv = nextEvent<{ handle: number }>(other, 'handle');
  await app.send(h.handle, 'other', { rights: ['read'] });
  const oh = (await ohEv).handle;
  const n0 = await poolBuffers(app, 'contig');

  await app.close(h.handle);
  t.equal(await poolBuffers(app, 'contig'), n0, 'closing the registrant\'s handle frees nothing');
  t.match(await other.info(oh), { refs: { handles: 1, registrations: 1 }, registrations: ['jpeg'], holders: 1 }, 'another holder sees the registration');
  await other.close(oh);
  t.equal(await poolBuffers(app, 'contig'), n0, 'no handle at all: the registration keeps it');
  t.equal(await live(app), 1);
  t.match(await driverStatus(app, 'jpeg'), { registrations: 1, bytes: 64 * KiB });

  t.match(await rejection(other.unregister({ buffer: h.buffer }, 'jpeg')), { code: 'ENOENT', message: /made by this client/ }, 'only the registrant may unregister by buffer id');
  t.match(await rejection(app.request('unregister', { driver: 'jpeg' })), { code: 'EINVAL' }, 'neither handle nor buffer');
  t.same(await app.unregister({ buffer: h.buffer }, 'jpeg'), { driver: 'jpeg', buffer: h.buffer, unregistered: true });
  t.equal(await poolBuffers(app, 'contig'), n0 - 1, 'freed with the registration');
  t.equal(await live(app), 0);
  t.match(await rejection(app.unregister({ buffer: h.buffer }, 'jpeg')), { code: 'ENOENT' }, 'gone');
  t.equal((await app.status()).dma.leaks, 0);
});

t.test('a client driver in its own process: registration events, its device, unregistration', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const other = await client(t, d.socket, 'other');
  const drv = await spawnDeviceClient(t, d.socket, 'camdrv');
  t.ok((drv.ready['capabilities'] as string[]).includes('driver'));
  t.same(await drv.call('attachDriver', 'cam', { dmaMask: 32, cache: ['writecombine', 'uncached'] }), { name: 'cam', constraints: { dmaMask: 32, cache: ['writecombine', 'uncached'] } });
  t.match(await driverStatus(app, 'cam'), { kind: 'client', owner: drv.id, registrations: 0, iommu: false });
  t.match(await app.constraints('cam'), { driver: 'cam', kind: 'client', constraints: { dmaMask: 32 } });

  const SIZE = 96 * KiB;
  const h = await app.alloc({ pool: 'contig', size: SIZE });
  await app.write(h.handle, 0, pattern(SIZE, 21));
  const r = await app.register(h.handle, 'cam');
  t.same(r, { driver: 'cam', buffer: h.buffer, deviceAddress: h.segments[0]!.addr, segments: h.segments, iommu: null, bounced: 0, direction: 'bidirectional' });
  const ev = await drv.wait((l) => l['event'] === 'registration', 'the registration event');
  t.match(ev, { driver: 'cam', buffer: h.buffer, size: SIZE, deviceAddress: r.deviceAddress, segments: r.segments, registrant: app.id, rights: ['read', 'write'] });
  const dh = ev['handle'] as number;
  t.match(await drv.call<HandleInfo>('info', dh), { buffer: h.buffer, rights: ['read', 'write'], registrations: ['cam'] }, 'a handle in the driver\'s own table');
  t.match(await app.info(h.handle), { holders: 2, refs: { handles: 2, registrations: 1 } });
  t.match(await rejection(drv.call('send', dh, 'other')), { code: 'EPERM' }, 'the driver\'s handle cannot be passed on');

  // the driver acts as the device on its handle
  t.same(await drv.cmd('devverify', { driver: 'cam', handle: dh, length: SIZE, seed: 21 }), equalTo(SIZE, 21), 'the device reads what the app wrote');
  await drv.cmd('devfill', { driver: 'cam', handle: dh, offset: 4000, length: 9000, seed: 22 });
  t.ok((await app.read(h.handle, 4000, 9000)).equals(pattern(9000, 22, 4000)), 'the app sees what the device wrote');
  // nobody else can drive it
  t.match(await rejection(app.device.read('cam', h.handle, 0, 16)), { code: 'EPERM', message: /client driver/ }, 'the app gets EPERM');
  t.match(await rejection(app.device.write('cam', h.handle, 0, Buffer.alloc(4))), { code: 'EPERM' });
  const ohEv = nextEvent<{ handle: number }>(other, 'handle');
  await app.send(h.handle, 'other');
  const oh = (await ohEv).handle;
  t.match(await rejection(other.device.fill('cam', oh, 0, 4, 1)), { code: 'EPERM' }, 'another holder gets EPERM');
  t.match(await rejection(other.register(oh, 'cam')), { code: 'EBUSY', message: /already registered/ }, 'registering twice is EBUSY');
  t.match(await rejection(app.register(h.handle, 'cam')), { code: 'EBUSY' });

  // a registration made through a read-only handle gives the driver a read-only handle
  const h2 = await app.alloc({ pool: 'contig', size: 8 * KiB });
  const o2Ev = nextEvent<{ handle: number }>(other, 'handle');
  await app.send(h2.handle, 'other', { rights: ['read'] });
  const o2 = (await o2Ev).handle;
  await other.register(o2, 'cam');
  const ev2 = await drv.wait((l) => l['event'] === 'registration' && l['buffer'] === h2.buffer, 'the second registration');
  t.match(ev2, { registrant: other.id, rights: ['read'] });
  t.match(await rejection(drv.cmd('devfill', { driver: 'cam', handle: ev2['handle'], length: 8, seed: 1 })), { code: 'EPERM', message: /'write' right/ });
  t.match(await driverStatus(app, 'cam'), { registrations: 2, bytes: SIZE + 8 * KiB, registered: 2 });

  // unregister: the driver is told and its handle is closed
  await app.unregister(h.handle, 'cam');
  const un = await drv.wait((l) => l['event'] === 'unregistration', 'the unregistration event');
  t.same(un, { event: 'unregistration', driver: 'cam', handle: dh, buffer: h.buffer, closed: true });
  t.match(await rejection(drv.call('info', dh)), { code: 'EBADF' }, 'the driver\'s handle is closed');
  t.match(await app.info(h.handle), { refs: { handles: 2, registrations: 0 }, registrations: [] });
  t.match(await rejection(other.unregister(oh, 'cam')), { code: 'ENOENT' }, 'no longer registered');
  // unregister by handle works for any holder; by buffer only for the registrant
  t.match(await rejection(app.unregister({ buffer: h2.buffer }, 'cam')), { code: 'ENOENT' });
  await app.unregister(h2.handle, 'cam');
  await drv.wait((l) => l['event'] === 'unregistration' && l['buffer'] === h2.buffer, 'the second unregistration');
  t.match(await driverStatus(app, 'cam'), { registrations: 0, bytes: 0, leaks: 0 });
  await drv.cmd('exit');
});

t.test(
  'unregistration closes only the handle the registration opened, not one the driver got later with the same number',
  async (t) => {
    const d = await startDaemon(t);
    const app = await client(t, d.socket, 'app');
    const drv = await client(t, d.socket, 'drv');
    await drv.attachDriver('cam', {});
    const h = await app.alloc({ pool: 'default', size: 8 * KiB });
    const regEv = nextEvent<{ handle: number }>(drv, 'registration');
    await app.register(h.handle, 'cam');
    const dh = (await regEv).handle;
    await drv.close(dh); // the driver closes its registration handle early
    const sentEv = nextEvent<{ handle: number }>(drv, 'handle');
    await app.send(h.handle, 'drv'); // and later gets the buffer by passing: the lowest free number, the same one
    const sent = (await sentEv).handle;
    t.equal(sent, dh, 'the same handle number, legitimately the driver\'s');
    const unEv = nextEvent(drv, 'unregistration');
    await app.unregister(h.handle, 'cam');
    await unEv;
    t.match(await drv.info(sent), { buffer: h.buffer, rights: ['read', 'write', 'share'] }, 'the passed handle is still open');
  },
);

t.test('a client driver disconnects with registrations: leaks reported, buffers freed', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const leaks = collect<LeakEvent>(app, 'leak');
  const drv = await spawnDeviceClient(t, d.socket, 'sinkdrv');
  await drv.call('attachDriver', 'sink', {});
  const kept = await app.alloc({ pool: 'default', size: 40 * KiB });
  const dropped = await app.alloc({ pool: 'default', size: 50 * KiB });
  await app.register(kept.handle, 'sink');
  await app.register(dropped.handle, 'sink');
  await drv.wait((l) => l['event'] === 'registration' && l['buffer'] === dropped.buffer, 'both registrations');
  await app.close(dropped.handle);
  t.equal(await live(app), 2);
  const leaks0 = (await app.status()).dma.leaks;

  drv.kill('SIGKILL');
  const st = await poll(
    () => app.status(),
    (s: Status) => !s.drivers.some((x) => x.name === 'sink'),
  );
  t.notOk(st.drivers.some((x) => x.name === 'sink'), 'the driver is gone with its client');
  t.equal(st.dma.leaks, leaks0 + 2, 'both registrations counted as leaks');
  t.equal(st.buffers.live, 1, 'the buffer nothing else held is freed');
  await poll(async () => leaks.length, (n) => n >= 1);
  t.same(
    leaks.map((l) => ({ ...l })),
    [{ event: 'leak', driver: 'sink', buffer: kept.buffer, registrant: app.id, reason: 'client driver disconnected' }],
    'a leak event to the holder of the kept buffer only',
  );
  t.match(await app.info(kept.handle), { registrations: [], refs: { handles: 1, registrations: 0 } });
  const logged = await d.waitForLog((l) => /DMA registration leaked/.test(String(l['msg'])) && l['buffer'] === dropped.buffer);
  t.match(logged, { driver: 'sink', reason: 'client driver disconnected' });

  // the name is free again; detach reports leaks the same way
  const drv2 = await client(t, d.socket, 'drv2', { useCookie: false });
  await drv2.attachDriver('sink', {});
  await app.register(kept.handle, 'sink');
  t.match(await rejection(app.detachDriver('sink')), { code: 'EPERM', message: /not attached by this connection/ });
  t.same(await drv2.detachDriver('sink'), { name: 'sink', leaks: 1 });
  await poll(async () => leaks.length, (n) => n >= 2);
  t.match(leaks[1], { driver: 'sink', buffer: kept.buffer, reason: 'driver detached' });
  t.match(await driverStatus(app, 'gpu'), { leaks: 0 });
  t.equal((await app.status()).dma.leaks, leaks0 + 3);
  t.match(await rejection(app.constraints('sink')), { code: 'ENOENT' });
});

t.test('the registrant disconnects: its registration with a client driver leaks to the driver', async (t) => {
  const d = await startDaemon(t);
  const obs = await client(t, d.socket, 'observer');
  const drv = await client(t, d.socket, 'drv');
  await drv.attachDriver('sink', {});
  const app = await spawnDeviceClient(t, d.socket, 'app');
  const h = await app.call<HandleInfo>('alloc', { pool: 'default', size: 20 * KiB });
  await app.cmd('fill', { handle: h.handle, length: 20 * KiB, seed: 3 });
  const regEv = nextEvent<{ handle: number }>(drv, 'registration');
  await app.call('register', h.handle, 'sink');
  const dh = (await regEv).handle;
  const leakEv = nextEvent<LeakEvent>(drv, 'leak');
  const unEv = nextEvent<{ handle: number }>(drv, 'unregistration');
  app.kill('SIGKILL');
  t.match(await leakEv, { driver: 'sink', buffer: h.buffer, registrant: app.id, reason: 'registering client disconnected' });
  t.match(await unEv, { handle: dh, buffer: h.buffer });
  t.match(await rejection(drv.info(dh)), { code: 'EBADF' });
  t.match(await driverStatus(obs, 'sink'), { registrations: 0, leaks: 1 });
  t.equal((await poll(() => obs.status(), (s) => s.buffers.live === 0)).buffers.live, 0, 'freed: nothing holds it');
});

t.test('errors: EPERM without the driver capability, EEXIST, ENOENT, EINVAL', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, auth: { anonymous: { capabilities: [] }, cookie: true } } });
  const anon = await client(t, d.socket, 'anon');
  t.match(await rejection(anon.attachDriver('mine', {})), { code: 'EPERM', message: /driver/ }, 'attach needs the driver capability');
  t.match(await rejection(anon.alloc({ for: ['gpu'], size: 4096 })), { code: 'EPERM', message: /alloc:/ }, 'every pool that fits the gpu needs a capability');
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  t.same(await admin.attachDriver('mine', { align: 4096 }), { name: 'mine', constraints: { align: 4096 } });
  t.match(await rejection(admin.attachDriver('gpu', {})), { code: 'EEXIST', message: /builtin/ }, 'a built-in name');
  const admin2 = await client(t, d.socket, 'admin2', { useCookie: true });
  t.match(await rejection(admin2.attachDriver('mine', {})), { code: 'EEXIST', message: /client/ }, 'another client\'s driver');
  t.match(await rejection(admin2.detachDriver('mine')), { code: 'EPERM' }, 'detaching another client\'s driver');
  t.match(await rejection(admin.detachDriver('gpu')), { code: 'EPERM' }, 'a built-in driver cannot be detached');

  // the anonymous client may still register with built-in devices and drive them
  const h = await anon.alloc({ pool: 'dma32', size: 8 * KiB });
  t.match(await rejection(anon.device.read('capture', h.handle, 0, 16)), { code: 'ENOENT', message: /not registered/ }, 'device op on an unregistered buffer');
  t.match(await rejection(anon.unregister(h.handle, 'capture')), { code: 'ENOENT' });
  t.match(
    (await anon.violations({ buffer: h.buffer })).violations,
    [{ kind: 'unregister-not-registered', buffer: h.buffer, driver: 'capture', client: { id: anon.id } }],
    'and is recorded as a coherency violation (an unmap of something never mapped)',
  );
  await anon.register(h.handle, 'capture');
  t.match(await rejection(anon.register(h.handle, 'capture')), { code: 'EBUSY' }, 'twice');
  t.match(await rejection(anon.device.read('capture', h.handle, 8 * KiB - 10, 11)), { code: 'EINVAL', message: /past the end/ }, 'device.read beyond the end');
  t.match(await rejection(anon.device.write('capture', h.handle, 8 * KiB, Buffer.alloc(1))), { code: 'EINVAL' }, 'device.write beyond the end');
  t.match(await rejection(anon.device.fill('capture', h.handle, 1, 8 * KiB, 0)), { code: 'EINVAL' }, 'device.fill beyond the end');
  t.same(await anon.device.read('capture', h.handle, 8 * KiB, 0), Buffer.alloc(0), 'zero bytes at the end is fine');
  t.match(await rejection(anon.device.read('nosuch', h.handle, 0, 1)), { code: 'ENOENT' }, 'unknown driver');
  t.match(await rejection(anon.device.read('capture', 99, 0, 1)), { code: 'EBADF' }, 'unknown handle');
  t.match(await rejection(anon.register(h.handle, 'nosuch')), { code: 'ENOENT' });

  // device.copy between two buffers registered with the same built-in device
  const h2 = await anon.alloc({ pool: 'dma32', size: 4 * KiB });
  await anon.register(h2.handle, 'capture');
  // the device owns both now: the CPU writes inside a sync bracket, and sync end puts the data in memory for the device
  await anon.sync(h.handle, { phase: 'start', access: 'write' });
  await anon.write(h.handle, 0, pattern(8 * KiB, 5));
  await anon.sync(h.handle, { phase: 'end', access: 'write' });
  t.same(await anon.device.copy('capture', h.handle, h2.handle), { copied: 4 * KiB }, 'as much as fits');
  // sync start (read) drops the CPU's stale lines before it reads what the device wrote
  await anon.sync(h2.handle, { phase: 'start', access: 'read' });
  t.ok((await anon.read(h2.handle, 0, 4 * KiB)).equals(pattern(4 * KiB, 5)), 'copied by the device');
  await anon.sync(h2.handle, { phase: 'end', access: 'read' });
  const h3 = await anon.alloc({ pool: 'dma32', size: 4 * KiB });
  t.match(await rejection(anon.device.copy('capture', h.handle, h3.handle)), { code: 'ENOENT' }, 'the destination must be registered too');

  // built-in devices: any holder drives them, with the right for the direction
  const woEv = nextEvent<{ handle: number }>(admin, 'handle');
  await anon.send(h.handle, 'admin', { rights: ['write'] });
  const wo = (await woEv).handle;
  t.match(await rejection(admin.device.read('capture', wo, 0, 16)), { code: 'EPERM', message: /'read' right/ }, 'device.read needs read');
  t.same(await admin.device.write('capture', wo, 0, Buffer.from('from admin')), { written: 10 }, 'device.write with write');
  await anon.sync(h.handle, { phase: 'start', access: 'read' });
  t.equal((await anon.read(h.handle, 0, 10)).toString(), 'from admin', 'the holder sees what the device wrote for another holder');
  await anon.sync(h.handle, { phase: 'end', access: 'read' });
  // the synced flows above were clean: the only violation on either buffer is the deliberate unregister of an unregistered buffer
  t.same((await anon.violations({ buffer: h.buffer })).violations.map((v) => v.kind), ['unregister-not-registered'], 'no other violation on the source');
  t.same((await anon.violations({ buffer: h2.buffer })).violations, [], 'none on the destination');
});

t.test('a client driver with a full handle table: the registration is refused before anything is mapped', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, limits: { maxHandles: 2 } } });
  const app = await client(t, d.socket, 'app');
  const drv = await client(t, d.socket, 'drv');
  await drv.attachDriver('io', { iommu: { pageSizes: [4096], iovaSize: 1 * MiB } });
  await drv.alloc({ pool: 'default', size: 4096 });
  await drv.alloc({ pool: 'default', size: 4096 });
  const h = await app.alloc({ pool: 'default', size: 8 * KiB });
  t.match(await rejection(app.register(h.handle, 'io')), { code: 'EMFILE', message: /driver 'io'/ });
  t.match(await app.info(h.handle), { registrations: [], refs: { registrations: 0 } });
  t.match(await driverStatus(app, 'io'), { registrations: 0, iovaUsed: 0 });
});
