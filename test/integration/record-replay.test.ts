/**
 * Record and replay end to end: the real daemon records (`--record`, or the
 * record op / bufctl record), real clients (the demo's processes, the
 * client library) drive it, and `bufferd replay` re-runs the journal in a
 * process of its own: identical with the recorded config, a report of what
 * fails and why with a tighter one.
 */
import t from 'tap';
import { join } from 'node:path';
import { existsSync, writeFileSync } from 'node:fs';
import { runNode, startDaemon, ROOT, DAEMON, tempDir } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client } from '../helpers/drivers.js';
import { connect } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const DEMO = join(ROOT, 'dist', 'client', 'demo.js');

const replay = (...args: string[]) => runNode([DAEMON, 'replay', ...args], { timeoutMs: 120_000 });

/** The default machine with no 2 MiB hugepages and no overcommit. */
function tightConfig(dir: string): string {
  const c = JSON.parse(JSON.stringify(DEFAULT_MACHINE)) as { hugepages: { size: string; nr: number; overcommit: number }[] };
  for (const h of c.hugepages) if (h.size === '2M') Object.assign(h, { nr: 0, overcommit: 0 });
  const p = join(dir, 'tight.json');
  writeFileSync(p, JSON.stringify(c));
  return p;
}

t.test('a recorded npm run demo replays identically, and a tighter config says what now fails', async (t) => {
  const dir = tempDir(t);
  // digests only, and with the bytes (and the pages written through mappings): both at once
  const plain = join(dir, 'demo.journal');
  const withData = join(dir, 'demo-data.journal');
  const daemons = await Promise.all([
    startDaemon(t, { logLevel: 'info', args: ['--record', plain] }),
    startDaemon(t, { logLevel: 'info', args: ['--record', withData, '--record-data'] }),
  ]);
  const demos = await Promise.all(daemons.map((d) => runNode([DEMO, '--socket', d.socket], { timeoutMs: 180_000, unhooked: true })));
  for (const r of demos) t.equal(r.code, 0, r.stdout + r.stderr);
  for (const d of daemons) {
    t.equal((await d.stop()).code, 0);
    t.ok(d.logs.some((l) => l['msg'] === 'recording stopped'), 'the journal was closed at shutdown');
  }

  // the four replays side by side: each reads its journal in a process of its own
  const [samePlain, sameData, text, tight] = await Promise.all([
    replay(plain, '--json'),
    replay(withData, '--json'),
    replay(plain),
    replay(plain, '--config', tightConfig(dir)),
  ]);
  for (const [same, data] of [[samePlain, false], [sameData, true]] as const) {
    t.equal(same.code, 0, same.stderr);
    const r = JSON.parse(same.stdout) as { identical: boolean; requests: number; compared: number; skipped: unknown[]; divergence: unknown; recordedWith: { recordData: boolean } };
    t.equal(r.identical, true, `identical (data ${data}): ${JSON.stringify(r.divergence)}`);
    t.ok(r.requests >= 40, `${r.requests} requests replayed`);
    t.equal(r.compared, r.requests, 'every response compared');
    t.same(r.skipped, []);
    t.equal(r.recordedWith.recordData, data);
  }
  t.match(text.stdout, /IDENTICAL/);

  t.equal(tight.code, 0, tight.stderr);
  t.match(tight.stdout, /DIVERGED at request \d+ of client \d+/, 'the first difference, with both sides');
  t.match(tight.stdout, /recorded \.result\.hugepages\[0\]\.\w+: \d+/);
  t.match(tight.stdout, /now failing: 1 × alloc ENOMEM \(first: request \d+, client \d+: pool 'huge': cannot allocate 1 MiB .*0 of 0 2 MiB hugepages available/);
  t.match(tight.stdout, /now failing: \d+ × register EBADF/, 'and what followed from it');
  t.match(tight.stdout, /peak hugepages 2 MiB in dram: 0 in use of 0 \(with the recorded config: 1\)/);
  t.match(tight.stdout, /peak pool huge: 0 bytes allocated \(with the recorded config: 2097152\)/);
  t.match(tight.stdout, /end region dram: \d+ bytes free, largest free block \d+ \(fragmentation [\d.]+\)/);
});

t.test('bufctl record start/stop journals a session of tokens, handles and bytes; it replays identically', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info' });
  const dir = tempDir(t);
  const file = join(dir, 'j');
  const start = await bufctlHere(d.socket, 'record', 'start', file);
  t.equal(start.code, 0, start.stderr);
  t.match(start.stdout, `recording to ${file}`);
  const a = await client(t, d.socket, 'producer');
  const b = await client(t, d.socket, 'consumer');
  await b.accept('any');
  const h = await a.alloc({ pool: 'default', size: 65536 });
  await a.write(h.handle, 0, Buffer.from('hello, journal'));
  const tok = await a.export(h.handle, { rights: ['read'] });
  const got = await b.import(tok.token);
  t.equal((await b.read(got.handle, 0, 14)).toString(), 'hello, journal');
  await a.send(h.handle, 'consumer');
  await t.rejects(b.import(tok.token), { code: 'ENOENT' }, 'a token is taken once');
  await a.close(h.handle);
  await a.disconnect();
  await b.disconnect();
  const st = await bufctlHere(d.socket, 'record', 'status', '--json');
  t.match(JSON.parse(st.stdout), { recording: true, file, dropped: 0 });
  const stop = await bufctlHere(d.socket, 'record', 'stop');
  t.equal(stop.code, 0, stop.stderr);
  t.match(stop.stdout, `replay it: bufferd replay ${file}`);
  const again = await bufctlHere(d.socket, 'record', 'stop');
  t.equal(again.code, 1);
  t.match(again.stderr, /EINVAL: field 'action': 'stop' but the daemon is not recording/);

  const usage = await Promise.all([['record', 'start'], ['record', 'stop', file], ['record', 'status', '--record-data']].map((a) => bufctlHere(d.socket, ...a)));
  for (const u of usage) t.equal(u.code, 2, u.stderr);
  t.match(usage[0]!.stderr, /'record start' needs the journal FILE/);
  t.match(usage[1]!.stderr, /'record stop' takes no FILE/);
  t.match(usage[2]!.stderr, /--record-data goes with 'record start'/);

  const r = await replay(file);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, /IDENTICAL/);
  t.match(r.stdout, /skipped request \d+ \(client \d+, record\): the replay does not record a journal/, 'the stop request');
});

