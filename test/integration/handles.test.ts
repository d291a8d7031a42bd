/**
 * Handles end to end: file-descriptor numbering, dup, info (refs, holders),
 * EBADF, EMFILE, rights (narrowing only), send and its 'handle' event, and
 * forging — a client using numbers only another client holds.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient, rejection, pattern, sha256, type Line } from '../helpers/procs.js';
import { connect, BufferdError, type BufferClient, type HandleEvent, type HandleInfo } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const NO_REFS = { handles: 0, inflight: 0, registrations: 0, mappings: 0 };
const ALL = ['read', 'write', 'share'];

/** An anonymous client (the admin cookie beside the socket is not used). */
async function anon(t: { teardown(fn: () => unknown): void }, socket: string, name?: string): Promise<BufferClient> {
  const c = await connect(name === undefined ? { socket, useCookie: false, accept: 'any' } : { socket, name, useCookie: false, accept: 'any' });
  t.teardown(() => c.disconnect());
  return c;
}

/** The next 'handle' event on a client. */
const nextHandleEvent = (c: BufferClient) => new Promise<HandleEvent>((r) => c.once('handle', r));

// one daemon for the subtests on the default machine (each has clients of its own, and the one
// that counts every live buffer runs before any token is left in flight); EMFILE and the paged
// listing start their own
const shared = await startDaemon(t);

t.test('numbering: the lowest free number, dup takes the next lowest', async (t) => {
  const d = shared;
  const c = await anon(t, d.socket, 'numbers');
  const small = { pool: 'default', size: 64 };
  const h = [];
  for (let i = 0; i < 3; i++) h.push((await c.alloc(small)).handle);
  t.same(h, [0, 1, 2], 'alloc gives 0, 1, 2');
  t.same(await c.close(1), { handle: 1, closed: true });
  t.equal((await c.alloc(small)).handle, 1, 'the hole is reused first');
  t.same(await c.dup(0), { handle: 3, rights: ALL }, 'dup takes the next lowest free number');
  await c.close(0);
  await c.close(2);
  t.equal((await c.dup(3)).handle, 0, 'lowest hole first');
  t.equal((await c.alloc(small)).handle, 2, 'then the next hole');
  t.equal((await c.alloc(small)).handle, 4, 'then past the end');
  // closing the highest numbers shrinks the table; the next number is the lowest free again
  await c.close(4);
  await c.close(3);
  t.equal((await c.alloc(small)).handle, 3);
  const st = await c.status();
  t.equal(st.clients.find((x) => x.id === c.id)!.handles, 4, 'status counts the open handles (0..3)');
  // numbers are per connection: a second client starts at 0 too
  const other = await anon(t, d.socket);
  t.equal((await other.alloc(small)).handle, 0, 'another connection has its own table');
});

t.test('dup keeps rights; info shows refs, holders and creator', async (t) => {
  const d = shared;
  const a = await anon(t, d.socket, 'alice');
  const b = await anon(t, d.socket, 'bob');
  const x = await a.alloc({ pool: 'default', size: 5000 });
  t.same(x.rights, ALL, 'alloc gives every right');
  t.same(x.refs, { ...NO_REFS, handles: 1 });
  t.equal(x.holders, 1);
  t.equal(x.creator, a.id);
  t.equal(x.owner, a.id);

  const dupA = await a.dup(x.handle);
  let i = await a.info(x.handle);
  t.same(i.refs, { ...NO_REFS, handles: 2 }, 'dup adds a handle reference');
  t.equal(i.holders, 1, 'still one holder');
  t.same((await a.info(dupA.handle)).buffer, x.buffer, 'same buffer');

  // a narrowed handle: dup keeps exactly its rights
  const ev = nextHandleEvent(b);
  t.same(await a.send(x.handle, 'bob', { rights: ['read', 'share'] }), { to: b.id, toName: 'bob', rights: ['read', 'share'] });
  const got = await ev;
  const bd = await b.dup(got.handle);
  t.same(bd.rights, ['read', 'share'], 'dup keeps the narrowed rights');
  t.same((await b.info(bd.handle)).rights, ['read', 'share']);
  i = await b.info(got.handle);
  t.same(i.refs, { ...NO_REFS, handles: 4 });
  t.equal(i.holders, 2, 'two clients hold it');
  t.equal(i.creator, a.id, 'creator stays the allocating client');

  const ex = await a.export(x.handle, { rights: ['read'] });
  t.same((await a.info(x.handle)).refs, { ...NO_REFS, handles: 4, inflight: 1 }, 'an exported token is an in-flight reference');
  const imp = await b.import(ex.token);
  t.same(imp.rights, ['read']);
  t.same(imp.refs, { ...NO_REFS, handles: 5 }, 'import turns the in-flight reference into a handle');

  for (const n of [got.handle, bd.handle, imp.handle]) await b.close(n);
  i = await a.info(x.handle);
  t.same(i.refs, { ...NO_REFS, handles: 2 });
  t.equal(i.holders, 1);
  const listing = (await a.buffers()).buffers;
  t.same(
    listing.map((l) => ({ buffer: l.buffer, holders: l.holders })),
    [{ buffer: x.buffer, holders: [{ client: a.id, name: 'alice', handles: 2 }] }],
    'buffers lists the holder with its handle count',
  );
});

