/**
 * Access control end to end: capabilities per principal, passing privileged
 * buffers to unprivileged clients, admin-only ops, unknown tokens, byte
 * quotas, the admin cookie, token files and the socket's mode.
 */
import t from 'tap';
import { existsSync, statSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, runNode, tempDir, DAEMON } from '../helpers/daemon.js';
import { spawnClient, spawnFixture, rejection, pattern } from '../helpers/procs.js';
import { connect, BufferdError, type BufferClient, type HandleInfo } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const GPU = 'gpu-token-secret-0123456789';
const ROOT = 'root-token-secret-0123456789';
const SMALL = 'small-token-secret-0123456789';
const KiB = 1024;
const MiB = 2 ** 20;

const CONFIG = {
  ...DEFAULT_MACHINE,
  auth: {
    anonymous: { capabilities: [] },
    tokens: [
      { name: 'gpu', secret: GPU, capabilities: ['alloc:writecombine'] },
      { name: 'root', secret: ROOT, capabilities: ['admin'] },
      { name: 'small', secret: SMALL, capabilities: [], maxBytes: '64K' },
    ],
  },
};

type Teardown = { teardown(fn: () => unknown): void };
async function client(t: Teardown, socket: string, opts: { name?: string; token?: string } = {}): Promise<BufferClient> {
  const c = await connect({ socket, useCookie: false, accept: 'any', ...opts });
  t.teardown(() => c.disconnect());
  return c;
}
const mode = (p: string) => statSync(p).mode & 0o777;

// daemons shared by subtests that each use clients of their own: CONFIG's (capabilities, quota)
// and one without the cookie (admin: true refused, auth.cookie false)
const [withTokens, noCookie] = await Promise.all([
  startDaemon(t, { config: CONFIG }),
  startDaemon(t, { config: { ...DEFAULT_MACHINE, auth: { ...DEFAULT_MACHINE.auth, cookie: false } } }),
]);

