/**
 * Live events over the Unix socket: `subscribe` streams 'activity' events
 * for the asked topics and 'snapshot' events at intervalMs; allocations
 * above events.allocRate come as summaries; a subscriber that stops reading
 * is dropped (events.maxBuffered) without slowing anyone else.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient, rejection, poll, until, type Proc, type Line } from '../helpers/procs.js';
import { client, MiB } from '../helpers/drivers.js';
import { RawClient, type Msg } from '../helpers/raw.js';
import { encodeFrame } from '../../protocol/frame.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { HandleInfo, MergeResult } from '../../client/index.js';
import type { Status } from '../../protocol/status.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const acts = (p: Proc) => p.lines.filter((l) => l['event'] === 'activity');
const snaps = (p: Proc) => p.lines.filter((l) => l['event'] === 'snapshot');
/** The activity event of a topic and kind matching `fields`, waited for. */
const act = (p: Proc, topic: string, kind: string, fields: Line = {}) =>
  p.wait((l) => l['event'] === 'activity' && l['topic'] === topic && l['kind'] === kind && Object.entries(fields).every(([k, v]) => l[k] === v), `activity ${topic}/${kind} ${JSON.stringify(fields)}`, 10_000);

t.test('activity events with their fields; topics filter', async (t) => {
  const d = await startDaemon(t);
  const watcher = await spawnClient(t, d.socket, 'watcher');
  const sub = await watcher.call<{ topics: string[]; intervalMs: number }>('subscribe', { topics: ['alloc', 'handles', 'drivers', 'hugepages', 'clients'] });
  t.same(sub, { topics: ['alloc', 'handles', 'drivers', 'hugepages', 'clients'], intervalMs: 1000 });
  const only = await spawnClient(t, d.socket, 'handles-only');
  t.same(await only.call('subscribe', { topics: ['handles'], intervalMs: 100 }), { topics: ['handles'], intervalMs: 100 });

  const app = await spawnClient(t, d.socket, 'app');
  let ev = await act(watcher, 'clients', 'connect', { client: app.id });
  t.match(ev, { name: 'app', principal: 'anonymous' });
  t.type(ev['timeMs'], 'number');
  const peer = await spawnClient(t, d.socket, 'peer');
  const admin = await spawnClient(t, d.socket, 'admin', { BUFFERD_USE_COOKIE: '1' });
  ev = await act(watcher, 'clients', 'connect', { client: admin.id });
  t.equal(ev['principal'], 'cookie');

  const h = await app.call<HandleInfo>('alloc', { pool: 'default', size: 5000 });
  ev = await act(watcher, 'alloc', 'alloc', { buffer: h.buffer });
  t.match(ev, { pool: 'default', size: 5000, client: app.id, name: 'app' });

  await app.call('send', h.handle, 'peer');
  ev = await act(watcher, 'handles', 'send', { buffer: h.buffer });
  t.match(ev, { from: app.id, fromName: 'app', to: peer.id, toName: 'peer' });
  t.ok(Array.isArray(ev['rights']) && (ev['rights'] as string[]).includes('read'), 'rights listed');
  const ex = await app.call<{ token: string }>('export', h.handle);
  ev = await act(watcher, 'handles', 'export', { buffer: h.buffer });
  t.match(ev, { from: app.id, fromName: 'app', expiresInMs: 30_000 });
  await peer.call('import', ex.token);
  ev = await act(watcher, 'handles', 'import', { buffer: h.buffer });
  t.match(ev, { from: app.id, fromName: 'app', to: peer.id, toName: 'peer' });

  const g = await app.call<HandleInfo>('alloc', { for: ['gpu'], size: 8192 });
  await act(watcher, 'alloc', 'alloc', { buffer: g.buffer, pool: g.pool });
  const reg = await app.call<{ deviceAddress: number }>('register', g.handle, 'gpu');
  ev = await act(watcher, 'drivers', 'register', { driver: 'gpu', buffer: g.buffer });
  t.match(ev, { client: app.id, deviceAddress: reg.deviceAddress, bounced: false });

  // a misfit: the display can't take a buffer from 'default' (merge says so)
  const merged = await app.call<MergeResult>('merge', ['display']);
  const misfit = merged.pools.find((p) => p.name === 'default')!;
  t.equal(misfit.fits, false, "'default' does not fit the display");
  const e = await rejection(app.call('register', h.handle, 'display'));
  t.equal(e.code, 'EATTR');
  ev = await act(watcher, 'drivers', 'refuse', { driver: 'display', buffer: h.buffer });
  t.match(ev, { client: app.id, code: 'EATTR' });
  const mm = ev['mismatches'] as { attribute: string }[];
  t.ok(mm.some((m) => m.attribute === 'cache'), 'the refusal lists the cache mismatch');
  t.same(mm.map((m) => m.attribute), (e.details as { mismatches: { attribute: string }[] }).mismatches.map((m) => m.attribute), 'the same mismatches as the error');

  const hp = await admin.call<{ reached: number; overcommit: number }>('setHugepages', 2 * MiB, 200);
  ev = await act(watcher, 'hugepages', 'resize', { size: 2 * MiB });
  t.match(ev, { requested: 200, reached: hp.reached, overcommit: hp.overcommit, client: admin.id });

  // the app leaves: disconnect, its gpu registration leaks, its own buffer is freed
  await app.cmd('exit');
  ev = await act(watcher, 'clients', 'disconnect', { client: app.id });
  t.equal(ev['name'], 'app');
  await act(watcher, 'drivers', 'leak', { driver: 'gpu', buffer: g.buffer });
  ev = await act(watcher, 'alloc', 'free', { buffer: g.buffer });
  t.match(ev, { pool: g.pool, size: 8192 });
  t.notOk(acts(watcher).some((l) => l['kind'] === 'free' && l['buffer'] === h.buffer), 'the peer still holds the first buffer');
  await peer.kill();
  ev = await act(watcher, 'alloc', 'free', { buffer: h.buffer });
  t.match(ev, { pool: 'default', size: 5000 });
  await act(watcher, 'clients', 'disconnect', { client: peer.id });

  t.same(snaps(watcher), [], 'no status topic: no snapshots');
  t.same([...new Set(acts(watcher).map((l) => l['topic']))].sort(), ['alloc', 'clients', 'drivers', 'handles', 'hugepages']);
  // the handles-only subscriber saw the three passes and nothing else
  await until(() => acts(only).length >= 3, 'three handle events');
  t.same(acts(only).map((l) => `${String(l['topic'])}/${String(l['kind'])}`), ['handles/send', 'handles/export', 'handles/import']);
  t.same(snaps(only), [], 'no snapshots without the status topic');
});

