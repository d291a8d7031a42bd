/**
 * Passing a buffer between real processes, three ways — direct send to a
 * client name, an export token relayed by a third party, and an in-band
 * record over a socketpair only the two processes share — and the lifetime
 * of a buffer: it lives while anyone holds it and is freed the moment the
 * last holder closes.
 */
import t, { type Test } from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient, spawnFixture, pattern, sha256, poll, type Line, type Proc } from '../helpers/procs.js';
import { connect, sendHandle, system as native, type BufferClient, type HandleInfo, type RightName, type Status } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const MiB = 2 ** 20;
/** Empty chunks go back at once, so a freed buffer leaves no trace in the pool's numbers. */
const EAGER = { ...DEFAULT_MACHINE, pools: DEFAULT_MACHINE.pools.map((p) => ({ ...p, dirtyDecayMs: 0 })) };

type Pool = Status['pools'][number];
/** A pool's present state: what live buffers account for (no history counters, no arena count). */
const LIVE_KEYS = ['requested', 'allocated', 'active', 'mapped', 'resident', 'dirty', 'buffers', 'directBuffers', 'pages'] as const;
const live = (p: Pool) => Object.fromEntries(LIVE_KEYS.map((k) => [k, p[k]]));
const poolOf = (st: Status, name: string) => st.pools.find((p) => p.name === name)!;
/** Everything but history (nmalloc, ndalloc, purges, conversions). */
const present = (st: Status) => ({
  memory: st.memory,
  hugepages: st.hugepages,
  pools: st.pools.map(({ nmalloc: _a, ndalloc: _b, purges: _c, conversions: _d, conversionCostUs: _e, ...rest }) => rest),
  live: st.buffers.live,
  tokens: st.buffers.tokensInFlight,
});

async function admin(t: { teardown(fn: () => unknown): void }, socket: string): Promise<BufferClient> {
  const c = await connect({ socket, name: 'observer', admin: true }); // presents the admin cookie: sees every buffer
  t.teardown(() => c.disconnect());
  return c;
}

/** Status once none of the named clients is connected any more. */
async function statusWithout(obs: BufferClient, names: string[]): Promise<Status> {
  return poll(
    () => obs.status(),
    (st) => !st.clients.some((c) => c.name !== null && names.includes(c.name)),
  );
}

async function holdersOf(obs: BufferClient, buffer: number) {
  const b = (await obs.buffers()).buffers.find((x) => x.buffer === buffer);
  return b === undefined ? null : b.holders.map((h) => `${h.name}×${h.handles}`).sort();
}

const CASES = [
  { pool: 'huge', size: 5 * MiB + 123, seed: 11 }, // direct hugepages; larger than one request's data
  { pool: 'default', size: 100_000, seed: 12 }, // a large extent in A's arena
  { pool: 'dma32', size: 3000, seed: 13 }, // a small slab region
];

t.test('direct send to a name: A allocates and writes, B reads it after A closed', async (t) => {
  const d = await startDaemon(t, { config: EAGER });
  const obs = await admin(t, d.socket);
  for (const [k, c] of CASES.entries()) {
    const base = await obs.status();
    const A = await spawnClient(t, d.socket, `A${k}`);
    const B = await spawnClient(t, d.socket, `B${k}`);
    const a = await A.call<HandleInfo>('alloc', { pool: c.pool, size: c.size });
    await A.cmd('fill', { handle: a.handle, length: c.size, seed: c.seed });
    const sent = await A.call<Line>('send', a.handle, `B${k}`, { rights: ['read'] });
    t.same(sent, { to: B.id, toName: `B${k}`, rights: ['read'] });
    const ev = await B.wait((l) => l['event'] === 'handle', 'the handle event');
    t.match(ev, { handle: 0, rights: ['read'], from: { id: A.id, name: `A${k}` }, buffer: a.buffer, size: c.size, pool: c.pool });
    t.same(await holdersOf(obs, a.buffer), [`A${k}×1`, `B${k}×1`]);

    await A.call('close', a.handle);
    t.same(await holdersOf(obs, a.buffer), [`B${k}×1`], 'A closed: B still holds it');
    t.equal(poolOf(await obs.status(), c.pool).buffers, poolOf(base, c.pool).buffers + 1);

    const v = await B.cmd<Line>('verify', { handle: ev['handle'], length: c.size, seed: c.seed });
    t.same(v, { equal: true, length: c.size, firstMismatch: -1, sha256: sha256(pattern(c.size, c.seed)) }, `${c.pool}: B reads A's bytes`);
    const w = await B.call('write', ev['handle'], 0, Buffer.from([1])).catch((e: { code: string }) => e.code);
    t.equal(w, 'EPERM', 'read-only in B');

    await B.call('close', ev['handle']);
    const st = await obs.status();
    t.equal(st.buffers.live, base.buffers.live, 'freed as B closed');
    t.same(live(poolOf(st, c.pool)), live(poolOf(base, c.pool)), `${c.pool}: pool numbers back to the start`);
    await A.cmd('exit');
    await B.cmd('exit');
    t.same(present(await statusWithout(obs, [`A${k}`, `B${k}`])), present(base), 'everything back once both left');
  }
});