t.test('capabilities: pools need theirs, admin ops need admin; privileged buffers can be passed', async (t) => {
  const d = withTokens;
  const anon = await client(t, d.socket, { name: 'anon' });
  t.same([anon.session.principal, anon.session.capabilities], ['anonymous', []]);
  const before = await anon.status();
  for (const [pool, cap] of [
    ['wc', 'alloc:writecombine'],
    ['contig', 'alloc:writecombine'],
    ['uncached', 'alloc:uncached'],
    ['tcm', 'alloc:uncached'],
  ] as const) {
    const e = await rejection(anon.alloc({ pool, size: 4096 }));
    t.equal(e.code, 'EPERM', `anonymous from ${pool}`);
    t.match(e.message, `'${cap}'`);
    t.match(e.message, `pool '${pool}'`);
    t.same(e.details, { capability: cap });
  }
  t.same((await anon.status()).pools, before.pools, 'refused allocations changed nothing');
  t.equal((await anon.alloc({ pool: 'default', size: 100 })).handle, 0, 'a pool without a capability is open to all');

  const gpu = await client(t, d.socket, { name: 'gpu', token: GPU });
  t.same([gpu.session.principal, gpu.session.capabilities], ['gpu', ['alloc:writecombine']]);
  const wc = await gpu.alloc({ pool: 'wc', size: 3 * MiB });
  t.equal(wc.cache, 'writecombine');
  t.equal((await gpu.alloc({ pool: 'contig', size: 8192 })).cache, 'writecombine');
  t.match((await rejection(gpu.alloc({ pool: 'uncached', size: 10 }))).details, { capability: 'alloc:uncached' }, 'only the capabilities it was given');
  await gpu.write(wc.handle, 0, pattern(64 * KiB, 3));

  // the buffer goes to an anonymous client in another process, which uses it per its rights
  const viewer = await spawnClient(t, d.socket, 'viewer');
  t.equal(viewer.ready['principal'], 'anonymous');
  await gpu.send(wc.handle, 'viewer', { rights: ['read'] });
  const ev = await viewer.wait((l) => l['event'] === 'handle', 'handle event');
  t.equal(ev['cache'], 'writecombine');
  const v = await viewer.cmd<{ equal: boolean }>('verify', { handle: ev['handle'], length: 64 * KiB, seed: 3 });
  t.ok(v.equal, 'the anonymous client reads the write-combine buffer');
  const w = await rejection(viewer.call('write', ev['handle'], 0, Buffer.from([1])));
  t.same([w.code, w.details?.['missing']], ['EPERM', 'write'], 'but may not write it with a read-only handle');
  await gpu.send(wc.handle, 'viewer', { rights: ['read', 'write'] });
  const ev2 = await viewer.wait((l) => l['event'] === 'handle' && l['handle'] !== ev['handle'], 'second handle event');
  t.same(await viewer.call('write', ev2['handle'], 5, Buffer.from([0xab, 0xcd])), { written: 2 }, 'with the write right it may');
  t.same([...(await gpu.read(wc.handle, 4, 4))], [pattern(1, 3, 4)[0], 0xab, 0xcd, pattern(1, 3, 7)[0]], 'the creator sees the write');
  t.same((await rejection(viewer.call('dup', 99))).code, 'EBADF');

  // hugepages.set is admin only
  for (const [who, c] of [
    ['anonymous', anon],
    ['gpu', gpu],
  ] as const) {
    const e = await rejection(c.setHugepages(2 * MiB, 300));
    t.equal(e.code, 'EPERM', `hugepages.set by ${who}`);
    t.match(e.message, "'admin'");
    t.same(e.details, { capability: 'admin' });
  }
  t.equal((await anon.status()).hugepages[0]!.requested, 256, 'nothing changed');
  const root = await client(t, d.socket, { token: ROOT });
  t.same([root.session.principal, root.session.capabilities], ['root', ['admin']]);
  const r = await root.setHugepages(2 * MiB, 300);
  t.match(r, { size: 2 * MiB, requested: 300, reached: 300 });
  t.equal((await root.alloc({ pool: 'uncached', size: 10 })).cache, 'uncached', 'admin holds every capability');
  t.same((await root.buffers()).buffers.length, 4, 'admin lists every buffer');
  t.same((await anon.buffers()).buffers.length, 1, 'anonymous lists its own');

  // an unknown token: the session is refused
  const clientsBefore = (await root.status()).clients.length;
  for (const token of ['not-a-known-token-at-all', GPU.slice(0, -1)]) {
    const e = await connect({ socket: d.socket, token, name: 'intruder' }).then(
      () => null,
      (x: unknown) => x,
    );
    t.ok(e instanceof BufferdError, 'connect rejects');
    t.equal((e as BufferdError).code, 'EPERM');
    t.match((e as BufferdError).message, 'unknown token');
  }
  const st = await root.status();
  t.equal(st.clients.length, clientsBefore, 'no session was opened');
  t.notOk(st.clients.some((c) => c.name === 'intruder'));
  const refused = await spawnFixture(t, 'client.mjs', [d.socket, 'intruder'], { env: { BUFFERD_TOKEN: 'wrong-token-1234567890' }, waitReady: false });
  t.match(await refused.wait((l) => 'ready' in l, 'the answer to hello'), { ready: false, error: { code: 'EPERM' } }, 'a process with a wrong token is refused too');
  t.equal((await refused.exited).code, 1);
});