t.test('client drivers and coherency violations', async (t) => {
  const d = await startDaemon(t);
  const watcher = await spawnClient(t, d.socket, 'watcher');
  await watcher.call('subscribe', { topics: ['drivers', 'violations'] });
  const dev = await spawnClient(t, d.socket, 'dev');
  await dev.call('attachDriver', 'nc', { coherent: false });
  t.match(await act(watcher, 'drivers', 'attach', { driver: 'nc' }), { client: dev.id });
  const h = await dev.call<HandleInfo>('alloc', { pool: 'default', size: 8192 });
  await dev.call('register', h.handle, 'nc');
  await act(watcher, 'drivers', 'register', { driver: 'nc', buffer: h.buffer });
  // the device reads while the CPU holds the buffer: a violation
  await dev.call('sync', h.handle, { phase: 'start', access: 'write' });
  await dev.call('device.read', 'nc', h.handle, 0, 64);
  const v = await act(watcher, 'violations', 'device-access-during-cpu-access', { buffer: h.buffer });
  t.match(v, { driver: 'nc', client: { id: dev.id, name: 'dev' }, mode: 'warn', seq: Number, message: String });
  await dev.call('sync', h.handle, { phase: 'end', access: 'write' });
  await dev.call('unregister', h.handle, 'nc');
  await act(watcher, 'drivers', 'unregister', { driver: 'nc', buffer: h.buffer });
  await dev.call('detachDriver', 'nc');
  t.match(await act(watcher, 'drivers', 'detach', { driver: 'nc' }), { client: dev.id, leaks: 0 });
  t.notOk(acts(watcher).some((l) => l['topic'] !== 'drivers' && l['topic'] !== 'violations'), 'only the asked topics');
});

