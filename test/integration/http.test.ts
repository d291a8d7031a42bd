/**
 * The dashboard listener (--http): loopback only, static pages with strict
 * headers, a Host check against DNS rebinding, and a WebSocket at /ws that
 * needs a 'monitor' token and a same-site Origin and streams the events and
 * snapshots (with pool maps and the buffer list). Slow and dead peers are
 * cut; start-up errors leave nothing behind.
 */
import t, { type Test } from 'tap';
import { request } from 'node:http';
import { connect as tcpConnect, createServer, type Socket } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import { startDaemon, runNode, tempDir, DAEMON, type Daemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client } from '../helpers/drivers.js';
import { spawnClient, poll, until } from '../helpers/procs.js';
import { cookiePathFor } from '../../protocol/paths.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { BufferClient, HandleInfo, Status } from '../../client/index.js';

type Ev = Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Dash {
  d: Daemon;
  c: BufferClient;
  port: number;
  token: string;
}

async function dashboard(t: Test, config?: unknown): Promise<Dash> {
  const d = await startDaemon(t, { args: ['--http', '127.0.0.1:0'], ...(config !== undefined ? { config } : {}) });
  const c = await client(t, d.socket, 'probe');
  const url = (await c.status()).dashboard;
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'status.dashboard is the URL');
  const log = await d.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('dashboard listening'));
  t.equal(log['url'], url, 'the log names the same URL');
  return { d, c, port: Number(new URL(url!).port), token: readFileSync(cookiePathFor(d.socket), 'utf8').trim() };
}

