/**
 * The `buffers` op's listing beyond holders and counts: the drivers a
 * buffer is registered with (device address, registrant, bounced bytes)
 * and the export tokens holding it (who exported it, rights, time left);
 * and `violations` refusing a kind the checker does not have.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { client, MiB } from '../helpers/drivers.js';
import { readCookie } from '../../client/index.js';

t.test('buffers: registrations and tokens of each buffer', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const admin = await client(t, d.socket, 'admin', { token: readCookie(d.socket)! });
  const wc = await app.alloc({ pool: 'wc', size: 4 * MiB });
  const gpu = await app.register(wc.handle, 'gpu');
  const cap = await app.register(wc.handle, 'capture'); // above 4 GiB for a 32-bit device: bounced
  const held = await app.alloc({ pool: 'default', size: 100 });
  await app.export(held.handle, { ttlMs: 20_000, rights: ['read'] });
  const gone = await app.alloc({ pool: 'default', size: 200 });
  await app.export(gone.handle, { ttlMs: 12_000 });
  await app.close(gone.handle); // only the token holds it now

  const list = (await admin.buffers()).buffers;
  const by = (id: number) => list.find((b) => b.buffer === id)!;
  t.same(by(wc.buffer).registrations, [
    { driver: 'gpu', deviceAddress: gpu.deviceAddress, registrant: app.id, bounced: 0, direction: 'bidirectional' },
    { driver: 'capture', deviceAddress: cap.deviceAddress, registrant: app.id, bounced: cap.bounced, direction: 'bidirectional' },
  ]);
  t.ok(cap.bounced > 0, 'capture reaches it through bounce slots');
  t.same(by(wc.buffer).tokens, []);
  t.same(by(held.buffer).registrations, []);
  t.match(by(held.buffer).tokens, [{ from: { id: app.id, name: 'app' }, rights: ['read'], expiresInMs: Number }]);
  const left = by(held.buffer).tokens[0]!.expiresInMs;
  t.ok(Number.isInteger(left) && left > 0 && left <= 20_000, `time left in whole ms (${left})`);
  t.same(by(gone.buffer).holders, [], 'no handle left');
  t.match(by(gone.buffer), { refs: { handles: 0, inflight: 1 }, tokens: [{ from: { id: app.id, name: 'app' }, rights: ['read', 'write', 'share'] }] });
  t.ok(by(gone.buffer).tokens[0]!.expiresInMs <= 12_000);
  // the client's own view lists the same
  t.same((await app.buffers()).buffers.find((b) => b.buffer === wc.buffer)!.registrations.map((r) => r.driver), ['gpu', 'capture']);
});

t.test('violations: a kind the checker does not have is EINVAL naming the field', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'v');
  await t.rejects(c.request('violations', { kind: 'bogus' as 'lost-write' }), { code: 'EINVAL', message: /field 'kind'.*one of "cpu-access-while-device-owned", .*"lost-write"/ });
  t.match(await c.violations({ kind: 'lost-write' }), { total: 0, violations: [] });
});
