/**
 * DMA direction end to end: `register` takes a direction (default
 * bidirectional) that the result, the driver's registration event and
 * `buffers` carry; a sync against it and a device access against it are
 * violations named after kernel/dma/debug.c's messages, recorded and still
 * performed in warn mode (as dma-debug only warns); a bad direction is
 * EINVAL naming the field and changes nothing.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { rejection } from '../helpers/procs.js';
import { client, nextEvent, driverStatus } from '../helpers/drivers.js';
import type { RegistrationEvent } from '../../client/index.js';

t.test('a to-device and a from-device registration through the daemon', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const drv = await client(t, d.socket, 'drv');
  await drv.attachDriver('dev', { coherent: false });
  const tx = await app.alloc({ pool: 'default', size: 8192 });
  const ev = nextEvent<RegistrationEvent>(drv, 'registration');
  const r = await app.register(tx.handle, 'dev', { direction: 'to-device' });
  t.equal(r.direction, 'to-device');
  const got = await ev;
  t.match(got, { driver: 'dev', buffer: tx.buffer, direction: 'to-device' }, "the driver learns the direction with its handle");
  t.same((await app.info(tx.handle)).buffer, tx.buffer);

  // the CPU fills it for the device: sync with 'write' (DMA_TO_DEVICE) is the mapping's direction
  await app.sync(tx.handle, { phase: 'start', access: 'write' });
  await app.write(tx.handle, 0, Buffer.from('command'));
  await app.sync(tx.handle, { phase: 'end', access: 'write' });
  t.same(await drv.device.read('dev', got.handle, 0, 7), Buffer.from('command'));
  t.equal((await app.violations()).total, 0, 'used as mapped: nothing to report');

  // the device writes it anyway: reported, and performed
  await drv.device.write('dev', got.handle, 0, Buffer.from('DEVICE'));
  let vs = (await app.violations()).violations;
  t.match(vs, [{ kind: 'device-write-to-read-only', buffer: tx.buffer, driver: 'dev', op: 'device.write', range: { offset: 0, length: 6 } }]);
  t.match(vs[0]!.message, "device 'dev' wrote buffer");
  t.match(vs[0]!.message, 'the device wrote device read-only DMA memory [mapped with DMA_TO_DEVICE]');
  // the CPU reads it back with 'read' (DMA_FROM_DEVICE): two of check_sync's reports
  await app.sync(tx.handle, { phase: 'start', access: 'read' });
  t.same(await app.read(tx.handle, 0, 6), Buffer.from('DEVICE'), 'warn mode: the device write was performed');
  await app.sync(tx.handle, { phase: 'end', access: 'read' });
  vs = (await app.violations()).violations;
  t.same(vs.map((v) => v.kind), ['device-write-to-read-only', 'sync-different-direction', 'sync-read-only-for-cpu', 'sync-different-direction']);
  t.match(vs[1]!.message, "client");
  t.match(vs[1]!.message, "sync {phase:'start', access:'read'} of buffer");
  t.match(vs[1]!.message, "registered with 'dev' as to-device: device driver syncs DMA memory with different direction [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]");
  t.match(vs[2]!.message, 'device driver syncs device read-only DMA memory for cpu [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]');

  // from-device: the device only writes
  const rx = await app.alloc({ pool: 'default', size: 8192 });
  const ev2 = nextEvent<RegistrationEvent>(drv, 'registration');
  await app.register(rx.handle, 'dev', { direction: 'from-device' });
  const rxh = (await ev2).handle;
  await drv.device.write('dev', rxh, 0, Buffer.from('frame'));
  await drv.device.read('dev', rxh, 0, 5);
  t.equal((await app.violations({ kind: 'device-read-of-write-only' })).violations.length, 1, 'a device read of a from-device mapping');
  await app.sync(rx.handle, { phase: 'start', access: 'read' });
  t.same(await app.read(rx.handle, 0, 5), Buffer.from('frame'));
  await app.sync(rx.handle, { phase: 'end', access: 'read' });
  t.equal((await app.violations({ buffer: rx.buffer })).violations.length, 1, 'syncing with read is its direction: nothing more');
  t.same((await app.buffers()).buffers.find((b) => b.buffer === rx.buffer)!.registrations.map((x) => x.direction), ['from-device']);
});

t.test('a bad direction is EINVAL naming the field and registers nothing', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const h = await app.alloc({ pool: 'default', size: 4096 });
  const e = await rejection(app.register(h.handle, 'nic', { direction: 'sideways' as never }));
  t.match(e, { code: 'EINVAL', message: /direction/ });
  t.match(e.message, /to-device/);
  t.match(await driverStatus(app, 'nic'), { registrations: 0 });
  t.equal((await app.register(h.handle, 'nic')).direction, 'bidirectional');
});
