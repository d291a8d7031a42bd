/**
 * Buffer history end to end: a buffer's life across two processes (the
 * test process and a client fixture), as client.history and bufctl history
 * show it; who may read it; the freed ring and the per-buffer cap from the
 * config; history switched off and on by a reload; bad requests.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ROOT } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client } from '../helpers/drivers.js';
import { spawnClient, rejection, type Line } from '../helpers/procs.js';
import type { HandleInfo } from '../../client/index.js';
import type { HistoryResult } from '../../protocol/ops/history.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const base = (): Json => JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Json;

t.test("a buffer's life across two processes, in order, with who did what", async (t) => {
  const d = await startDaemon(t);
  const alpha = await client(t, d.socket, 'alpha');
  const beta = await spawnClient(t, d.socket, 'beta');
  await beta.call('accept', 'any');
  const h = await alpha.alloc({ pool: 'default', size: 8192 });
  const dup = await alpha.dup(h.handle);
  await alpha.write(h.handle, 0, Buffer.alloc(100, 7));
  const refused = await rejection(alpha.register(h.handle, 'gpu'));
  t.equal(refused.code, 'EATTR');
  const reg = await alpha.register(h.handle, 'nic');
  await alpha.sync(h.handle, { phase: 'start', access: 'write' });
  await alpha.device.write('nic', h.handle, 0, Buffer.alloc(64, 1));
  await alpha.send(h.handle, 'beta', { rights: ['read', 'share'] });
  const got = await beta.wait((l) => l['event'] === 'handle', 'the handle event');
  const tok = await alpha.export(h.handle, { rights: ['read'] });
  const imp = await beta.call<HandleInfo>('import', tok.token);
  await alpha.unregister(h.handle, 'nic');

  // while it lives: the holders read it, a stranger may not
  const mid = await beta.call<HistoryResult>('history', h.buffer);
  t.equal(mid.live, true);
  const stranger = await client(t, d.socket, 'stranger');
  const denied = await rejection(stranger.history(h.buffer));
  t.equal(denied.code, 'EPERM');
  t.match(denied.message, /buffer \d+ is for the clients that held it and admins/);

  await alpha.close(h.handle);
  await alpha.close(dup.handle);
  await beta.call('close', got['handle']);
  await beta.call('close', imp.handle);

  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  const r = await admin.history(h.buffer);
  t.equal(r.live, false, 'freed');
  t.equal(r.partial, false);
  t.equal(r.dropped, 0);
  t.same(
    r.events.map((e) => [e.kind, e.clientName]),
    [
      ['alloc', 'alpha'],
      ['dup', 'alpha'],
      ['write', 'alpha'],
      ['refused', 'alpha'],
      ['register', 'alpha'],
      ['sync', 'alpha'],
      // the device wrote while the CPU owned the buffer (sync start, no end): the checker warns, during the write
      ['violation', 'alpha'],
      ['device.write', 'alpha'],
      ['send', 'alpha'],
      ['export', 'alpha'],
      ['import', 'beta'],
      ['unregister', 'alpha'],
      ['close', 'alpha'],
      ['close', 'alpha'],
      ['close', 'beta'],
      ['close', 'beta'],
      ['free', 'beta'],
    ],
  );
  const by = (k: string) => r.events.find((e) => e.kind === k)!;
  t.match(by('alloc'), { client: alpha.session.clientId, handle: h.handle, pool: 'default', size: 8192, usize: h.usize, addr: h.segments[0]!.addr, placement: null });
  t.match(by('dup'), { handle: h.handle, newHandle: dup.handle });
  t.match(by('refused'), { op: 'register', code: 'EATTR', message: refused.message, mismatches: refused.details!['mismatches'] });
  t.match(by('register'), { driver: 'nic', deviceAddress: reg.deviceAddress, handle: h.handle });
  t.match(by('sync'), { phase: 'start', access: 'write' });
  t.match(by('violation'), { driver: 'nic', op: 'device.write', mode: 'warn', violation: String, message: String });
  t.match(by('device.write'), { driver: 'nic', offset: 0, length: 64 });
  t.match(by('send'), { to: beta.id, toName: 'beta', rights: ['read', 'share'] });
  t.match(by('export'), { rights: ['read'], expiresInMs: tok.expiresInMs });
  t.match(by('import'), { client: beta.id, from: alpha.session.clientId, fromName: 'alpha', handle: imp.handle, rights: ['read'] });
  t.match(by('free'), { client: beta.id, after: 'close', pool: 'default', size: 8192 });
  const seqs = r.events.map((e) => e.seq);
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'in order');
  t.ok(r.events.every((e, i) => i === 0 || e.timeMs >= r.events[i - 1]!.timeMs), 'times do not go back');

  // bufctl: a table, and --json one object per event
  const text = await bufctlHere(d.socket, 'history', String(h.buffer));
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, new RegExp(`buffer ${h.buffer} \\(freed\\): 17 events`));
  t.match(text.stdout, /alpha#\d+ +refused +register: EATTR/);
  t.match(text.stdout, /beta#\d+ +import +token from alpha#\d+ → handle \d+ \(read\)/);
  const js = await bufctlHere(d.socket, 'history', String(h.buffer), '--json', '--limit', '3');
  t.equal(js.code, 0, js.stderr);
  const lines = js.stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
  t.same(lines.map((l) => [l['buffer'], l['kind']]), [
    [h.buffer, 'close'],
    [h.buffer, 'close'],
    [h.buffer, 'free'],
  ], 'the newest 3, one object a line');

  // unknown buffers and bad requests
  t.match(await rejection(admin.history(h.buffer + 1000)), { code: 'ENOENT', message: /no buffer \d+: never allocated, or freed and its history no longer kept \(history.keepFreed is 1000\)/ });
  t.match(await rejection(admin.request('history', { buffer: -1 } as never)), { code: 'EINVAL', message: /buffer/ });
  t.match(await rejection(admin.request('history', { buffer: 1, limit: 0 })), { code: 'EINVAL', message: /limit/ });
  const bad = await bufctlHere(d.socket, 'history', 'x1');
  t.equal(bad.code, 2);
  t.match(bad.stderr, /'x1' is not a buffer id/);
  await beta.cmd('exit');
});

t.test('a token that expires unimported: an expire event by the daemon, then the free it let happen', async (t) => {
  const d = await startDaemon(t);
  const alpha = await client(t, d.socket, 'alpha');
  const h = await alpha.alloc({ pool: 'default', size: 4096 });
  const tok = await alpha.export(h.handle, { rights: ['read'], ttlMs: 50 });
  t.equal(tok.expiresInMs, 50);
  // only the token holds the buffer now; its expiry frees it
  await alpha.close(h.handle);
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  let r = await admin.history(h.buffer);
  for (let i = 0; i < 100 && r.live; i++) {
    await new Promise((res) => setTimeout(res, 20));
    r = await admin.history(h.buffer);
  }
  t.equal(r.live, false, 'freed when the token expired');
  t.same(
    r.events.map((e) => [e.kind, e.clientName]),
    [
      ['alloc', 'alpha'],
      ['export', 'alpha'],
      ['close', 'alpha'],
      ['expire', null],
      ['free', null],
    ],
  );
  t.match(r.events[3], { client: null, from: alpha.session.clientId, fromName: 'alpha', rights: ['read'] });
  t.match(r.events[4], { client: null, pool: 'default', size: 4096 });
  t.equal(r.events[4]!['after'], undefined, 'no op freed it');
  const text = await bufctlHere(d.socket, 'history', String(h.buffer));
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /daemon +expire +the token alpha#\d+ exported \(read\) expired unimported/);
  t.match(await rejection(admin.import(tok.token)), { code: 'ENOENT' }, 'the token is gone');
});

t.test('config bounds: the freed ring, the per-buffer cap; history off and on by reload', async (t) => {
  const cfg = base();
  cfg['history'] = { keepFreed: 1, perBuffer: 8 };
  const d = await startDaemon(t, { config: cfg });
  const c = await client(t, d.socket, 'c');
  const a = await c.alloc({ pool: 'default', size: 64 });
  for (let i = 0; i < 10; i++) await c.close((await c.dup(a.handle)).handle);
  const capped = await c.history(a.buffer);
  t.equal(capped.events.length, 8);
  t.equal(capped.events[0]!.kind, 'alloc', 'the allocation stays');
  t.equal(capped.dropped, 13);
  t.match(await c.history(a.buffer, { limit: 2 }), { events: [{ kind: 'dup' }, { kind: 'close' }] });
  const b = await c.alloc({ pool: 'default', size: 64 });
  await c.close(a.handle);
  await c.close(b.handle);
  t.match(await rejection(c.history(a.buffer)), { code: 'ENOENT', message: /history.keepFreed is 1/ }, 'the older freed one is let go');
  t.match(await c.history(b.buffer), { live: false, events: [{ kind: 'alloc' }, { kind: 'close' }, { kind: 'free' }] });

  // off by reload: nothing kept, the op says so; on again: new buffers have histories, live ones from then on
  const file = join(d.dir, 'config.json');
  const x = await c.alloc({ pool: 'default', size: 64 });
  writeFileSync(file, JSON.stringify({ ...cfg, history: { enabled: false } }));
  const off = await bufctlHere(d.socket, 'reload', '--json');
  t.match(JSON.parse(off.stdout), { applied: ['history.enabled true → false', 'history.perBuffer 8 → 256', 'history.keepFreed 1 → 1000'] });
  t.match(await rejection(c.history(x.buffer)), { code: 'ENOTSUP', message: /history.enabled is false/ });
  await c.dup(x.handle);
  writeFileSync(file, JSON.stringify(cfg));
  await bufctlHere(d.socket, 'reload');
  t.same(await c.history(x.buffer), { buffer: x.buffer, live: true, partial: true, dropped: 0, events: [] }, 'live, nothing recorded while off');
  await c.close(x.handle);
  const xs = await c.history(x.buffer);
  t.same(xs.events.map((e) => e.kind), ['close']);
  t.equal(xs.partial, true);
});

t.test('device copies, fences, reads, file descriptors and leaks in the history', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'c');
  const src = await c.alloc({ pool: 'wc', size: 8192 });
  const dst = await c.alloc({ pool: 'wc', size: 4096 });
  await c.register(src.handle, 'gpu');
  await c.register(dst.handle, 'gpu');
  await c.device.fill('gpu', src.handle, 0, 8192, 9);
  await c.device.read('gpu', src.handle, 0, 16);
  await c.request('device.copy', { driver: 'gpu', src: src.handle, dst: dst.handle });
  await c.request('fence', { handle: dst.handle });
  await c.read(dst.handle, 0, 32);
  const s = await c.history(src.buffer);
  t.same(s.events.map((e) => e.kind).filter((k) => k !== 'violation'), ['alloc', 'register', 'device.fill', 'device.read', 'device.copy']);
  t.match(s.events.find((e) => e.kind === 'device.fill'), { driver: 'gpu', length: 8192, value: 9 });
  t.match(s.events.find((e) => e.kind === 'device.copy'), { role: 'src', length: 4096 });
  const ds = await c.history(dst.buffer);
  t.same(ds.events.map((e) => e.kind).filter((k) => k !== 'violation'), ['alloc', 'register', 'device.copy', 'fence', 'read']);
  t.match(ds.events.find((e) => e.kind === 'device.copy'), { role: 'dst', length: 4096 });
  t.match(ds.events.find((e) => e.kind === 'read'), { handle: dst.handle, offset: 0, length: 32 });

  // a real file descriptor out and back in (when the daemon has shared memory)
  if (c.session.fdSocket !== null) {
    const ex = await c.exportFd(dst.handle).catch((e: { code: string }) => e);
    if ('fd' in ex) {
      const back = await c.importFd(ex.fd);
      const { closeFd } = await import('../../client/index.js');
      closeFd(ex.fd);
      const kinds = (await c.history(dst.buffer)).events.map((e) => e.kind);
      t.same(kinds.slice(-2), ['exportFd', 'importFd']);
      t.match((await c.history(dst.buffer)).events.at(-1), { handle: back.handle });
    } else t.fail(`exportFd refused: ${ex.code}`);
  } else t.comment('no shared memory in this daemon: exportFd/importFd not recorded here');

  // a leak: the registering process dies with the buffer registered; its receiver still holds it
  const app = await spawnClient(t, d.socket, 'app');
  const h = await app.call<HandleInfo>('alloc', { pool: 'wc', size: 4096 });
  await app.call('register', h.handle, 'gpu');
  await app.call('send', h.handle, 'c');
  await new Promise<void>((r) => c.once('handle', () => r()));
  await app.kill('SIGKILL');
  const leak = await (async () => {
    for (let i = 0; i < 300; i++) {
      const ev = (await c.history(h.buffer)).events.find((e) => e.kind === 'leak');
      if (ev !== undefined) return ev;
      await new Promise((r) => setTimeout(r, 50));
    }
    return undefined;
  })();
  t.match(leak, { client: app.id, clientName: 'app', driver: 'gpu', reason: /registering client disconnected/ }, 'the leak, by the registrant');
  const life = (await c.history(h.buffer)).events;
  const gone = life.findIndex((e) => e.kind === 'disconnect');
  t.match(life[gone], { client: app.id, clientName: 'app', handles: [h.handle], count: 1, mappings: 0 }, 'what the departed client still held');
  t.ok(gone >= 0 && gone < life.findIndex((e) => e.kind === 'leak'), 'then its registrations reported as leaks');
});
