/**
 * A leak report means a leak: a client that leaves (or dies) holding
 * registrations leaks them — logged, counted, told to the buffer's holders —
 * but when the daemon itself stops (SIGINT, SIGTERM) and ends every session,
 * what they still hold is released quietly: no warning, no leak event.
 */
import t from 'tap';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { spawnClient, poll } from '../helpers/procs.js';
import { spawnDeviceClient, client, KiB } from '../helpers/drivers.js';
import type { HandleInfo } from '../../client/index.js';

const leakLogs = (d: Daemon) => d.logs.filter((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('DMA registration leaked'));
const released = (d: Daemon) => d.logs.filter((l) => l['msg'] === 'registration released at shutdown');

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  t.test(`${signal}: clients still holding registrations are not reported as leaks`, async (t) => {
    const d = await startDaemon(t);
    // a registrant in its own process, with a built-in device and a client driver
    const app = await spawnClient(t, d.socket, 'app');
    const drv = await spawnDeviceClient(t, d.socket, 'camdrv');
    await drv.call('attachDriver', 'cam', {});
    const a = await app.call<HandleInfo>('alloc', { pool: 'contig', size: 64 * KiB, align: 64 * KiB });
    const b = await app.call<HandleInfo>('alloc', { pool: 'default', size: 8 * KiB });
    await app.call('register', a.handle, 'jpeg');
    await app.call('register', b.handle, 'cam');
    await drv.wait((l) => l['event'] === 'registration', 'the client driver got its registration');
    // a bystander holding the jpeg buffer would be told of a leak
    const by = await spawnClient(t, d.socket, 'bystander');
    await app.call('send', a.handle, 'bystander', { rights: ['read'] });
    await by.wait((l) => l['event'] === 'handle', 'the bystander holds the buffer');
    const st = await (await client(t, d.socket, 'observer')).status();
    t.equal(st.drivers.reduce((n, x) => n + x.registrations, 0), 2, 'two registrations in force');
    t.equal(st.dma.leaks, 0);

    const r = await d.stop(signal);
    t.same(r, { code: 0, signal: null }, 'the daemon exits 0');
    t.same(leakLogs(d), [], 'no "DMA registration leaked" warning');
    t.equal(released(d).length, 2, 'both registrations released at shutdown (debug log)');
    for (const [name, p] of [['app', app], ['camdrv', drv], ['bystander', by]] as const) {
      await p.wait((l) => l['closed'] === true, `${name} saw the connection close`);
      t.notOk(p.lines.some((l) => l['event'] === 'leak'), `${name} got no leak event`);
      t.ok(p.lines.some((l) => l['event'] === 'shutdown'), `${name} got the shutdown event`);
    }
  });
}

t.test('a client that leaves or dies holding registrations leaks them: logged, counted, told', async (t) => {
  const d = await startDaemon(t);
  const obs = await client(t, d.socket, 'observer');
  const app = await spawnClient(t, d.socket, 'app');
  const by = await spawnClient(t, d.socket, 'bystander');
  const a = await app.call<HandleInfo>('alloc', { pool: 'contig', size: 64 * KiB, align: 64 * KiB });
  await app.call('register', a.handle, 'jpeg');
  await app.call('send', a.handle, 'bystander', { rights: ['read'] });
  await by.wait((l) => l['event'] === 'handle', 'the bystander holds the buffer');
  await app.kill('SIGKILL');
  const st = await poll(() => obs.status(), (s) => s.dma.leaks > 0);
  t.equal(st.dma.leaks, 1, 'counted');
  t.equal(st.drivers.find((x) => x.name === 'jpeg')!.leaks, 1);
  const ev = await by.wait((l) => l['event'] === 'leak', 'the holder is told');
  t.match(ev, { driver: 'jpeg', buffer: a.buffer, reason: 'registering client disconnected' });
  await d.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('DMA registration leaked'));
  t.equal(leakLogs(d).length, 1, 'logged once');
  // the daemon stopping afterwards adds none
  await d.stop('SIGTERM');
  t.equal(leakLogs(d).length, 1, 'stopping adds no leak');
});