t.test('snapshots at intervalMs; unsubscribe; re-subscribe replaces; invalid params change nothing', async (t) => {
  const d = await startDaemon(t);
  const s1 = await client(t, d.socket, 's1');
  const s2 = await client(t, d.socket, 's2');
  const got1: { timeMs: number; status: Status }[] = [];
  const got2: { timeMs: number; status: Status }[] = [];
  const acts2: Record<string, unknown>[] = [];
  s1.on('snapshot', (e) => got1.push(e));
  s2.on('snapshot', (e) => got2.push(e));
  s2.on('activity', (e) => acts2.push(e));
  t.same(await s1.subscribe({ topics: ['status'], intervalMs: 200 }), { topics: ['status'], intervalMs: 200 });
  t.same(await s2.subscribe({ intervalMs: 100 }), { topics: ['alloc', 'handles', 'drivers', 'violations', 'hugepages', 'clients', 'status'], intervalMs: 100 });
  await until(() => got1.length >= 4, 'four snapshots');
  for (let i = 1; i < got1.length; i++) t.ok(got1[i]!.timeMs - got1[i - 1]!.timeMs >= 190, `snapshot ${i}: not before intervalMs`);
  const st = got1.at(-1)!.status;
  for (const k of ['version', 'pid', 'memory', 'hugepages', 'pools', 'clients', 'drivers', 'coherency', 'events', 'buffers', 'dma']) t.ok(k in st, `status has ${k}`);
  t.notOk('maps' in st, 'no pool maps on the Unix socket');
  t.ok(st.clients.some((c) => c.name === 's1'));
  t.equal(st.events.subscribers, 2, 'the snapshot counts both subscribers');
  t.equal((await s1.status()).events.subscribers, 2);
  t.ok(got2.length > 0, 's2 gets snapshots too');

  t.same(await s1.unsubscribe(), { unsubscribed: true });
  const n1 = got1.length;
  await sleep(600);
  t.equal(got1.length, n1, 'no snapshot after unsubscribe');
  t.equal((await s1.status()).events.subscribers, 1);
  t.same(await s1.unsubscribe(), { unsubscribed: false }, 'a second unsubscribe: nothing to stop');

  // subscribing again replaces (no second subscription for the same connection)
  t.same(await s2.subscribe({ topics: ['clients'] }), { topics: ['clients'], intervalMs: 1000 });
  t.equal((await s1.status()).events.subscribers, 1, 'still one subscriber');
  await sleep(300);
  const n2 = got2.length;
  await sleep(500);
  t.equal(got2.length, n2, 'status no longer asked: no snapshots');

  // invalid subscribes: EINVAL naming the field; the subscription in force stays
  for (const [params, field] of [
    [{ topics: ['bogus'] }, 'topics'],
    [{ intervalMs: 5 }, 'intervalMs'],
    [{ intervalMs: 60_001 }, 'intervalMs'],
    [{ topics: [] }, 'topics'],
    [{ topics: ['alloc', 'alloc'] }, 'topics'],
    [{ topics: ['alloc'], extra: 1 }, 'extra'],
  ] as const) {
    const e = await rejection(s2.request('subscribe', params as never));
    t.equal(e.code, 'EINVAL', JSON.stringify(params));
    t.match(e.message, field, `${JSON.stringify(params)}: names ${field}`);
  }
  t.equal((await s1.status()).events.subscribers, 1, 'nothing changed');
  const before = acts2.length;
  const x = await client(t, d.socket, 'newcomer');
  await until(() => acts2.slice(before).find((e) => e['kind'] === 'connect' && e['client'] === x.id), 'the clients topic still flows');
  await sleep(300);
  t.equal(got2.length, n2, 'and still no snapshots');
  t.ok(acts2.slice(before).every((e) => e['topic'] === 'clients'), 'only the clients topic');
});