t.test('quota: EDQUOT with the figures; closing frees quota again', async (t) => {
  const d = withTokens;
  const q = await client(t, d.socket, { name: 'quota', token: SMALL });
  const other = await client(t, d.socket, { name: 'other' });
  t.equal(q.session.maxBytes, 64 * KiB);
  const a = await q.alloc({ pool: 'default', size: 40 * KiB });
  t.equal(a.usize, 40 * KiB);
  const before = await q.status();
  let e = await rejection(q.alloc({ pool: 'default', size: 40 * KiB }));
  t.equal(e.code, 'EDQUOT');
  t.same(e.details, { quota: 64 * KiB, used: 40 * KiB, requested: 40 * KiB, principal: 'small' });
  t.match(e.message, '64 KiB');
  t.match(e.message, '40 KiB in use');
  t.same((await q.status()).pools, before.pools, 'a refused alloc allocates nothing');
  e = await rejection(q.alloc({ pool: 'huge', size: 3 * MiB }));
  t.same(e.details, { quota: 64 * KiB, used: 40 * KiB, requested: 4 * MiB, principal: 'small' }, 'requested counts usable bytes (whole hugepages)');
  e = await rejection(q.alloc({ pool: 'default', size: 24 * KiB + 1 }));
  t.equal(e.details?.['requested'], 28 * KiB, 'the size class is what counts');
  const b = await q.alloc({ pool: 'default', size: 24 * KiB });
  let me = (await q.status()).clients.find((c) => c.name === 'quota')!;
  t.match(me, { principal: 'small', bytes: 64 * KiB, maxBytes: 64 * KiB });
  t.same((await rejection(q.alloc({ pool: 'default', size: 1 }))).details, { quota: 64 * KiB, used: 64 * KiB, requested: 8, principal: 'small' }, 'exactly full');

  await q.close(a.handle);
  me = (await q.status()).clients.find((c) => c.name === 'quota')!;
  t.equal(me.bytes, 24 * KiB, 'closing gave the quota back');
  const c = await q.alloc({ pool: 'default', size: 40 * KiB });
  t.equal(c.usize, 40 * KiB, 'and it can be used again');

  // the quota is the creator's while anyone holds what it allocated
  await q.send(c.handle, 'other');
  await q.close(c.handle);
  me = (await q.status()).clients.find((x) => x.name === 'quota')!;
  t.equal(me.bytes, 64 * KiB, 'a buffer passed on still counts against its creator');
  t.same((await other.status()).clients.find((x) => x.name === 'other')!.bytes, 0, 'not against the holder');
  await other.close(0);
  me = (await q.status()).clients.find((x) => x.name === 'quota')!;
  t.equal(me.bytes, 24 * KiB, 'freed by its last holder: quota back');
  await q.close(b.handle);
  t.equal((await q.status()).clients.find((x) => x.name === 'quota')!.bytes, 0);
});

t.test('the admin cookie: beside the socket, mode 0600, admin, removed at stop', async (t) => {
  const d = await startDaemon(t);
  const cookie = join(d.dir, '.bufferd.sock.cookie');
  t.ok(existsSync(cookie), 'written beside the socket');
  t.equal(mode(cookie).toString(8), '600', 'mode 0600');
  t.match(readFileSync(cookie, 'utf8'), /^[0-9a-f]{64}\n$/, '256 random bits');
  t.equal(mode(d.socket).toString(8), '660', 'the socket has the default mode 0660');

  const admin = await connect({ socket: d.socket, admin: true });
  t.teardown(() => admin.disconnect());
  t.same([admin.session.principal, admin.session.capabilities, admin.session.maxBytes], ['cookie', ['admin'], null]);
  const plain = await client(t, d.socket);
  t.same([plain.session.principal, plain.session.capabilities], ['anonymous', ['alloc:uncached', 'alloc:writecombine', 'driver']]);
  t.equal((await rejection(plain.setHugepages(2 * MiB, 10))).code, 'EPERM');
  t.equal((await admin.setHugepages(2 * MiB, 10)).reached, 10, 'the cookie holder is admin');
  const proc = await spawnClient(t, d.socket, 'cookie-proc', { BUFFERD_USE_COOKIE: '1' });
  t.same([proc.ready['principal'], proc.ready['capabilities']], ['cookie', ['admin']], 'another process of the same user reads it too');

  const secret = readFileSync(cookie, 'utf8').trim();
  const r = await d.stop('SIGTERM');
  t.equal(r.code, 0);
  t.notOk(existsSync(cookie), 'removed when the daemon stops');
  t.notOk(existsSync(d.socket), 'and the socket too');

  // a new daemon on the same path writes a new cookie; the old secret is worthless
  const d2 = await startDaemon(t, { socket: d.socket });
  t.not(readFileSync(cookie, 'utf8').trim(), secret, 'a fresh cookie each start');
  const e = await rejection(connect({ socket: d2.socket, token: secret }));
  t.equal(e.code, 'EPERM', 'the previous cookie is unknown to the new daemon');
});