t.test('export token relayed by the test: the daemon does not care how the token travels', async (t) => {
  const d = await startDaemon(t, { config: EAGER });
  const obs = await admin(t, d.socket);
  for (const [k, c] of CASES.entries()) {
    const base = await obs.status();
    const A = await spawnClient(t, d.socket, `exporter${k}`);
    const B = await spawnClient(t, d.socket, `importer${k}`);
    const a = await A.call<HandleInfo>('alloc', { pool: c.pool, size: c.size });
    await A.cmd('fill', { handle: a.handle, length: c.size, seed: c.seed });
    const ex = await A.call<{ token: string; rights: string[]; expiresInMs: number }>('export', a.handle, { rights: ['read', 'write'], ttlMs: 20_000 });
    t.same(ex.rights, ['read', 'write']);
    t.equal(ex.expiresInMs, 20_000);
    await A.call('close', a.handle);
    t.equal((await obs.status()).buffers.tokensInFlight, 1, 'A closed; the token holds the buffer');
    t.same(await holdersOf(obs, a.buffer), [], 'no handle anywhere, only the token');

    // the token travels as text from A's stdout to B's stdin
    const imp = await B.call<HandleInfo>('import', ex.token);
    t.match(imp, { handle: 0, buffer: a.buffer, rights: ['read', 'write'], size: c.size, pool: c.pool, creator: A.id, holders: 1 });
    t.same(imp.refs, { handles: 1, inflight: 0, registrations: 0, mappings: 0 });
    const v = await B.cmd<Line>('verify', { handle: imp.handle, length: c.size, seed: c.seed });
    t.ok(v['equal'], `${c.pool}: byte for byte`);
    t.equal(v['sha256'], sha256(pattern(c.size, c.seed)));
    t.same(await B.call('write', imp.handle, c.size - 1, Buffer.from([7])), { written: 1 }, 'the write right travelled');

    await B.call('close', imp.handle);
    const st = await obs.status();
    t.equal(st.buffers.live, base.buffers.live);
    t.same(live(poolOf(st, c.pool)), live(poolOf(base, c.pool)), `${c.pool}: back to the start`);
    await A.cmd('exit');
    await B.cmd('exit');
    t.same(present(await statusWithout(obs, [`exporter${k}`, `importer${k}`])), present(base));
  }
});

