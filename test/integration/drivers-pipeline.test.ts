/**
 * The seed pipeline, end to end with separate processes: an app merges the
 * GPU's and the JPEG decoder's constraints, allocates a buffer for both,
 * registers it with both and passes it to a decoder process; the decoder
 * writes a frame through the JPEG device's view (physical addresses) and
 * the app reads it back through the GPU's view (IOVA through the GPU's
 * IOMMU) byte for byte, and through the CPU.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, sha256, poll, type Line } from '../helpers/procs.js';
import { spawnDeviceClient, client, driverStatus, MiB, GiB } from '../helpers/drivers.js';
import type { HandleInfo, MergeResult, RegistrationInfo } from '../../client/index.js';

const FRAME = 1 * MiB;

t.test('app + decoder: a frame decoded through jpeg is read back through the gpu', async (t) => {
  const d = await startDaemon(t);
  const obs = await client(t, d.socket, 'observer', { useCookie: true });
  const live0 = (await obs.status()).buffers.live;
  const app = await spawnDeviceClient(t, d.socket, 'app');
  const dec = await spawnDeviceClient(t, d.socket, 'decoder');

  // 1. what-if: the merged constraints and the pools that fit
  const m = await app.call<MergeResult>('merge', ['gpu', 'jpeg']);
  t.match(m.merged, { drivers: ['gpu', 'jpeg'], align: 64 * 1024, contiguous: true, dmaMask: 32, addressLimit: 4 * GiB, coherent: false, iommuDevices: ['gpu'], bounceDevices: [] });
  t.same(m.merged.cache, ['writecombine', 'uncached'], 'cache: the intersection');
  t.same(
    m.pools.filter((p) => p.fits).map((p) => p.name),
    ['contig', 'tcm'],
    'contig and tcm fit',
  );

  // 2. allocate for both drivers
  const h = await app.call<HandleInfo>('alloc', { for: ['gpu', 'jpeg'], size: FRAME });
  t.match(h, { pool: 'contig', cache: 'writecombine', size: FRAME, contiguous: true });
  t.match(h.placement, { for: ['gpu', 'jpeg'], pool: 'contig', reason: /gpu \+ jpeg/ });
  t.match(h.placement!.reason, /64 KiB/, 'the reason names the merged alignment');
  t.equal(h.segments.length, 1);
  const phys = h.segments[0]!.addr;
  t.equal(phys % (64 * 1024), 0, 'aligned to the LCM of the alignments');
  t.ok(phys + FRAME <= 4 * GiB, 'below the 32-bit mask');

  // 3. register with both
  const rg = await app.call<RegistrationInfo>('register', h.handle, 'gpu');
  t.match(rg, { driver: 'gpu', buffer: h.buffer, bounced: 0 });
  t.not(rg.iommu, null, 'the gpu sees the buffer through its IOMMU');
  t.equal(rg.deviceAddress, rg.iommu!.iova, 'device address: the IOVA of the first byte');
  t.not(rg.deviceAddress, phys, 'an IOVA, not the physical address');
  t.same(rg.segments, [{ addr: rg.deviceAddress, len: FRAME }], 'one contiguous IOVA range');
  const rj = await app.call<RegistrationInfo>('register', h.handle, 'jpeg');
  t.same(rj, { driver: 'jpeg', buffer: h.buffer, deviceAddress: phys, segments: [{ addr: phys, len: FRAME }], iommu: null, bounced: 0, direction: 'bidirectional' }, 'jpeg sees physical addresses');

  const info = await app.call<HandleInfo>('info', h.handle);
  t.same(info.registrations, ['gpu', 'jpeg']);
  t.equal(info.refs.registrations, 2);
  t.match(info.placement, { for: ['gpu', 'jpeg'], pool: 'contig', reason: /satisfies gpu \+ jpeg/ });
  t.match(await driverStatus(obs, 'gpu'), { registrations: 1, bytes: FRAME, iovaUsed: FRAME });
  t.match(await driverStatus(obs, 'jpeg'), { registrations: 1, bytes: FRAME });

  // 4. pass the handle to the decoder by name
  await app.call('send', h.handle, 'decoder');
  const ev = await dec.wait((l) => l['event'] === 'handle', 'the handle event');
  t.match(ev, { buffer: h.buffer, size: FRAME, pool: 'contig', from: { id: app.id, name: 'app' }, rights: ['read', 'write', 'share'] });
  const dh = ev['handle'] as number;
  const dinfo = await dec.call<HandleInfo>('info', dh);
  t.same(dinfo.registrations, ['gpu', 'jpeg'], 'the decoder sees the registrations too');

  // 5. the decoder writes the frame through the jpeg device
  const SEED = 41;
  t.same(await dec.cmd('devfill', { driver: 'jpeg', handle: dh, length: FRAME, seed: SEED }), { written: FRAME });

  // 6. the app reads it back through the gpu's view, byte for byte, and through the CPU
  const want = { equal: true, length: FRAME, firstMismatch: -1, sha256: sha256(pattern(FRAME, SEED)) };
  t.same(await app.cmd('devverify', { driver: 'gpu', handle: h.handle, length: FRAME, seed: SEED }), want, 'gpu view: the frame byte for byte');
  t.same(await app.cmd('verify', { handle: h.handle, length: FRAME, seed: SEED }), want, 'CPU read: the same frame');
  t.same(await dec.cmd('devverify', { driver: 'jpeg', handle: dh, length: FRAME, seed: SEED }), want, 'jpeg view agrees');

  // 7. the other direction, at an offset: the gpu renders, the decoder's jpeg view sees it
  const OFF = 300_001;
  const LEN = 65_537;
  t.same(await app.cmd('devfill', { driver: 'gpu', handle: h.handle, offset: OFF, length: LEN, seed: 9 }), { written: LEN });
  t.same(await dec.cmd('devverify', { driver: 'jpeg', handle: dh, offset: OFF, length: LEN, seed: 9 }), {
    equal: true,
    length: LEN,
    firstMismatch: -1,
    sha256: sha256(pattern(LEN, 9, OFF)),
  });
  t.same(await dec.cmd('devverify', { driver: 'jpeg', handle: dh, offset: 0, length: OFF, seed: SEED }), {
    equal: true,
    length: OFF,
    firstMismatch: -1,
    sha256: sha256(pattern(OFF, SEED)),
  }, 'the bytes before it are untouched');

  // 8. a read-only handle lets the decoder drive reads, not writes
  await app.call('send', h.handle, 'decoder', { rights: ['read'] });
  const ro = await dec.wait((l) => l['event'] === 'handle' && l['handle'] !== dh, 'the read-only handle');
  t.same(ro['rights'], ['read']);
  const denied = await dec.cmd('devfill', { driver: 'jpeg', handle: ro['handle'], length: 16, seed: 1 }).catch((e: { code: string; message: string }) => e);
  t.match(denied, { code: 'EPERM', message: /'write' right/ });
  t.same((await dec.cmd<Line>('devverify', { driver: 'gpu', handle: ro['handle'], length: 4096, seed: SEED }))['equal'], true, 'reading is allowed');

  // 9. tear down: unregister both, everyone closes, the buffer is freed
  t.same(await app.call('unregister', h.handle, 'gpu'), { driver: 'gpu', buffer: h.buffer, unregistered: true });
  t.same(await app.call('unregister', { buffer: h.buffer }, 'jpeg'), { driver: 'jpeg', buffer: h.buffer, unregistered: true });
  t.match(await driverStatus(obs, 'gpu'), { registrations: 0, bytes: 0, iovaUsed: 0, iommuEntries: {} });
  t.same((await app.call<HandleInfo>('info', h.handle)).registrations, []);
  await app.call('close', h.handle);
  await dec.call('close', dh);
  await dec.call('close', ro['handle']);
  const st = await poll(
    () => obs.status(),
    (s) => s.buffers.live === live0,
  );
  t.equal(st.buffers.live, live0, 'freed with its last reference');
  t.equal(st.dma.leaks, 0, 'nothing leaked');
  await app.cmd('exit');
  await dec.cmd('exit');
});

t.test('the pipeline with the buffer left registered: the app exits, the decoder is told of the leaks', async (t) => {
  const d = await startDaemon(t);
  const obs = await client(t, d.socket, 'observer', { useCookie: true });
  const app = await spawnDeviceClient(t, d.socket, 'app');
  const dec = await spawnDeviceClient(t, d.socket, 'decoder');
  const h = await app.call<HandleInfo>('alloc', { for: ['gpu', 'jpeg'], size: FRAME });
  await app.call('register', h.handle, 'gpu');
  await app.call('register', h.handle, 'jpeg');
  await app.call('send', h.handle, 'decoder');
  const ev = await dec.wait((l) => l['event'] === 'handle', 'the handle event');
  await dec.cmd('devfill', { driver: 'jpeg', handle: ev['handle'], length: FRAME, seed: 5 });
  app.kill('SIGKILL');
  await app.exited;

  const leak1 = await dec.wait((l) => l['event'] === 'leak' && l['driver'] === 'gpu', 'the gpu leak');
  const leak2 = await dec.wait((l) => l['event'] === 'leak' && l['driver'] === 'jpeg', 'the jpeg leak');
  for (const l of [leak1, leak2]) t.match(l, { buffer: h.buffer, registrant: app.id, reason: /registering client disconnected/ });
  const st = await obs.status();
  t.equal(st.dma.leaks, 2);
  t.match(st.drivers.find((x) => x.name === 'gpu'), { registrations: 0, leaks: 1, iovaUsed: 0 });
  t.match(st.drivers.find((x) => x.name === 'jpeg'), { registrations: 0, leaks: 1 });
  const logged = await d.waitForLog((l) => typeof l['msg'] === 'string' && /DMA registration leaked/.test(l['msg'] as string) && l['driver'] === 'gpu');
  t.match(logged, { buffer: h.buffer, registrant: app.id });
  const di = await dec.call<HandleInfo>('info', ev['handle']);
  t.match(di, { registrations: [], refs: { handles: 1, registrations: 0 } });
  t.equal((await dec.cmd<Line>('verify', { handle: ev['handle'], length: FRAME, seed: 5 }))['equal'], true, 'the decoder still has the frame');
  const gone = await dec.call('device.read', 'gpu', ev['handle'], 0, 16).catch((e: { code: string }) => e.code);
  t.equal(gone, 'ENOENT', 'no longer registered with the gpu');
  await dec.cmd('exit');
});