t.test('the client library presents the admin cookie only when asked', async (t) => {
  const d = await startDaemon(t);
  t.ok(existsSync(join(d.dir, '.bufferd.sock.cookie')), 'the cookie is there and readable by this process');
  const app = await connect({ socket: d.socket, name: 'app' });
  t.teardown(() => app.disconnect());
  t.same([app.session.principal, app.session.capabilities], ['anonymous', ['alloc:uncached', 'alloc:writecombine', 'driver']], 'an application is not admin by default');
  const e = await rejection(app.setHugepages(2 * MiB, 10));
  t.equal(e.code, 'EPERM', 'so a missing capability shows during development');
  t.equal(e.message, "hugepages.set requires the capability 'admin', which this client does not have");
  for (const [what, opts] of [
    ['admin: true', { admin: true }],
    ["admin: 'if-readable'", { admin: 'if-readable' }],
    ['useCookie: true (the former name)', { useCookie: true }],
  ] as const) {
    const c = await connect({ socket: d.socket, ...opts });
    t.equal(c.session.principal, 'cookie', what);
    await c.disconnect();
  }
  const tok = await rejection(connect({ socket: d.socket, token: 'no-such-token-0123456789', admin: true }));
  t.equal(tok.code, 'EPERM', 'a token given wins over admin: the cookie is not presented instead');
  const st = await app.status();
  t.equal(st.clients.find((c) => c.id === app.id)!.principal, 'anonymous');
});

t.test('admin: true without a readable cookie is refused, naming the cookie; if-readable carries on', async (t) => {
  const d = noCookie;
  const cookie = join(d.dir, '.bufferd.sock.cookie');
  const e = await rejection(connect({ socket: d.socket, name: 'wants-admin', admin: true }));
  t.equal(e.code, 'EPERM');
  t.equal(e.message, `admin asked for (connect({admin: true})), but the admin cookie ${cookie} does not exist (the daemon writes it at start unless auth.cookie is false)`);
  t.same(e.details, { cookie });
  const tried = await connect({ socket: d.socket, name: 'wants-admin', admin: 'if-readable' });
  t.teardown(() => tried.disconnect());
  t.equal(tried.session.principal, 'anonymous', 'if-readable: anonymous, the name free again after the refused attempt');
});

t.test('auth.cookie false: no cookie, default clients are anonymous', async (t) => {
  const d = noCookie;
  t.notOk(existsSync(join(d.dir, '.bufferd.sock.cookie')), 'no cookie file');
  const c = await connect({ socket: d.socket });
  t.teardown(() => c.disconnect());
  t.equal(c.session.principal, 'anonymous');
  t.equal((await rejection(c.setHugepages(2 * MiB, 10))).code, 'EPERM', 'nobody is admin');
});

t.test(
  'auth.cookie false after a crashed daemon left its cookie: default clients still connect',
  async (t) => {
    const first = await startDaemon(t);
    await first.stop('SIGKILL'); // the cookie stays behind, as after a crash
    t.ok(existsSync(join(first.dir, '.bufferd.sock.cookie')));
    const d = await startDaemon(t, { socket: first.socket, config: { ...DEFAULT_MACHINE, auth: { ...DEFAULT_MACHINE.auth, cookie: false } } });
    const c = await connect({ socket: d.socket });
    t.teardown(() => c.disconnect());
    t.equal(c.session.principal, 'anonymous');
  },
);

