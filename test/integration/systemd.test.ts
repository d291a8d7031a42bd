/**
 * systemd integration, with the real programs: socket activation through
 * systemd-socket-activate, the unit files through systemd-analyze verify,
 * and sd_notify messages caught by a fake NOTIFY_SOCKET (a python3 datagram
 * listener).
 */
import t from 'tap';
import { spawn, execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startDaemon, bufctl, tempDir, ROOT, DAEMON } from '../helpers/daemon.js';
import { Proc, until } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { connect } from '../../client/index.js';
import type { Status } from '../../protocol/status.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const UNITS = join(ROOT, 'systemd');

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Wait until cond() holds; fails the wait (not a timing assertion) after a generous deadline. */
function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------- socket activation

/** `systemd-socket-activate -l <path> node main.js`: the socket exists at once, the daemon starts on the first connection. */
async function activated(t: Teardown, path: string): Promise<Proc> {
  const child = spawn('systemd-socket-activate', ['-l', path, '-E', `PATH=${process.env['PATH'] ?? '/usr/bin:/bin'}`, process.execPath, DAEMON, '--log-level', 'debug'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = new Proc(child, 'systemd-socket-activate');
  t.teardown(() => p.kill('SIGKILL'));
  await until(() => existsSync(path), `socket file ${path}`);
  return p;
}

const statusOf = async (socket: string): Promise<Status> => {
  const r = await bufctl(socket, 'status', '--json');
  if (r.code !== 0) throw new Error(`bufctl status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
};

t.test('socket activation with systemd-socket-activate', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'b.sock');
  const cookie = join(dir, '.b.sock.cookie');
  const p = await activated(t, sock);
  t.notOk(existsSync(cookie), 'no daemon yet: no cookie');
  t.equal(p.lines.length, 0, 'the daemon has not started before the first connection');

  // the first connection starts the daemon (it waits in the listen backlog meanwhile)
  const first = await statusOf(sock);
  t.equal(first.socket, sock, 'status.socket is the inherited path, found through /proc/net/unix');
  t.equal(first.pid, p.pid, 'systemd-socket-activate exec()s the daemon: same pid (LISTEN_PID)');
  t.ok(existsSync(cookie), 'the daemon wrote its cookie before serving');
  const starter = first.clients.filter((c) => c.name?.startsWith('bufctl:'));
  t.equal(starter.length, 1, 'the anonymous first session was closed');
  t.equal(starter[0]!.principal, 'cookie', 'the connection that started the daemon ends up admin: the client reopens with the cookie it finds then');
  const listening = await p.wait((l) => l['msg'] === 'listening', 'listening');
  t.equal(listening['activated'], true);
  t.equal(listening['socket'], sock);
  t.equal(listening['notify'], 'none');
  t.match(p.stderr(), 'Listening on', 'systemd-socket-activate made the socket');

  // the admin cookie is written beside the inherited socket: bufctl is admin now
  await until(() => existsSync(cookie), 'admin cookie');
  const second = await statusOf(sock);
  const me = second.clients.filter((c) => c.name?.startsWith('bufctl:'));
  t.equal(me.length, 1);
  t.equal(me[0]!.principal, 'cookie', 'bufctl connected with the cookie');
  t.same(me[0]!.capabilities, ['admin']);

  // several clients served at once, library clients too
  const cs = await Promise.all(['a', 'b', 'c'].map((n) => client(t, sock, `act-${n}`)));
  const admin = await connect({ socket: sock, name: 'act-admin', admin: true });
  t.teardown(() => admin.disconnect());
  t.equal(admin.session.principal, 'cookie');
  for (const c of cs) t.ok(await c.ping());
  const h = await cs[0]!.alloc({ pool: 'default', size: 4096 });
  await cs[0]!.write(h.handle, 0, Buffer.from('activated'));
  t.equal((await cs[0]!.read(h.handle, 0, 9)).toString(), 'activated');
  const st = await admin.status();
  t.same(st.clients.map((c) => c.name).filter((n) => n?.startsWith('act-')).sort(), ['act-a', 'act-admin', 'act-b', 'act-c']);
  await Promise.all([...cs.map((c) => c.disconnect()), admin.disconnect()]);

  // SIGTERM: the daemon exits 0, the socket file stays (systemd's), the cookie goes
  p.child.kill('SIGTERM');
  const ex = await p.exited;
  t.same(ex, { code: 0, signal: null });
  t.ok(p.lines.some((l) => l['msg'] === 'stopped'));
  t.ok(existsSync(sock), 'the inherited socket file is not unlinked');
  t.notOk(existsSync(cookie), 'the cookie is removed');

  // a second activation on a fresh path works the same way
  const sock2 = join(dir, 'b2.sock');
  const p2 = await activated(t, sock2);
  const st2 = await statusOf(sock2);
  t.equal(st2.socket, sock2);
  t.equal(st2.pid, p2.pid);
  t.not(st2.pid, first.pid);
  await until(() => existsSync(join(dir, '.b2.sock.cookie')), 'second cookie');
  t.equal((await statusOf(sock2)).clients.find((c) => c.name?.startsWith('bufctl:'))?.principal, 'cookie');
  p2.child.kill('SIGTERM');
  t.same(await p2.exited, { code: 0, signal: null });
  t.ok(existsSync(sock2));
  t.notOk(existsSync(join(dir, '.b2.sock.cookie')));
});

t.test('socket activation: a library client that starts the daemon is admin only when it asked', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'lib.sock');
  await activated(t, sock);
  const app = await connect({ socket: sock, name: 'starter' });
  t.teardown(() => app.disconnect());
  t.ok(existsSync(join(dir, '.lib.sock.cookie')), 'the daemon it started wrote its cookie');
  t.equal(app.session.principal, 'anonymous', 'not asked: the session is not reopened with the cookie found then');
  const mine = (await app.status()).clients.filter((c) => c.name === 'starter');
  t.same(mine.map((c) => c.id), [app.id], 'the first session is the one kept');

  const sock2 = join(dir, 'lib2.sock');
  await activated(t, sock2);
  const admin = await connect({ socket: sock2, name: 'starter', admin: true });
  t.teardown(() => admin.disconnect());
  t.equal(admin.session.principal, 'cookie', 'admin: true: reopened with the cookie the daemon wrote when it started');
  t.same((await admin.status()).clients.filter((c) => c.name === 'starter').map((c) => c.id), [admin.id], 'the anonymous first session was closed');
});

// ---------------------------------------------------------------- unit files

/** Section → key → values, without comment lines. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let sec = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m !== null) {
      sec = out.get(m[1]!) ?? new Map();
      out.set(m[1]!, sec);
      continue;
    }
    const i = line.indexOf('=');
    if (i < 0) continue;
    const k = line.slice(0, i).trim();
    sec.set(k, [...(sec.get(k) ?? []), line.slice(i + 1).trim()]);
  }
  return out;
}

/** Copy the units into dir with ExecStart pointing at the checkout's daemon. */
function installUnits(dir: string, edit: (service: string) => string = (s) => s): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(UNITS, 'bufferd.socket'), join(dir, 'bufferd.socket'));
  const service = readFileSync(join(UNITS, 'bufferd.service'), 'utf8');
  if (!/^ExecStart=bufferd /m.test(service)) throw new Error('bufferd.service: ExecStart is not bufferd ...');
  writeFileSync(join(dir, 'bufferd.service'), edit(service.replace(/^ExecStart=bufferd /m, `ExecStart=${DAEMON} `)));
  return dir;
}

const verify = (dir: string) => run('systemd-analyze', ['verify', '--man=no', join(dir, 'bufferd.socket'), join(dir, 'bufferd.service')]);
/** verify's complaints about our files (it may say unrelated things about the host). */
const complaints = (stderr: string) => stderr.split('\n').filter((l) => /bufferd/.test(l));

t.test('systemd-analyze verify accepts the units and catches broken copies', async (t) => {
  const dir = tempDir(t);
  const good = installUnits(join(dir, 'good'));
  const ok = await verify(good);
  t.same(complaints(ok.stderr), [], 'no complaint about bufferd.socket or bufferd.service');
  t.equal(ok.code, 0);

  const typo = installUnits(join(dir, 'typo'), (s) => s.replace(/^Type=notify$/m, 'Type=notifyy'));
  const r1 = await verify(typo);
  t.match(r1.stderr, /bufferd\.service:\d+: .*service type.*notifyy/, 'an invalid Type= is reported');
  const unknown = installUnits(join(dir, 'unknown'), (s) => s.replace(/^NoNewPrivileges=yes$/m, 'NoNewPrivileges=yes\nFrobnicateHarder=yes'));
  const r2 = await verify(unknown);
  t.match(r2.stderr, /bufferd\.service:\d+: Unknown key 'FrobnicateHarder'/, 'an unknown directive is reported');
  const noexec = installUnits(join(dir, 'noexec'), (s) => s.replace(`ExecStart=${DAEMON} `, `ExecStart=${join(dir, 'missing-bufferd')} `));
  const r3 = await verify(noexec);
  t.not(r3.code, 0, 'a missing ExecStart binary fails verify');
  t.match(r3.stderr, 'is not executable');
});

t.test('the service and socket units carry the required settings', async (t) => {
  const service = parseUnit(readFileSync(join(UNITS, 'bufferd.service'), 'utf8'));
  const s = service.get('Service')!;
  t.ok(s, '[Service] section');
  const one = (k: string) => {
    const v = s.get(k);
    t.equal(v?.length, 1, `${k}= set once`);
    return v?.[0];
  };
  t.equal(one('Type'), 'notify');
  t.equal(one('NotifyAccess'), 'main', 'the daemon sends its notifications itself');
  t.match(one('ExecReload'), /kill\s+(-HUP|-s\s*HUP|--signal[= ]HUP|-SIGHUP)\s+\$MAINPID/);
  t.match(one('WatchdogSec'), /^\d+(s|min)?$/);
  t.equal(one('DynamicUser'), 'yes');
  t.equal(one('ProtectSystem'), 'strict');
  t.match(one('ProtectHome'), /^(yes|read-only|tmpfs)$/);
  t.equal(one('NoNewPrivileges'), 'yes');
  t.equal(one('RestrictAddressFamilies'), 'AF_UNIX');
  t.equal(one('PrivateTmp'), 'yes');
  t.equal(one('LockPersonality'), 'yes');
  t.notOk(s.has('MemoryDenyWriteExecute'), 'MemoryDenyWriteExecute is not set (V8 JIT)');
  t.match(one('ExecStart'), /--config \/etc\/bufferd\/bufferd\.json/);
  // npm install -g puts bufferd in /usr/local/bin or /usr/bin (by npm's prefix): a bare
  // name is looked up in both
  t.match(one('ExecStart'), /^bufferd /, 'ExecStart names bufferd without a directory');
  const dash = parseUnit(readFileSync(join(UNITS, 'dashboard.conf'), 'utf8')).get('Service')!;
  t.same(dash.get('ExecStart'), ['', `${one('ExecStart')} --http 127.0.0.1:7474`], 'dashboard.conf: the same command plus --http');
  t.match(readFileSync(join(UNITS, 'bufferd.service'), 'utf8'), /#.*MemoryDenyWriteExecute/, 'the comment about it is there (and ignored above)');

  const socket = parseUnit(readFileSync(join(UNITS, 'bufferd.socket'), 'utf8')).get('Socket')!;
  t.ok(socket, '[Socket] section');
  t.match(socket.get('ListenStream')?.[0], /^%t\//, 'ListenStream under %t (the runtime directory)');
  t.same(socket.get('SocketMode'), ['0660']);
  t.ok((socket.get('SocketGroup')?.[0] ?? '') !== '', 'SocketGroup= set');
});

// ---------------------------------------------------------------- sd_notify

const LISTENER = `
import json, socket, sys, time
a = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + a[1:] if a.startswith('@') else a)
print(json.dumps({"ready": True}), flush=True)
while True:
    d = s.recv(65536).decode()
    print(json.dumps({"usec": time.monotonic_ns() // 1000, "text": d, "vars": dict(x.split("=", 1) for x in d.split("\\n") if "=" in x)}), flush=True)
`;

type Msg = { usec: number; text: string; vars: Record<string, string> };

async function listener(t: Teardown, address: string): Promise<{ p: Proc; msgs: () => Msg[] }> {
  const child = spawn('python3', ['-c', LISTENER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = new Proc(child, 'notify listener');
  t.teardown(() => p.kill('SIGKILL'));
  await p.wait((l) => l['ready'] === true, 'listener ready');
  return { p, msgs: () => p.lines.filter((l) => typeof l['text'] === 'string') as unknown as Msg[] };
}

t.test('sd_notify datagrams from the daemon itself: READY, WATCHDOG, RELOADING/READY, STOPPING', async (t) => {
  const path = join(tempDir(t), 'notify.sock');
  const L = await listener(t, path);
  const d = await startDaemon(t, { env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '300000', WATCHDOG_PID: '' } });
  t.equal(d.logs.find((l) => l['msg'] === 'listening')?.['notify'], 'datagram');
  await until(() => L.msgs().some((m) => m.vars['READY'] === '1'), 'READY=1');
  const ready = L.msgs().find((m) => m.vars['READY'] === '1')!;
  t.equal(ready.vars['MAINPID'], String(d.proc.pid), 'MAINPID is the daemon');
  t.equal(ready.vars['STATUS'], `serving on ${d.socket}`);
  t.equal(L.msgs()[0]!.vars['READY'], '1', 'READY=1 is the first message');

  // WATCHDOG=1 every WATCHDOG_USEC/2 (150 ms)
  await until(() => L.msgs().filter((m) => m.text === 'WATCHDOG=1').length >= 3, 'three WATCHDOG=1');
  t.ok(L.msgs().filter((m) => m.text === 'WATCHDOG=1').length >= 3);

  // SIGHUP: RELOADING=1 with MONOTONIC_USEC on CLOCK_MONOTONIC, then READY=1
  const n = L.msgs().length;
  const before = process.hrtime.bigint() / 1000n;
  d.proc.kill('SIGHUP');
  await until(() => L.msgs().slice(n).some((m) => m.vars['READY'] === '1'), 'READY=1 after the reload');
  const after = L.msgs().slice(n).filter((m) => m.text !== 'WATCHDOG=1');
  t.equal(after.length, 2, 'two messages for the reload');
  t.equal(after[0]!.vars['RELOADING'], '1', 'RELOADING=1 first');
  t.match(after[0]!.vars['MONOTONIC_USEC'], /^\d+$/);
  const mono = BigInt(after[0]!.vars['MONOTONIC_USEC']!);
  t.ok(mono >= before && mono <= BigInt(after[0]!.usec), 'MONOTONIC_USEC is CLOCK_MONOTONIC, between the signal and its receipt');
  t.equal(after[1]!.vars['READY'], '1', 'then READY=1');
  t.equal(after[1]!.vars['STATUS'], 'reloaded');
  await d.waitForLog((l) => l['msg'] === 'configuration reloaded');

  const m = L.msgs().length;
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null });
  await until(() => L.msgs().slice(m).some((x) => x.vars['STOPPING'] === '1'), 'STOPPING=1');
  t.same(L.msgs().slice(m).filter((x) => x.text !== 'WATCHDOG=1').map((x) => x.text), ['STOPPING=1'], 'nothing but STOPPING=1 at the end');
});

t.test('without native calls NOTIFY_SOCKET is reported, and nothing else breaks', async (t) => {
  const path = join(tempDir(t), 'n.sock');
  const L = await listener(t, path);
  const d = await startDaemon(t, { env: { NOTIFY_SOCKET: path, BUFFERD_NO_NATIVE: '1' } });
  t.equal(d.logs.find((l) => l['msg'] === 'listening')?.['notify'], 'none');
  t.ok(d.logs.some((l) => l['level'] === 40 && String(l['msg']).includes('NOTIFY_SOCKET is set but datagrams cannot be sent')), 'a warning says why');
  const c = await client(t, d.socket, 'plain');
  t.ok(await c.ping());
  await c.disconnect();
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null });
  t.same(L.msgs(), [], 'nothing was sent');
});

t.test('sd_notify to an abstract NOTIFY_SOCKET; WATCHDOG_PID of another process: no pings', async (t) => {
  const address = `@bufferd-test-${randomBytes(6).toString('hex')}`;
  const L = await listener(t, address);
  const d = await startDaemon(t, { env: { NOTIFY_SOCKET: address, WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid) } });
  t.equal(d.logs.find((l) => l['msg'] === 'listening')?.['notify'], 'datagram');
  await until(() => L.msgs().some((m) => m.vars['READY'] === '1'), 'READY=1 on the abstract socket');
  const ready = L.msgs().find((m) => m.vars['READY'] === '1')!;
  t.equal(ready.vars['MAINPID'], String(d.proc.pid));
  t.equal(ready.vars['STATUS'], `serving on ${d.socket}`);
  // a watchdog every 50 ms would have pinged ~10 times in this pause; a reload shows the channel is live
  await new Promise((r) => setTimeout(r, 500));
  d.proc.kill('SIGHUP');
  await until(() => L.msgs().filter((m) => m.vars['READY'] === '1').length === 2, 'READY=1 after the reload');
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null });
  await until(() => L.msgs().some((m) => m.vars['STOPPING'] === '1'), 'STOPPING=1');
  t.same(L.msgs().map((m) => Object.keys(m.vars)[0]), ['READY', 'RELOADING', 'READY', 'STOPPING'], 'no WATCHDOG=1 (WATCHDOG_PID is not the daemon)');
});

t.test('without NOTIFY_SOCKET nothing breaks (and systemd/bufferd.json loads)', async (t) => {
  const file = join(UNITS, 'bufferd.json');
  t.same(JSON.parse(readFileSync(file, 'utf8')), DEFAULT_MACHINE, 'bufferd.json is the embedded default machine');
  const d = await startDaemon(t, { args: ['--config', file], env: { NOTIFY_SOCKET: '', WATCHDOG_USEC: '100000' } });
  const listening = d.logs.find((l) => l['msg'] === 'listening')!;
  t.equal(listening['notify'], 'none');
  t.equal(listening['config'], file);
  t.notOk(d.logs.some((l) => String(l['msg']).includes('NOTIFY_SOCKET')), 'no notify warning');
  const c = await client(t, d.socket, 'plain');
  const st = await c.status();
  t.same(st.pools.map((p) => p.name).sort(), DEFAULT_MACHINE.pools.map((p) => p.name).sort());
  t.same(st.drivers.map((x) => x.name).sort(), (DEFAULT_MACHINE.drivers ?? []).map((x) => x.name).sort());
  t.equal(st.hugepages.find((h) => h.size === 2 * 1024 * 1024)?.nr, 256);
  d.proc.kill('SIGHUP');
  const r = await d.waitForLog((l) => l['msg'] === 'configuration reloaded');
  t.same(r['applied'], [], 'reloading the unchanged file changes nothing');
  t.ok(await c.ping());
  await c.disconnect();
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null });
  t.equal(d.stderr(), '', 'nothing on stderr');
});

t.test('RELOADING=1 always comes before its READY=1', async (t) => {
  const path = join(tempDir(t), 'order.sock');
  const L = await listener(t, path);
  const d = await startDaemon(t, { env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '', WATCHDOG_PID: '' } });
  await until(() => L.msgs().length === 1, 'READY=1');
  for (let i = 0; i < 30; i++) {
    d.proc.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 100));
  }
  // each reload (signals may coalesce: count the log lines) sends one RELOADING=1 then one READY=1
  const reloads = () => d.logs.filter((l) => l['msg'] === 'configuration reloaded').length;
  await until(() => reloads() > 0 && L.msgs().length === 1 + 2 * reloads(), 'both messages of every reload');
  const order = L.msgs().slice(1).map((m) => Object.keys(m.vars)[0]);
  t.same(order, Array.from({ length: 2 * reloads() }, (_, i) => (i % 2 === 0 ? 'RELOADING' : 'READY')));
});