function get(port: number, path: string, o: { method?: string; host?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.host !== undefined ? { host: o.host } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Ws {
  ws: WebSocket;
  msgs: Ev[];
  closed: Promise<{ code: number; reason: string }>;
  wait(pred: (e: Ev) => boolean, what: string, timeoutMs?: number): Promise<Ev>;
}

/** Open /ws; resolves with the open socket or the HTTP status that refused it. */
function openWs(t: Test, port: number, query: string, o: { origin?: string; host?: string } = {}): Promise<Ws | { refused: number; body: string }> {
  return new Promise((resolve, reject) => {
    const opts: { origin?: string; headers?: Record<string, string> } = {};
    if (o.origin !== undefined) opts.origin = o.origin;
    if (o.host !== undefined) opts.headers = { host: o.host };
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws${query}`, opts);
    t.teardown(() => ws.terminate());
    const msgs: Ev[] = [];
    ws.on('message', (m) => msgs.push(JSON.parse(String(m)) as Ev));
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: String(reason) })));
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ refused: res.statusCode!, body }));
    });
    ws.on('error', (e) => reject(e));
    ws.on('open', () =>
      resolve({ ws, msgs, closed, wait: (pred, what, timeoutMs = 10_000) => until(() => msgs.find(pred), what, timeoutMs) }),
    );
  });
}

async function mustOpen(t: Test, port: number, query: string, o: { origin?: string; host?: string } = {}): Promise<Ws> {
  const r = await openWs(t, port, query, o);
  if ('refused' in r) throw new Error(`refused with ${r.refused}: ${r.body}`);
  return r;
}

// one dashboard for the subtests that need no special config (the last one stops it)
const shared = await dashboard(t);

t.test('pages: headers, 404, 405, and a foreign Host is refused', async (t) => {
  const { port } = shared;
  for (const [path, type] of [['/', 'text/html'], ['/app.js', 'text/javascript'], ['/util.js', 'text/javascript'], ['/maps.js', 'text/javascript'], ['/lists.js', 'text/javascript'], ['/style.css', 'text/css']] as const) {
    const r = await get(port, path);
    t.equal(r.status, 200, `${path}: 200`);
    t.match(r.headers['content-type'], type, `${path}: content-type`);
    t.match(r.headers['content-security-policy'], /default-src 'none'/, `${path}: CSP`);
    t.match(r.headers['content-security-policy'], `connect-src 'self' ws://127.0.0.1:${port}`);
    t.equal(r.headers['x-content-type-options'], 'nosniff');
    t.equal(r.headers['cache-control'], 'no-store');
    t.ok(r.body.length > 0, `${path}: a body`);
  }
  const head = await get(port, '/', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body, '');
  t.equal((await get(port, '/nope')).status, 404);
  t.equal((await get(port, '/../../etc/passwd')).status, 404);
  const post = await get(port, '/', { method: 'POST' });
  t.equal(post.status, 405);
  t.match(post.headers['allow'], 'GET');
  // DNS rebinding: a page on evil.example resolving to 127.0.0.1
  const evil = await get(port, '/', { host: `evil.example:${port}` });
  t.equal(evil.status, 421);
  t.notMatch(evil.body, /<html/i, 'no page served');
  t.equal((await get(port, '/app.js', { host: `evil.example:${port}` })).status, 421);
  t.equal((await get(port, '/', { host: `localhost:${port}` })).status, 200, 'localhost:PORT is this dashboard');
});

t.test('WebSocket: Host, Origin and token checks', async (t) => {
  const mon = 'monitor-secret-0123456789abcdef';
  const unc = 'uncached-secret-0123456789abcdef';
  const config = {
    ...DEFAULT_MACHINE,
    auth: { ...DEFAULT_MACHINE.auth, tokens: [{ name: 'watcher', secret: mon, capabilities: ['monitor'] }, { name: 'app', secret: unc, capabilities: ['alloc:uncached'] }] },
  };
  const { d, port, token } = await dashboard(t, config);
  const q = `?token=${token}`;
  t.match(await openWs(t, port, q, { host: `evil.example:${port}` }), { refused: 421 }, 'foreign Host: 421');
  t.match(await openWs(t, port, q, { origin: 'http://evil.example' }), { refused: 403 }, 'cross-site Origin: 403');
  await d.waitForLog((l) => l['msg'] === 'dashboard WebSocket refused: cross-site origin' && l['origin'] === 'http://evil.example');
  t.match(await openWs(t, port, q, { origin: `http://127.0.0.1:${port}.evil.example` }), { refused: 403 }, 'a look-alike Origin: 403');
  t.match(await openWs(t, port, ''), { refused: 401 }, 'no token: 401');
  t.match(await openWs(t, port, '?token=wrong-secret-0123456789'), { refused: 401 }, 'wrong token: 401');
  t.match(await openWs(t, port, `?token=${unc}`), { refused: 401, body: /monitor/ }, 'a token without monitor: 401');
  const byMonitor = await mustOpen(t, port, `?token=${mon}`);
  t.match(await byMonitor.wait((e) => e['event'] === 'subscribed', 'subscribed'), { event: 'subscribed' }, 'a monitor token opens');
  const same = await mustOpen(t, port, q, { origin: `http://127.0.0.1:${port}` });
  await same.wait((e) => e['event'] === 'snapshot', 'a snapshot');
  t.pass('the cookie with the page\'s own Origin opens');
  // bad settings in the query: opened, then closed with 1008 and the reason
  for (const [extra, field] of [['&intervalMs=5', 'intervalMs'], ['&intervalMs=abc', 'intervalMs'], ['&topics=bogus', 'topics']] as const) {
    const w = await mustOpen(t, port, `${q}${extra}`);
    t.match(await w.closed, { code: 1008, reason: field }, `${extra}: 1008 naming ${field}`);
  }
  const alloc = await mustOpen(t, port, `${q}&topics=alloc,clients&intervalMs=300`);
  t.same(await alloc.wait((e) => e['event'] === 'subscribed', 'subscribed'), { event: 'subscribed', topics: ['alloc', 'clients'], intervalMs: 300 }, 'settings from the query');
  const viaLocalhost = await mustOpen(t, port, q, { host: `localhost:${port}`, origin: `http://localhost:${port}` });
  await viaLocalhost.wait((e) => e['event'] === 'subscribed', 'subscribed');
  t.pass('Host and Origin localhost:PORT open');
});

t.test('WebSocket: subscribed, snapshots with maps and buffersList, activity, configuration messages', async (t) => {
  const { c, port, token } = shared;
  const w = await mustOpen(t, port, `?token=${token}&intervalMs=200`, { origin: `http://127.0.0.1:${port}` });
  t.same(w.msgs[0] ?? (await w.wait(() => true, 'first message')), {
    event: 'subscribed',
    topics: ['alloc', 'handles', 'drivers', 'violations', 'hugepages', 'clients', 'status'],
    intervalMs: 200,
  }, 'first: subscribed');
  const app = await spawnClient(t, c.socketPath, 'painter');
  const h = await app.call<HandleInfo>('alloc', { pool: 'default', size: 10_000 });
  const a = await w.wait((e) => e['event'] === 'activity' && e['kind'] === 'alloc' && e['buffer'] === h.buffer, 'alloc activity');
  t.match(a, { topic: 'alloc', pool: 'default', size: 10_000, client: app.id, name: 'painter' });
  const at = w.msgs.indexOf(a);
  const snap = await w.wait((e) => e['event'] === 'snapshot' && w.msgs.indexOf(e) > at, 'a snapshot after the alloc');
  const st = snap['status'] as Ev;
  for (const k of ['version', 'pools', 'clients', 'events', 'maps', 'buffersList']) t.ok(k in st, `snapshot has ${k}`);
  const list = st['buffersList'] as Ev[];
  t.match(list.find((b) => b['buffer'] === h.buffer), { pool: 'default', size: 10_000, creator: app.id, holders: [app.id] }, 'the buffer is listed');
  const maps = st['maps'] as { name: string; chunks: { addr: number; size: number; runs: unknown[] }[] }[];
  t.same(maps.map((m) => m.name).sort(), ((st['pools'] as { name: string }[]).map((p) => p.name)).sort(), 'a map per pool');
  const def = maps.find((m) => m.name === 'default')!;
  t.ok(def.chunks.length > 0, 'the default pool has a chunk');
  t.ok(def.chunks.every((ch) => typeof ch.addr === 'number' && ch.size > 0 && Array.isArray(ch.runs) && ch.runs.length > 0), 'chunks with runs');
  t.ok((st['events'] as { subscribers: number }).subscribers >= 1);
  // where buffers lie (the page names the buffer under the pointer) and the zones by address
  const placed = (st['placements'] as { byPool: Record<string, number[][]>; omitted: number }).byPool['default'] ?? [];
  t.same(placed.find((x) => x[2] === h.buffer), [h.segments[0]!.addr, h.usize, h.buffer, app.id], 'placements: [address, bytes, buffer, client]');
  const zm = st['zoneMaps'] as { owners: string[]; zones: { name: string; base: number; size: number; cellBytes: number; free: number[]; order: number[]; owner: number[]; ownerShare: number[] }[] };
  const zones = (st['memory'] as Status['memory']).regions.flatMap((r) => r.zones);
  t.same(zm.zones.map((z) => [z.name, z.base, z.size]), zones.map((z) => [z.name, z.base, z.size]), 'a zone map per zone');
  for (const z of zm.zones) {
    const cells = Math.ceil(z.size / z.cellBytes);
    t.ok(z.cellBytes >= 4096 && (z.cellBytes & (z.cellBytes - 1)) === 0 && cells <= 512, `${z.name}: ${cells} cells of ${z.cellBytes} bytes`);
    t.ok([z.free, z.order, z.owner, z.ownerShare].every((a) => a.length === cells), `${z.name}: every array has a value per cell`);
    t.ok(z.free.every((f, i) => f === 100 || z.owner[i]! >= 0), `${z.name}: a cell not all free has a holder`);
  }
  t.ok(zm.owners.includes('pool default') && zm.owners.includes('swiotlb bounce pool'), `holders named: ${zm.owners.join(', ')}`);

  // reconfigure: only alloc activity, every 200 ms
  w.ws.send(JSON.stringify({ topics: ['alloc'], intervalMs: 200 }));
  await w.wait((e) => e['event'] === 'subscribed' && (e['topics'] as string[]).length === 1, 'subscribed again');
  t.same(w.msgs.filter((e) => e['event'] === 'subscribed').at(-1), { event: 'subscribed', topics: ['alloc'], intervalMs: 200 });
  const from = w.msgs.length;
  const peer = await spawnClient(t, c.socketPath, 'peer');
  await app.call('send', h.handle, 'peer');
  const h2 = await app.call<HandleInfo>('alloc', { pool: 'default', size: 4096 });
  await w.wait((e) => e['event'] === 'activity' && e['buffer'] === h2.buffer, 'the second alloc');
  await sleep(500);
  const later = w.msgs.slice(from);
  t.ok(later.length > 0);
  t.same([...new Set(later.map((e) => `${String(e['event'])}/${String(e['topic'])}`))], ['activity/alloc'], 'only alloc activity (no clients, handles or snapshots)');
  t.notOk(later.some((e) => e['client'] === peer.id), 'the peer\'s connect is not sent');

  // invalid messages: an error, the connection stays
  for (const bad of ['not json', '[1,2]', 'null', JSON.stringify({ topics: ['bogus'] }), JSON.stringify({ topics: [] }), JSON.stringify({ intervalMs: 5 }), JSON.stringify({ intervalMs: 'x' })]) {
    const n = w.msgs.length;
    w.ws.send(bad);
    const r = await w.wait((e) => w.msgs.indexOf(e) >= n && (e['event'] === 'error' || e['event'] === 'subscribed'), `answer to ${bad}`);
    t.match(r, { event: 'error', code: 'EINVAL', message: String }, `${bad}: EINVAL`);
  }
  t.equal(w.ws.readyState, WebSocket.OPEN, 'still open');
  // over 4096 bytes: closed with 1009
  w.ws.send(JSON.stringify({ topics: ['alloc'], pad: 'x'.repeat(5000) }));
  t.match(await w.closed, { code: 1009 }, 'message too big: 1009');
});

t.test('WebSocket: an invalid message changes nothing', async (t) => {
  const { port, token } = shared;
  const w = await mustOpen(t, port, `?token=${token}&intervalMs=300`);
  await w.wait((e) => e['event'] === 'subscribed', 'subscribed');
  w.ws.send(JSON.stringify({ topics: ['clients'], intervalMs: 5 }));
  t.match(await w.wait((e) => e['event'] === 'error', 'error'), { code: 'EINVAL', message: /intervalMs/ });
  w.ws.send(JSON.stringify({}));
  const r = await w.wait((e) => e['event'] === 'subscribed' && w.msgs.indexOf(e) > 0, 'current settings');
  t.same(r, { event: 'subscribed', topics: ['alloc', 'handles', 'drivers', 'violations', 'hugepages', 'clients', 'status'], intervalMs: 300 }, 'topics unchanged by the rejected message');
});

t.test('a dead peer that never answers pings is cut; a live one stays', async (t) => {
  const { d, c, port, token } = await dashboard(t, { ...DEFAULT_MACHINE, events: { pingMs: 200 } });
  const live = await mustOpen(t, port, `?token=${token}`);
  const s: Socket = tcpConnect(port, '127.0.0.1');
  t.teardown(() => s.destroy());
  let buf = Buffer.alloc(0);
  const opcodes: number[] = [];
  let upgraded = false;
  s.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!upgraded) {
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      t.match(buf.subarray(0, i).toString(), /^HTTP\/1\.1 101/, 'handshake accepted');
      upgraded = true;
      buf = buf.subarray(i + 4);
    }
    // server frames are unmasked: opcode, length (7, 16 or 64 bits), payload
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) (len = buf.length >= 4 ? buf.readUInt16BE(2) : -1), (off = 4);
      else if (len === 127) (len = buf.length >= 10 ? Number(buf.readBigUInt64BE(2)) : -1), (off = 10);
      if (len < 0 || buf.length < off + len) return;
      opcodes.push(buf[0]! & 0x0f);
      buf = buf.subarray(off + len);
    }
  });
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  s.write(
    `GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await until(() => upgraded, 'the 101 answer');
  await poll(() => c.status(), (st) => st.events.subscribers === 2, 5000);
  await Promise.race([closed, sleep(10_000).then(() => Promise.reject(new Error('the dead peer was not cut in 10 s')))]);
  t.ok(opcodes.includes(0x9), 'pings were sent');
  t.ok(opcodes.includes(0x1), 'events were sent');
  await d.waitForLog((l) => l['msg'] === 'dashboard peer missed a pong: cut');
  const st = await poll(() => c.status(), (x) => x.events.subscribers === 1, 5000);
  t.equal(st.events.subscribers, 1, 'the dead peer is unsubscribed');
  await sleep(1000); // five more ping intervals
  t.equal(live.ws.readyState, WebSocket.OPEN, 'a peer that answers pings stays');
});

t.test('a WebSocket that stops reading is dropped; the daemon keeps answering', async (t) => {
  const { d, c, port, token } = await dashboard(t, { ...DEFAULT_MACHINE, events: { maxBuffered: '64K', pingMs: 600_000 } });
  // many live buffers: big snapshots (maps and buffersList) fill the socket fast
  const app = await spawnClient(t, d.socket, 'filler');
  for (let i = 0; i < 10; i++) await Promise.all(Array.from({ length: 100 }, (_, j) => app.call('alloc', { pool: 'default', size: 64 + i * 100 + j })));
  const w = await mustOpen(t, port, `?token=${token}&intervalMs=100`);
  await w.wait((e) => e['event'] === 'snapshot', 'a first snapshot');
  (w.ws as unknown as { _socket: Socket })._socket.pause();
  const other = await client(t, d.socket, 'other');
  let answered = 0;
  const st = await poll(async () => {
    await other.ping();
    answered++;
    return c.status();
  }, (x) => x.events.dropped >= 1, 60_000, 100);
  t.ok(st.events.dropped >= 1, 'dropped');
  t.ok(answered > 1, 'other clients were answered meanwhile');
  const log = await d.waitForLog((l) => l['msg'] === 'event subscriber dropped');
  t.match(log, { subscriber: /^ws 127\.0\.0\.1:\d+$/ });
  (w.ws as unknown as { _socket: Socket })._socket.resume();
  const cut = await Promise.race([w.closed, sleep(10_000).then(() => null)]);
  t.match(cut, { code: 1006 }, 'the dropped socket is cut (terminated, no close frame) within 10 s');
  const after = await poll(() => c.status(), (x) => x.events.subscribers === 0, 5000);
  t.equal(after.events.subscribers, 0, 'and no longer counted as a subscriber');
  const again = await mustOpen(t, port, `?token=${token}`);
  await again.wait((e) => e['event'] === 'snapshot', 'a new dashboard works');
  t.equal(d.proc.exitCode, null);
});

t.test('start-up errors: not loopback, port in use', async (t) => {
  const dir = tempDir(t);
  for (const [spec, why] of [['0.0.0.0:8080', /loopback/], ['example.com:80', /loopback/], ['127.0.0.1:99999', /port must be/]] as const) {
    const sock = join(dir, 'b.sock');
    const r = await runNode([DAEMON, '--socket', sock, '--http', spec]);
    t.equal(r.code, 1, `${spec}: exit 1`);
    t.match(r.stderr, why, `${spec}: says why`);
    t.notOk(existsSync(sock), `${spec}: no socket left`);
    t.notOk(existsSync(cookiePathFor(sock)), `${spec}: no cookie left`);
  }
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  t.teardown(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const sock = join(dir, 'c.sock');
  const r = await runNode([DAEMON, '--socket', sock, '--http', `127.0.0.1:${port}`]);
  t.equal(r.code, 1, 'port in use: exit 1');
  t.match(r.stderr, /in use/);
  t.notOk(existsSync(sock), 'the Unix socket is removed');
  t.notOk(existsSync(cookiePathFor(sock)), 'the cookie is removed');
});

t.test('bufctl dashboard', async (t) => {
  const plain = await startDaemon(t);
  const pc = await client(t, plain.socket, 'p');
  t.equal((await pc.status()).dashboard, null, 'without --http: no dashboard');
  const off = await bufctlHere(plain.socket, 'dashboard');
  t.equal(off.code, 1);
  t.match(off.stderr, /--http/);
  const { d, port, token } = shared;
  const on = await bufctlHere(d.socket, 'dashboard');
  t.equal(on.code, 0, on.stderr);
  t.equal(on.stdout.trim(), `http://127.0.0.1:${port}/#token=${token}`);
  const js = await bufctlHere(d.socket, 'dashboard', '--json');
  t.same(JSON.parse(js.stdout), { url: `http://127.0.0.1:${port}/#token=${token}`, address: `http://127.0.0.1:${port}/`, token });
  // a graceful stop with a dashboard connected
  const w = await mustOpen(t, port, `?token=${token}`);
  await w.wait((e) => e['event'] === 'snapshot', 'a snapshot');
  t.same(await d.stop('SIGTERM'), { code: 0, signal: null }, 'the daemon stops cleanly');
  const cut = await Promise.race([w.closed, sleep(10_000).then(() => null)]);
  t.match(cut, { code: 1006 }, 'the WebSocket is cut when the daemon stops');
  t.notOk(existsSync(d.socket), 'socket removed');
});