t.test('EBADF for numbers never opened or already closed, whatever the op', async (t) => {
  const d = shared;
  const c = await anon(t, d.socket, 'ebadf');
  await anon(t, d.socket, 'peer'); // a valid send target: only the handle is wrong
  const x = await c.alloc({ pool: 'default', size: 100 });
  await c.close(x.handle);
  for (const n of [x.handle, 1, 7, 1023, 1024, 2 ** 31, 2 ** 53 - 1]) {
    const ops: [string, Promise<unknown>][] = [
      ['info', c.info(n)],
      ['read', c.read(n, 0, 1)],
      ['write', c.write(n, 0, Buffer.from([1]))],
      ['dup', c.dup(n)],
      ['close', c.close(n)],
      ['send', c.send(n, 'peer')],
      ['export', c.export(n)],
    ];
    for (const [op, p] of ops) {
      const e = await rejection(p);
      t.equal(e.code, 'EBADF', `${op} ${n}`);
      t.match(e.message, `handle ${n} is not open on this connection`);
      t.same(e.details, { handle: n });
    }
  }
  t.equal((await c.status()).buffers.live, 0, 'nothing was created by the failures');
});

t.test('EMFILE at maxHandles; the table keeps working', async (t) => {
  const d = await startDaemon(t, {
    config: {
      ...DEFAULT_MACHINE,
      limits: { maxHandles: 8 },
      auth: {
        anonymous: { capabilities: [] },
        tokens: [{ name: 'few', secret: 'few-handles-secret-0123', capabilities: [], maxHandles: 3 }],
      },
    },
  });
  const c = await anon(t, d.socket, 'full');
  const peer = await anon(t, d.socket, 'peer');
  t.equal(c.session.limits.maxHandles, 8, 'hello announces the limit');
  for (let i = 0; i < 8; i++) t.equal((await c.alloc({ pool: 'default', size: 100 })).handle, i);
  const before = await c.status();
  let e = await rejection(c.alloc({ pool: 'default', size: 100 }));
  t.equal(e.code, 'EMFILE');
  t.match(e.message, 'maxHandles 8');
  t.same(e.details, { handles: 8, mappings: 0, registrations: 0, maxHandles: 8 });
  const after = await c.status();
  t.same(after.pools, before.pools, 'a refused alloc allocates nothing');
  t.equal(after.buffers.live, 8);
  t.equal((await rejection(c.dup(0))).code, 'EMFILE', 'dup too');

  // import into a full table: EMFILE, and the token is not used up
  const theirs = await peer.alloc({ pool: 'default', size: 100 });
  const tok = await peer.export(theirs.handle);
  t.equal((await rejection(c.import(tok.token))).code, 'EMFILE', 'import too');
  // send to a full client: the sender gets EMFILE naming the receiver
  e = await rejection(peer.send(theirs.handle, 'full'));
  t.equal(e.code, 'EMFILE');
  t.match(e.message, `client ${c.id} 'full'`);
  t.same((await peer.info(theirs.handle)).refs, { ...NO_REFS, handles: 1, inflight: 1 }, 'the failed send left no reference');

  await c.close(5);
  const imp = await c.import(tok.token);
  t.equal(imp.handle, 5, 'the token still works and takes the freed number');
  await c.close(2);
  t.equal((await c.alloc({ pool: 'default', size: 100 })).handle, 2, 'alloc works again');
  t.equal((await rejection(c.alloc({ pool: 'default', size: 100 }))).code, 'EMFILE', 'and the limit holds again');

  // a token's own maxHandles
  const few = await connect({ socket: d.socket, token: 'few-handles-secret-0123' });
  t.teardown(() => few.disconnect());
  t.equal(few.session.limits.maxHandles, 3);
  for (let i = 0; i < 3; i++) await few.alloc({ pool: 'default', size: 10 });
  t.same((await rejection(few.alloc({ pool: 'default', size: 10 }))).details, { handles: 3, mappings: 0, registrations: 0, maxHandles: 3 });
});