t.test('the record op: admin only, an absolute path, one journal at a time; refusals change nothing', async (t) => {
  const d = await startDaemon(t);
  const dir = tempDir(t);
  const plain = await client(t, d.socket, 'plain');
  await t.rejects(plain.record('start', { file: join(dir, 'x') }), { code: 'EPERM' });
  const admin = await connect({ socket: d.socket, admin: true });
  t.teardown(() => admin.disconnect());
  await t.rejects(admin.record('start', {}), { code: 'EINVAL', message: /field 'file'/ });
  await t.rejects(admin.record('start', { file: 'relative' }), { code: 'EINVAL', message: /not an absolute path/ });
  await t.rejects(admin.record('start', { file: join(dir, 'no', 'dir', 'j') }), { code: 'EIO', message: /cannot write/ });
  t.match(await admin.record('status'), { recording: false, file: null });
  t.match(await admin.record('start', { file: join(dir, 'j'), maxFiles: 2, maxFileBytes: 65536 }), { recording: true });
  await t.rejects(admin.record('start', { file: join(dir, 'k') }), { code: 'EBUSY' });
  t.notOk(existsSync(join(dir, 'k')), 'the refused file was not created');
  const done = await admin.record('stop');
  t.match(done, { recording: false, file: join(dir, 'j'), dropped: 0, error: null });
  t.ok(done.entries >= 3);
});

t.test('bufferd replay: usage errors and unreadable journals', async (t) => {
  const dir = tempDir(t);
  // side by side: none of them gets as far as replaying
  const [none, speed, missing, help, both] = await Promise.all([
    replay(),
    replay(join(dir, 'j'), '--speed', 'fast'),
    replay(join(dir, 'nope')),
    replay('--help'),
    runNode([DAEMON, '--record-data'], { timeoutMs: 30_000 }),
  ]);
  t.equal(none.code, 2, 'no FILE');
  t.equal(speed.code, 2);
  t.match(speed.stderr, /--speed 'fast'/);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no journal at/);
  t.match(help.stdout, /Usage: bufferd replay FILE/);
  t.equal(both.code, 2);
  t.match(both.stderr, /--record-data needs --record FILE/);
});

t.test('--speed N paces the replay by the recorded clock', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info', args: ['--record', join(tempDir(t), 'j')] });
  const file = d.proc.spawnargs.at(-1)!;
  const c = await client(t, d.socket, 'slow');
  await c.ping();
  await new Promise((r) => setTimeout(r, 1000));
  await c.ping();
  await c.disconnect();
  await d.stop();
  const t0 = Date.now();
  const r = await replay(file, '--speed', '2');
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, /IDENTICAL/);
  t.ok(Date.now() - t0 >= 450, 'about half the recorded second');
});