t.test('a subscriber that disconnects is removed; sessions that never opened are not reported', async (t) => {
  const d = await startDaemon(t);
  const w1 = await spawnClient(t, d.socket, 'w1');
  const w2 = await spawnClient(t, d.socket, 'w2');
  const c = await client(t, d.socket, 'observer');
  const seen: Record<string, unknown>[] = [];
  c.on('activity', (e) => seen.push(e));
  await w1.call('subscribe', { intervalMs: 100 });
  await w2.call('subscribe', { topics: ['alloc'] });
  t.equal((await c.status()).events.subscribers, 2);
  await c.subscribe({ topics: ['clients'] });
  await w1.kill();
  let st = await poll(() => c.status(), (s) => s.events.subscribers === 2, 10_000);
  t.equal(st.events.subscribers, 2, 'killed subscriber removed (the observer remains)');
  await w2.cmd('exit');
  st = await poll(() => c.status(), (s) => s.events.subscribers === 1, 10_000);
  t.equal(st.events.subscribers, 1, 'disconnected subscriber removed');
  t.equal(st.events.dropped, 0, 'leaving is not being dropped');
  // a connection without hello, and a refused hello: no connect, no disconnect
  const raw = await RawClient.connect(d.socket);
  await raw.end();
  const bad = await RawClient.connect(d.socket);
  t.match(await bad.call({ id: 0, op: 'hello', version: 1, token: 'not-a-token-0123456789' }), { error: { code: 'EPERM' } });
  await bad.end();
  const marker = await client(t, d.socket, 'marker');
  await until(() => seen.find((e) => e['kind'] === 'connect' && e['client'] === marker.id), 'the marker connect');
  t.same(seen.map((e) => `${String(e['kind'])} ${String(e['name'])}`), ['disconnect w1', 'disconnect w2', 'connect marker'], 'only real sessions are reported');
  await c.unsubscribe();
  st = await c.status();
  t.equal(st.events.subscribers, 0);
});

t.test('allocations above events.allocRate arrive as summaries that add up', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, events: { allocRate: 5 } } });
  const watcher = await spawnClient(t, d.socket, 'watcher');
  await watcher.call('subscribe', { topics: ['alloc'] });
  const app = await spawnClient(t, d.socket, 'burst');
  const N = 40;
  const hs: HandleInfo[] = [];
  for (let i = 0; i < N; i++) hs.push(await app.call<HandleInfo>('alloc', { pool: 'default', size: 1000 + i }));
  for (const h of hs) await app.call('close', h.handle);
  const bytes = hs.reduce((a, h) => a + h.size, 0);
  const totals = () => {
    const r = { allocs: 0, frees: 0, bytesAllocated: 0, bytesFreed: 0, summaries: 0, single: 0 };
    for (const l of acts(watcher)) {
      if (l['kind'] === 'summary') {
        r.summaries++;
        r.allocs += l['allocs'] as number;
        r.frees += l['frees'] as number;
        r.bytesAllocated += l['bytesAllocated'] as number;
        r.bytesFreed += l['bytesFreed'] as number;
      } else {
        r.single++;
        if (l['kind'] === 'alloc') (r.allocs++, (r.bytesAllocated += l['size'] as number));
        else (r.frees++, (r.bytesFreed += l['size'] as number));
      }
    }
    return r;
  };
  const r = await until(() => {
    const x = totals();
    return x.allocs >= N && x.frees >= N ? x : undefined;
  }, 'every allocation and free counted');
  await sleep(400);
  t.same(totals(), r, 'nothing more arrives');
  t.equal(r.allocs, N, 'allocations add up');
  t.equal(r.frees, N, 'frees add up');
  t.equal(r.bytesAllocated, bytes);
  t.equal(r.bytesFreed, bytes);
  t.ok(r.summaries >= 1, 'at least one summary');
  t.ok(r.single >= 5, 'the first ones one by one');
  t.ok(r.single < 2 * N, 'not all one by one');
  for (const l of acts(watcher).filter((x) => x['kind'] === 'summary')) t.match(l, { topic: 'alloc', windowMs: 250, timeMs: Number });
});

