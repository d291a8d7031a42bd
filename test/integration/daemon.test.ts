/**
 * The real daemon, started as a child process: session, status, pipelining,
 * socket acquisition, shutdown, command line.
 */
import t from 'tap';
import { statSync, existsSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, runNode, DAEMON, tempDir } from '../helpers/daemon.js';
import { RawClient } from '../helpers/raw.js';
import { connect, BufferdError } from '../../client/index.js';

// one daemon for the subtests that only need a live one (each uses its own clients);
// the ones about start-up, signals, config and the socket file start their own
const shared = await startDaemon(t, { logLevel: 'info' });

t.test('client library: hello, ping, status', async (t) => {
  const d = shared;
  const c = await connect({ socket: d.socket, name: 'app' });
  t.teardown(() => c.disconnect());
  t.equal(c.session.protocolVersion, 1);
  t.equal(c.session.name, 'app');
  t.ok(c.id >= 1);
  t.equal(c.session.limits.maxFrameBytes, 4 * 1024 * 1024);
  t.equal(c.session.server.name, 'bufferd');
  const p = await c.ping();
  t.type(p.uptimeMs, 'number');
  const st = await c.status();
  for (const k of ['version', 'uptimeMs', 'memory', 'hugepages', 'pools', 'clients', 'drivers']) t.ok(k in st, `status.${k}`);
  t.ok(Array.isArray(st.memory.regions));
  for (const r of st.memory.regions) for (const k of ['name', 'base', 'size', 'free']) t.type(r[k as keyof typeof r], k === 'name' ? 'string' : 'number');
  t.ok(st.memory.regions.some((r) => r.base + r.size > 2 ** 32), 'default machine has DRAM above 4 GiB');
  const me = st.clients.find((x) => x.id === c.id);
  t.equal(me?.name, 'app');
  t.equal(me?.handles, 0);
});

t.test('names are unique among connected clients and free again after disconnect', async (t) => {
  const d = shared;
  const a = await connect({ socket: d.socket, name: 'dup' });
  await t.rejects(connect({ socket: d.socket, name: 'dup' }), { code: 'EEXIST' });
  await a.disconnect();
  // the name is released when the first holder leaves
  for (let i = 0; i < 50; i++) {
    const st = await (await connect({ socket: d.socket })).status();
    if (!st.clients.some((c) => c.name === 'dup')) break;
  }
  const b = await connect({ socket: d.socket, name: 'dup' });
  t.equal(b.session.name, 'dup');
  await b.disconnect();
});

t.test('pipelined requests are answered in order', async (t) => {
  const d = shared;
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  const ops = Array.from({ length: 500 }, (_, i) => (i % 10 === 9 ? c.status() : c.ping()));
  const res = await Promise.all(ops);
  t.equal(res.length, 500);
  // raw: ids come back in request order on one connection
  const r = await RawClient.open(d.socket);
  for (let i = 1; i <= 200; i++) r.send({ id: i, op: i % 7 === 0 ? 'status' : 'ping' });
  const ids: unknown[] = [];
  for (let i = 1; i <= 200; i++) ids.push((await r.next())!['id']);
  t.same(ids, Array.from({ length: 200 }, (_, i) => i + 1));
  await r.end();
});

t.test('hello rules', async (t) => {
  const d = shared;
  const r = await RawClient.connect(d.socket);
  let m = await r.call({ id: 1, op: 'status' });
  t.equal((m['error'] as { code: string }).code, 'EPROTO');
  t.match((m['error'] as { message: string }).message, "must be 'hello'");
  t.equal(m['id'], 1);
  m = await r.call({ id: 2, op: 'hello', version: 99 });
  t.equal((m['error'] as { code: string }).code, 'EPROTO');
  t.match((m['error'] as { message: string }).message, 'protocol version 99 is not supported: this daemon speaks version 1');
  m = await r.call({ id: 3, op: 'hello', version: 1 });
  t.type((m['result'] as { clientId: number }).clientId, 'number');
  m = await r.call({ id: 4, op: 'hello', version: 1 });
  t.equal((m['error'] as { code: string }).code, 'EPROTO');
  m = await r.call({ id: 5, op: 'ping' });
  t.ok(m['result']);
  await r.end();
});