t.test('rights: EPERM naming the right; narrowing only; send needs share; ENOENT for unknown targets', async (t) => {
  const d = shared;
  const a = await anon(t, d.socket, 'owner');
  const b = await anon(t, d.socket, 'reader');
  const x = await a.alloc({ pool: 'default', size: 4096 });
  await a.write(x.handle, 0, pattern(4096, 1));

  let ev = nextHandleEvent(b);
  await a.send(x.handle, b.id, { rights: ['read'] });
  const ro = (await ev).handle;
  t.ok((await b.read(ro, 0, 4096)).equals(pattern(4096, 1)), 'read with the read right');
  let e = await rejection(b.write(ro, 0, Buffer.from([9])));
  t.equal(e.code, 'EPERM');
  t.match(e.message, "lacks the 'write' right");
  t.equal(e.details?.['missing'], 'write');
  e = await rejection(b.send(ro, 'owner'));
  t.equal(e.code, 'EPERM', 'send needs share');
  t.equal(e.details?.['missing'], 'share');
  e = await rejection(b.export(ro));
  t.equal(e.code, 'EPERM', 'export needs share');
  t.equal(e.details?.['missing'], 'share');
  t.equal((await a.read(x.handle, 0, 1))[0], pattern(1, 1)[0], 'the refused write changed nothing');

  ev = nextHandleEvent(b);
  await a.send(x.handle, 'reader', { rights: ['write'] });
  const wo = (await ev).handle;
  e = await rejection(b.read(wo, 0, 1));
  t.same([e.code, e.details?.['missing']], ['EPERM', 'read'], 'read needs the read right');
  t.match(e.message, "lacks the 'read' right");
  t.same(await b.write(wo, 4095, Buffer.from([0x5a])), { written: 1 }, 'a write-only handle writes');
  t.equal((await a.read(x.handle, 4095, 1))[0], 0x5a);

  ev = nextHandleEvent(b);
  await a.send(x.handle, 'reader', { rights: ['read', 'share'] });
  const rs = (await ev).handle;
  for (const [op, p] of [
    ['send', b.send(rs, 'owner', { rights: ['read', 'write'] })],
    ['export', b.export(rs, { rights: ['write'] })],
    ['send', b.send(rs, 'owner', { rights: ['share', 'write', 'read'] })],
  ] as const) {
    e = await rejection(p);
    t.equal(e.code, 'EPERM', `${op} cannot widen`);
    t.match(e.message, "'write'");
    t.match(e.message, 'never widened');
  }
  t.same((await b.export(rs, { rights: ['read'] })).rights, ['read'], 'narrowing is fine');
  const back = nextHandleEvent(a);
  t.same((await b.send(rs, 'owner')).rights, ['read', 'share'], 'without rights: the handle\'s own');
  t.same((await back).rights, ['read', 'share']);

  for (const to of [99_999, 'nobody', 0]) {
    e = await rejection(a.send(x.handle, to));
    t.equal(e.code, 'ENOENT', `send to ${to}`);
    t.same(e.details, { to });
  }
  const gone = await anon(t, d.socket, 'gone');
  const goneId = gone.id;
  await gone.disconnect();
  for (const to of [goneId, 'gone']) t.equal((await rejection(a.send(x.handle, to))).code, 'ENOENT', `send to a client that left (${to})`);
  t.equal((await a.info(x.handle)).refs.handles, 5, 'failed sends added no reference');
});

t.test("the 'handle' event reaches another process with the sender's id and name", async (t) => {
  const d = shared;
  const recv = await spawnClient(t, d.socket, 'receiver');
  const a = await anon(t, d.socket, 'sender');
  const x = await a.alloc({ pool: 'huge', size: 3000 });
  await recv.call('alloc', { pool: 'default', size: 10 }); // the receiver's 0 is taken
  const r = await a.send(x.handle, 'receiver', { rights: ['read', 'share'] });
  t.same(r, { to: recv.id, toName: 'receiver', rights: ['read', 'share'] });
  const ev = await recv.wait((l) => l['event'] === 'handle', 'handle event');
  t.same(ev, {
    event: 'handle',
    handle: 1,
    rights: ['read', 'share'],
    from: { id: a.id, name: 'sender' },
    buffer: x.buffer,
    size: 3000,
    pool: 'huge',
    cache: 'writeback',
  });
  // an unnamed sender: name null
  const u = await anon(t, d.socket);
  const y = await u.alloc({ pool: 'default', size: 1 });
  await u.send(y.handle, recv.id);
  const ev2 = await recv.wait((l) => l['event'] === 'handle' && l['buffer'] === y.buffer, 'second handle event');
  t.same(ev2['from'], { id: u.id, name: null });
  t.equal(ev2['handle'], 2);
  const i = await recv.call<HandleInfo>('info', 1);
  t.equal(i.buffer, x.buffer, 'the event names a handle the receiver can use');
});