t.test('a subscriber that stops reading is dropped; everyone else is served', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, events: { maxBuffered: '64K' } } });
  const slow = await RawClient.open(d.socket, 'stuck');
  t.teardown(() => slow.sock.destroy());
  const r = await slow.call({ id: 1, op: 'subscribe', intervalMs: 100 });
  t.same(r['result'], { topics: ['alloc', 'handles', 'drivers', 'violations', 'hugepages', 'clients', 'status'], intervalMs: 100 });
  slow.sock.pause();
  const ok = await client(t, d.socket, 'normal');
  const other = await client(t, d.socket, 'other-watcher');
  let otherSnaps = 0;
  other.on('snapshot', () => otherSnaps++);
  await other.subscribe({ topics: ['status'], intervalMs: 500 });
  const app = await spawnClient(t, d.socket, 'traffic');
  let answered = 0;
  const end = Date.now() + 45_000;
  let st = await ok.status();
  while (st.events.dropped < 1 && Date.now() < end) {
    const hs = await Promise.all(Array.from({ length: 20 }, (_, i) => app.call<HandleInfo>('alloc', { pool: 'default', size: 4096 + i })));
    await Promise.all(hs.map((h) => app.call('close', h.handle)));
    await ok.ping();
    st = await ok.status();
    answered++;
  }
  t.ok(st.events.dropped >= 1, 'status.events.dropped counts the stuck subscriber');
  t.ok(answered > 0, 'the normal client was answered throughout');
  const log = await d.waitForLog((l) => l['msg'] === 'event subscriber dropped');
  t.match(log, { subscriber: /client \d+/, reason: /65536 bytes/ });
  t.equal(st.events.subscribers, 1, 'only the healthy watcher remains');
  // the healthy watcher still gets snapshots
  const n = otherSnaps;
  await until(() => otherSnaps > n, 'the other watcher keeps getting snapshots');
  // the stuck client, reading again, finds the drop notice and a working connection
  slow.sock.resume();
  let m: Msg | null;
  do m = await slow.next(10_000);
  while (m !== null && m['event'] !== 'subscription-dropped');
  t.match(m, { event: 'subscription-dropped', reason: /bytes/ }, 'told why');
  const pong = await slow.call({ id: 2, op: 'ping' });
  t.equal(pong['id'], 2, 'its connection still answers');
  t.same((await slow.call({ id: 3, op: 'unsubscribe' }))['result'], { unsubscribed: false }, 'nothing left to unsubscribe');
  t.same((await slow.call({ id: 4, op: 'subscribe', topics: ['clients'] }))['result'], { topics: ['clients'], intervalMs: 1000 }, 'it may subscribe again');
  const again = await client(t, d.socket, 'again');
  t.match(await slow.next(), { event: 'activity', topic: 'clients', kind: 'connect', client: again.id }, 'and gets events again');
  // the daemon is healthy
  const late = await client(t, d.socket, 'late');
  const h = await late.alloc({ pool: 'default', size: 4096 });
  t.equal(h.size, 4096);
  t.equal(d.proc.exitCode, null, 'daemon still running');
});

t.test('a hugepages resize applied by a reload is reported', async (t) => {
  const d = await startDaemon(t, { config: DEFAULT_MACHINE });
  const watcher = await spawnClient(t, d.socket, 'watcher');
  await watcher.call('subscribe', { topics: ['hugepages'] });
  const cfg = structuredClone(DEFAULT_MACHINE);
  cfg.hugepages![0]!.nr = 100;
  writeFileSync(join(d.dir, 'config.json'), JSON.stringify(cfg));
  d.proc.kill('SIGHUP');
  await d.waitForLog((l) => l['msg'] === 'configuration reloaded');
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  t.equal((await admin.status()).hugepages.find((h) => h.size === 2 * MiB)?.nr, 100, 'the resize was applied');
  const ev = await watcher.wait((l) => l['event'] === 'activity' && l['topic'] === 'hugepages', 'a hugepages activity event', 3000);
  t.match(ev, { kind: 'resize', size: 2 * MiB, requested: 100, reached: 100 });
});

t.test('events and responses keep their order on the wire when they leave together', async (t) => {
  const d = await startDaemon(t, { config: DEFAULT_MACHINE });
  const raw = await RawClient.open(d.socket, 'self-watcher');
  t.teardown(() => raw.end());
  t.same((await raw.call({ id: 1, op: 'subscribe', topics: ['alloc'] }))['result'], { topics: ['alloc'], intervalMs: 1000 });
  // 50 pipelined allocations: each publishes its alloc event before its response is written
  const N = 50;
  raw.sendBytes(Buffer.concat(Array.from({ length: N }, (_, i) => encodeFrame({ id: 2 + i, op: 'alloc', pool: 'default', size: 4096 }))));
  const got: Msg[] = [];
  for (let i = 0; i < 2 * N; i++) got.push((await raw.next())!);
  const order = got.map((m) => (m['event'] === 'activity' ? `e${m['buffer']}` : `r${(m['result'] as { buffer: number } | undefined)?.buffer}`));
  const expected = got.filter((m) => m['event'] === undefined).flatMap((m) => [`e${(m['result'] as { buffer: number }).buffer}`, `r${(m['result'] as { buffer: number }).buffer}`]);
  t.same(order, expected, 'each allocation: its event, then its response');
  t.same(got.filter((m) => m['event'] === undefined).map((m) => m['id']), Array.from({ length: N }, (_, i) => 2 + i), 'responses in request order');
});