t.test('socket file mode is 0660 and a live daemon is not displaced', async (t) => {
  const d = shared;
  t.equal(statSync(d.socket).mode & 0o777, 0o660);
  const second = await runNode([DAEMON, '--socket', d.socket]);
  t.equal(second.code, 1);
  t.match(second.stderr, `another bufferd is already listening on ${d.socket}`);
  // the first one is still serving
  const c = await connect({ socket: d.socket });
  t.ok(await c.ping());
  await c.disconnect();
});

t.test('a stale socket file (daemon killed) is removed and replaced', async (t) => {
  const first = await startDaemon(t);
  await first.stop('SIGKILL');
  t.ok(existsSync(first.socket), 'SIGKILL leaves the socket file behind');
  const d = await startDaemon(t, { socket: first.socket });
  t.ok(d.logs.some((l) => l['msg'] === 'removed stale socket file'));
  const c = await connect({ socket: first.socket });
  t.ok(await c.ping());
  await c.disconnect();
});

t.test('a path that is not a socket is never removed', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'file.sock');
  writeFileSync(path, 'precious');
  const r = await runNode([DAEMON, '--socket', path]);
  t.equal(r.code, 1);
  t.match(r.stderr, 'exists and is not a socket');
  t.ok(existsSync(path));
});

t.test('a cookie path holding something that is not a cookie of ours is refused, never replaced', async (t) => {
  const { symlinkSync } = await import('node:fs');
  const dir = tempDir(t);
  const path = join(dir, 'b.sock');
  const cookie = join(dir, '.b.sock.cookie');
  writeFileSync(cookie, 'precious\n', { mode: 0o600 });
  let r = await runNode([DAEMON, '--socket', path]);
  t.equal(r.code, 1, 'a foreign file: exit 1');
  t.match(r.stderr, `${cookie} exists and is not a bufferd cookie (it does not hold a cookie (64 hex digits and a newline)); refusing to replace it`);
  t.equal(readFileSync(cookie, 'utf8'), 'precious\n', 'untouched');
  t.notOk(existsSync(path), 'and the socket it had bound is gone again');
  const target = join(dir, 'target');
  writeFileSync(target, 'victim\n');
  rmSync(cookie);
  symlinkSync(target, cookie);
  r = await runNode([DAEMON, '--socket', path]);
  t.equal(r.code, 1, 'a symlink: exit 1');
  t.match(r.stderr, 'it is a symbolic link');
  t.equal(readFileSync(target, 'utf8'), 'victim\n', 'nothing written through the link');
  // a dead daemon's cookie is replaced
  rmSync(cookie);
  writeFileSync(cookie, `${'0'.repeat(64)}\n`, { mode: 0o600 });
  const d = await startDaemon(t, { socket: path });
  t.not(readFileSync(cookie, 'utf8'), `${'0'.repeat(64)}\n`, "a dead daemon's cookie is replaced");
  await d.stop('SIGTERM');
  t.notOk(existsSync(cookie), 'and removed at exit');
});

t.test('SIGTERM: shutdown event, in-flight answered, socket removed, exit 0', async (t) => {
  const d = await startDaemon(t);
  const c = await connect({ socket: d.socket });
  const events: unknown[] = [];
  c.on('shutdown', (e) => events.push(e));
  const closed = new Promise((r) => c.on('close', r));
  const inflight = Array.from({ length: 50 }, () => c.ping());
  d.proc.kill('SIGTERM');
  const results = await Promise.allSettled(inflight);
  t.ok(results.every((x) => x.status === 'fulfilled'), 'every in-flight request answered');
  await closed;
  const ex = await d.exited;
  t.equal(ex.code, 0);
  t.same(events, [{ event: 'shutdown', reason: 'SIGTERM' }]);
  t.notOk(existsSync(d.socket), 'socket file removed');
  await t.rejects(c.ping(), { code: 'ECONNRESET' });
});