t.test('token files: refused unless only the owner can read them', async (t) => {
  const dir = tempDir(t);
  const tokens = { tokens: [{ name: 'from-file', secret: 'file-token-secret-0123456789', capabilities: ['alloc:uncached'], maxBytes: '1M' }] };
  const cfg = { ...DEFAULT_MACHINE, auth: { anonymous: { capabilities: [] }, tokenFile: 'tokens.json' } };
  const tokenFile = join(dir, 'tokens.json');
  const cfgFile = join(dir, 'config.json');
  writeFileSync(tokenFile, JSON.stringify(tokens));
  writeFileSync(cfgFile, JSON.stringify(cfg));
  for (const m of [0o644, 0o640, 0o604]) {
    chmodSync(tokenFile, m);
    const sock = join(dir, 'refused.sock');
    const r = await runNode([DAEMON, '--socket', sock, '--config', cfgFile], { timeoutMs: 10_000 });
    t.equal(r.code, 1, `mode 0${m.toString(8)}: exit 1`);
    t.match(r.stderr, tokenFile, 'stderr names the file');
    t.match(r.stderr, `0${m.toString(8)}`);
    t.match(r.stderr, 'chmod 600');
    t.notOk(existsSync(sock), 'it never listened');
  }
  chmodSync(tokenFile, 0o600);
  // the relative path is resolved beside the config file
  const d = await startDaemon(t, { args: ['--config', cfgFile] });
  const c = await connect({ socket: d.socket, token: 'file-token-secret-0123456789', useCookie: false });
  t.teardown(() => c.disconnect());
  t.same([c.session.principal, c.session.capabilities, c.session.maxBytes], ['from-file', ['alloc:uncached'], MiB]);
  t.equal((await c.alloc({ pool: 'uncached', size: 100 })).cache, 'uncached', "the file token's capability works");
  const anon = await client(t, d.socket);
  t.equal((await rejection(anon.alloc({ pool: 'uncached', size: 100 }))).code, 'EPERM');
});

t.test('server.socketMode sets the socket file mode; a config without auth gives anonymous nothing', async (t) => {
  const { auth: _auth, ...noAuth } = DEFAULT_MACHINE;
  const d = await startDaemon(t, { config: { ...noAuth, server: { ...DEFAULT_MACHINE.server, socketMode: '0600' } } });
  t.equal(mode(d.socket).toString(8), '600');
  const c = await client(t, d.socket);
  t.same(await c.alloc({ pool: 'default', size: 1 }).then((x: HandleInfo) => x.handle), 0, 'the owner still connects');
  t.same(c.session.capabilities, [], 'no auth section: anonymous has no capabilities');
  t.equal((await rejection(c.alloc({ pool: 'wc', size: 1 }))).code, 'EPERM');
  t.ok(existsSync(join(d.dir, '.bufferd.sock.cookie')), 'the cookie is on by default');
});

t.test('peer credentials: status shows each client\'s pid, uid and gid; auth.users grants by uid', async (t) => {
  const uid = process.getuid!();
  const gid = process.getgid!();
  const d = await startDaemon(t, {
    config: { ...DEFAULT_MACHINE, auth: { anonymous: { capabilities: [] }, users: { [String(uid)]: { capabilities: ['driver'], maxBytes: '1M' } } } },
  });
  const c = await client(t, d.socket, { name: 'me' });
  t.same(c.session.peer, { pid: process.pid, uid, gid }, 'hello tells the client how the daemon sees it');
  t.equal(c.session.principal, `uid:${uid}`, 'no token: the user grant applies');
  t.same(c.session.capabilities, ['driver']);
  t.equal(c.session.maxBytes, 1 << 20);
  const proc = await spawnClient(t, d.socket, 'other-proc');
  const st = await c.status();
  const row = (name: string) => st.clients.find((x) => x.name === name)!;
  t.match(row('me'), { pid: process.pid, uid, gid });
  t.equal(row('other-proc').pid, proc.child.pid, 'another process: its own pid');
  // a token still wins
  const tok = await connect({ socket: d.socket, token: undefined, useCookie: true });
  t.teardown(() => tok.disconnect());
  t.equal(tok.session.principal, 'cookie');
});