async function pairRun(t: Test, socket: string, obs: BufferClient, k: number, c: (typeof CASES)[number]) {
  const base = await obs.status();
  const [nameA, nameB] = [`pairA${k}`, `pairB${k}`];
  const A: Proc = await spawnFixture(t, 'pair-a.mjs', [socket, nameA, nameB, c.pool, String(c.size), String(c.seed), 'read,share'], { waitReady: false });
  const readyA = await A.wait((l) => l['who'] === 'A' && l['ready'] === true, 'A ready');
  const readyB = await A.wait((l) => l['who'] === 'B' && l['ready'] === true, 'B ready');
  t.equal(readyB['fd3IsSocket'], true, "B's fd 3 is a socket (Node's stdio 'pipe' is a socketpair)");
  t.not(readyA['clientId'], readyB['clientId'], 'two sessions');
  const buffer = readyA['buffer'] as number;

  t.same(await A.cmd('pass'), { rights: ['read', 'share'] });
  const imported = await A.wait((l) => l['who'] === 'B' && (l['imported'] === true || l['error'] !== undefined), 'B imported');
  t.match(imported, { imported: true, buffer, rights: ['read', 'share'], size: c.size, pool: c.pool, holders: 2, creator: readyA['clientId'] });
  t.same(imported['refs'], { handles: 2, inflight: 0, registrations: 0, mappings: 0 });
  t.same(await holdersOf(obs, buffer), [`${nameA}×1`, `${nameB}×1`]);

  t.same(await A.cmd('close'), { handle: readyA['handle'], closed: true });
  const verified = await A.wait((l) => l['who'] === 'B' && (l['verified'] !== undefined || l['error'] !== undefined), 'B verified');
  t.same(verified['verified'], { equal: true, length: c.size, firstMismatch: -1, sha256: sha256(pattern(c.size, c.seed)) }, `${c.pool}: B reads the pattern byte for byte`);
  t.match(verified['write'], { error: { code: 'EPERM', details: { missing: 'write' } } }, 'narrowed to read, share');
  t.same(verified['refs'], { handles: 1, inflight: 0, registrations: 0, mappings: 0 }, 'only B holds it after A closed');
  t.equal(verified['holders'], 1);

  await A.wait((l) => l['who'] === 'B' && l['closed'] === true, 'B closed');
  const st = await obs.status();
  t.equal(st.buffers.live, base.buffers.live, 'freed as B closed');
  t.same(live(poolOf(st, c.pool)), live(poolOf(base, c.pool)), `${c.pool}: pool numbers back to the start`);
  const ex = await A.cmd<{ child: { code: number } }>('exit');
  t.same(ex.child, { code: 0, signal: null }, 'B exited cleanly');
  t.same(present(await statusWithout(obs, [nameA, nameB])), present(base), 'everything back once both left');
}

t.test('sendHandle/receiveHandle over a socketpair only A and B share', async (t) => {
  const d = await startDaemon(t, { config: EAGER });
  const obs = await admin(t, d.socket);
  for (const [k, c] of CASES.entries()) await pairRun(t, d.socket, obs, k, c);
});

t.test('lifetime: the buffer outlives its creator and goes with its last holder', async (t) => {
  const d = await startDaemon(t, { config: EAGER });
  const obs = await admin(t, d.socket);
  const base = await obs.status();
  const creator = await spawnClient(t, d.socket, 'creator');
  const holder = await spawnClient(t, d.socket, 'holder');
  const size = 20_000;
  const pool = (st: Status) => poolOf(st, 'default');

  // the creator closes; the holder keeps it alive
  const a = await creator.call<HandleInfo>('alloc', { pool: 'default', size });
  await creator.cmd('fill', { handle: a.handle, length: size, seed: 5 });
  await creator.call('send', a.handle, 'holder');
  const ev = await holder.wait((l) => l['event'] === 'handle', 'handle event');
  const h = ev['handle'] as number;
  const h2 = (await holder.call<{ handle: number }>('dup', h)).handle;
  await creator.call('close', a.handle);
  let i = await holder.call<HandleInfo>('info', h);
  t.same(i.refs, { handles: 2, inflight: 0, registrations: 0, mappings: 0 }, "the holder's two handles");
  t.equal(i.holders, 1);
  t.equal(i.creator, creator.id);
  t.equal(pool(await obs.status()).buffers, 1, 'the pool still counts it');
  await holder.call('close', h2);
  t.equal(pool(await obs.status()).buffers, 1, 'closing one of two handles frees nothing');
  t.ok((await holder.cmd<Line>('verify', { handle: h, length: size, seed: 5 }))['equal']);
  await holder.call('close', h);
  let st = await obs.status();
  t.equal(pool(st).buffers, 0, 'freed the moment the last holder closed');
  t.equal(st.buffers.live, 0);
  t.equal(pool(st).requested, 0);
  // the freed region is handed out again, zeroed
  const again = await creator.call<HandleInfo>('alloc', { pool: 'default', size });
  t.same(again.segments, a.segments, 'the same memory comes back');
  t.same(await creator.cmd('digest', { handle: again.handle, length: size }), { length: size, nonZero: 0, sha256: sha256(Buffer.alloc(size)) }, 'zeroed, not its old contents');
  await creator.call('close', again.handle);

  // the creator process dies; the holder keeps the buffer (and the dead client's arena) alive
  const b = await creator.call<HandleInfo>('alloc', { pool: 'default', size });
  await creator.cmd('fill', { handle: b.handle, length: size, seed: 6 });
  await creator.call('send', b.handle, 'holder');
  const ev2 = await holder.wait((l) => l['event'] === 'handle' && l['buffer'] === b.buffer, 'second handle event');
  await creator.kill('SIGKILL');
  st = await statusWithout(obs, ['creator']);
  t.equal(pool(st).buffers, 1, 'the creator is gone, its buffer is not');
  t.equal(st.buffers.live, 1);
  i = await holder.call<HandleInfo>('info', ev2['handle']);
  t.same(i.refs, { handles: 1, inflight: 0, registrations: 0, mappings: 0 });
  t.equal(i.creator, creator.id, 'the creator id is kept');
  t.same(await holdersOf(obs, b.buffer), ['holder×1']);
  t.ok((await holder.cmd<Line>('verify', { handle: ev2['handle'], length: size, seed: 6 }))['equal'], 'contents intact');
  await holder.call('close', ev2['handle']);
  st = await obs.status();
  t.equal(pool(st).buffers, 0);
  t.same(live(pool(st)), live(pool(base)));
  t.equal(pool(st).arenas, pool(base).arenas, "the dead creator's arena was dropped with its last buffer");
  await holder.cmd('exit');
  t.same(present(await statusWithout(obs, ['holder'])), present(base), 'all back to the baseline');
});