t.test('forging: numbers only another client holds are EBADF, whatever the op', async (t) => {
  const d = shared;
  const alice = await spawnClient(t, d.socket, 'alice');
  const sizes = [100, 5000, 40_000, 3 << 20, 64];
  const mine: HandleInfo[] = [];
  for (const [k, size] of sizes.entries()) {
    const h = await alice.call<HandleInfo>('alloc', { pool: k === 3 ? 'huge' : 'default', size });
    await alice.cmd('fill', { handle: h.handle, length: size, seed: k });
    mine.push(h);
  }
  t.same(mine.map((h) => h.handle), [0, 1, 2, 3, 4]);
  await alice.call('dup', 2); // alice: 0..5
  const refsBefore = await Promise.all(mine.map((h) => alice.call<HandleInfo>('info', h.handle)));

  const mallory = await anon(t, d.socket, 'mallory');
  const own = await mallory.alloc({ pool: 'default', size: 8 }); // mallory's 0
  t.equal(own.handle, 0);
  for (const n of [1, 2, 3, 4, 5]) {
    const attempts: [string, Promise<unknown>][] = [
      ['read', mallory.read(n, 0, 1)],
      ['write', mallory.write(n, 0, Buffer.from([0xee]))],
      ['info', mallory.info(n)],
      ['dup', mallory.dup(n)],
      ['send to alice', mallory.send(n, 'alice')],
      ['send to itself', mallory.send(n, mallory.id)],
      ['export', mallory.export(n)],
      ['close', mallory.close(n)],
    ];
    for (const [op, p] of attempts) {
      const e = await rejection(p);
      t.equal(e.code, 'EBADF', `${op} of alice's ${n}`);
    }
  }
  // mallory's own 0 is its own buffer, never alice's
  t.not((await mallory.info(0)).buffer, mine[0]!.buffer);
  // buffer ids are not tokens either
  for (const guess of [String(mine[1]!.buffer), 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) t.equal((await rejection(mallory.import(guess))).code, 'ENOENT');
  t.same((await mallory.buffers()).buffers.map((b) => b.buffer), [own.buffer], 'a non-admin lists only what it holds');
  t.same((await mallory.buffers({ client: alice.id })).buffers, [], 'even when asking for another client');
  t.same(await mallory.buffers({ client: mallory.id }), { buffers: (await mallory.buffers()).buffers });

  // alice's handles all still work, with the same references
  const refsAfter = await Promise.all(mine.map((h) => alice.call<HandleInfo>('info', h.handle)));
  t.same(refsAfter, refsBefore, 'info unchanged (refs, holders, rights)');
  for (const [k, size] of sizes.entries()) {
    const v = await alice.cmd<Line>('verify', { handle: k, length: size, seed: k });
    t.ok(v['equal'], `alice's buffer ${k} intact`);
    t.equal(v['sha256'], sha256(pattern(size, k)));
  }
  t.same(await alice.call('close', 5), { handle: 5, closed: true }, "alice's dup closes normally");
});

t.test('buffers answers a page at a time; the client library gathers the pages', async (t) => {
  const d = await startDaemon(t);
  const admin = await connect({ socket: d.socket, admin: true });
  t.teardown(() => admin.disconnect());
  const c = await anon(t, d.socket, 'many');
  const made = [];
  for (let i = 0; i < 25; i++) made.push((await c.alloc({ pool: 'default', size: 64 })).buffer);
  const page = (o: Record<string, unknown>) => admin.request('buffers', o as never) as Promise<{ buffers: { buffer: number }[]; more: boolean }>;
  const p1 = await page({ limit: 10 });
  t.same(p1.buffers.map((b) => b.buffer), made.slice(0, 10));
  t.equal(p1.more, true);
  const p2 = await page({ limit: 10, after: made[9] });
  t.same(p2.buffers.map((b) => b.buffer), made.slice(10, 20));
  const p3 = await page({ limit: 10, after: made[19] });
  t.same(p3.buffers.map((b) => b.buffer), made.slice(20));
  t.equal(p3.more, false, 'the last page says so');
  t.same((await page({ limit: 10, client: c.id, after: made[22] })).buffers.map((b) => b.buffer), made.slice(23), 'per client too');
  t.equal((await admin.buffers()).buffers.length, 25, 'buffers() gathers every page');
  const e = await admin.request('buffers', { limit: 10_001 } as never).catch((x: BufferdError) => x);
  t.equal((e as BufferdError).code, 'EINVAL');
  t.match((e as BufferdError).message, "field 'limit'");
});