t.test('SIGINT stops the daemon too', async (t) => {
  const d = await startDaemon(t);
  const ex = await d.stop('SIGINT');
  t.equal(ex.code, 0);
  t.notOk(existsSync(d.socket));
});

t.test('losing the daemon rejects pending calls with ECONNRESET', async (t) => {
  const d = await startDaemon(t);
  const c = await connect({ socket: d.socket });
  const p = Promise.all(Array.from({ length: 100 }, () => c.status()));
  d.proc.kill('SIGKILL');
  const e = await p.catch((x: unknown) => x);
  t.ok(e instanceof BufferdError || e === undefined);
  if (e instanceof BufferdError) t.equal(e.code, 'ECONNRESET');
  await new Promise((r) => (c.closed ? r(null) : c.on('close', r)));
  const e2 = await c.ping().catch((x: BufferdError) => x);
  t.equal((e2 as BufferdError).code, 'ECONNRESET');
});

t.test('command line', async (t) => {
  // side by side: each exits before it listens
  const [h, v, bad, lvl] = await Promise.all([['--help'], ['--version'], ['--frobnicate'], ['--log-level', 'loud']].map((a) => runNode([DAEMON, ...a])));
  t.equal(h.code, 0);
  t.match(h.stdout, 'Usage: bufferd');
  t.match(h.stdout, '--socket PATH');
  t.match(v.stdout, /^bufferd \d+\.\d+\.\d+/);
  t.equal(bad.code, 2);
  t.match(bad.stderr, 'Unknown option');
  t.equal(lvl.code, 2);
  t.match(lvl.stderr, "unknown log level 'loud'");
});

t.test('socket path resolution: BUFFERD_SOCKET, then XDG_RUNTIME_DIR', async (t) => {
  const dir = tempDir(t);
  const [a, b] = await Promise.all([
    startDaemon(t, { socket: null, env: { BUFFERD_SOCKET: join(dir, 'env.sock'), XDG_RUNTIME_DIR: dir } }),
    startDaemon(t, { socket: null, env: { BUFFERD_SOCKET: '', XDG_RUNTIME_DIR: dir } }),
  ]);
  t.equal(a.socket, join(dir, 'env.sock'));
  t.equal(b.socket, join(dir, 'bufferd.sock'));
  const c = await connect({ socket: b.socket });
  t.ok(await c.ping());
  await c.disconnect();
});

t.test('an invalid config stops the daemon before it listens, naming the field', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'x.sock');
  const cfg = join(dir, 'bad.json');
  writeFileSync(cfg, JSON.stringify({ memory: { regions: [{ name: 'r', base: 0, size: '1M', kind: 'sram' }] }, pools: [] }));
  const [r, missing] = await Promise.all([runNode([DAEMON, '--socket', sock, '--config', cfg]), runNode([DAEMON, '--socket', sock, '--config', join(dir, 'none.json')])]);
  t.equal(r.code, 1);
  t.match(r.stderr, 'config /memory/regions/0/kind');
  t.notOk(existsSync(sock), 'never listened');
  t.equal(missing.code, 1);
  t.match(missing.stderr, 'cannot read config file');
});

t.test('maxConnections: the connection over the limit gets EBUSY, others are fine', async (t) => {
  const { DEFAULT_MACHINE } = await import('../../daemon/config/default-machine.js');
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, maxConnections: 2 } } });
  const a = await RawClient.open(d.socket);
  const b = await RawClient.open(d.socket);
  const c = await RawClient.connect(d.socket);
  const m = await c.next();
  t.equal((m?.['error'] as { code: string }).code, 'EBUSY');
  t.match((m?.['error'] as { message: string }).message, 'maxConnections 2');
  t.equal(await c.next(), null);
  t.ok((await a.call({ id: 1, op: 'ping' }))['result']);
  await b.end();
  await new Promise((r) => setTimeout(r, 100));
  const e = await RawClient.open(d.socket);
  t.ok((await e.call({ id: 1, op: 'ping' }))['result']);
  await a.end();
  await e.end();
});