t.test('sendHandle/receiveHandle over a raw Unix socket fd: a real file descriptor crosses (SCM_RIGHTS)', { skip: native() === null ? 'no native system calls here' : false }, async (t) => {
  const sys = native()!;
  const d = await startDaemon(t, { config: EAGER });
  const obs = await admin(t, d.socket);
  const size = 3 * 4096 + 100;
  const c = await connect({ socket: d.socket, name: 'fd-sender' });
  t.teardown(() => c.disconnect());
  const a = await c.alloc({ pool: 'default', size, align: 4096 }); // owns its pages, so it may leave as an fd
  const want = pattern(size, 9);
  await c.write(a.handle, 0, want);

  for (const [mode, rights, wantWrite] of [['write', undefined, true], ['write', ['read', 'share'] as RightName[], false]] as const) {
    const [mine, theirs] = sys.socketpair();
    const rx = await spawnFixture(t, 'fd-receiver.mjs', [d.socket, `fd-receiver-${String(wantWrite)}`, String(size), mode], { fd3: theirs, waitReady: false });
    sys.close(theirs); // the child has its copy
    try {
      const sent = await sendHandle(mine, c, a.handle, rights === undefined ? {} : { rights });
      t.equal(sent.rights.includes('write'), wantWrite, `the descriptor sent is ${wantWrite ? 'read-write' : 'read-only'}`);
    } finally {
      sys.close(mine);
    }
    const got = await rx.wait((l) => l['received'] === true || l['error'] !== undefined, 'the receiver imported the fd');
    t.notOk(got['error'], 'no error in the receiver');
    t.equal(got['buffer'], a.buffer, 'the same buffer on the other side');
    t.equal(got['size'], size);
    t.equal(got['sha256'], sha256(want), "the receiver's mapping shows the sender's bytes");
    t.equal((got['rights'] as string[]).includes('write'), wantWrite, 'rights follow the descriptor');
    t.equal(got['wrote'], wantWrite);
    if (wantWrite) want[0] = 0x5a;
    await rx.exited;
  }
  const back = Buffer.from(await c.read(a.handle, 0, 1));
  t.equal(back[0], 0x5a, "the read-write receiver's store through its mapping is the sender's byte");
  await c.close(a.handle);
  t.equal((await poll(() => obs.status(), (s) => s.buffers.live === 0)).buffers.live, 0, 'freed once every holder let go');
});
