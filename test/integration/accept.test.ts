/**
 * Receiving handles is the receiver's choice (as recvmsg is with
 * SCM_RIGHTS): nobody can send a client a handle until it says whom it
 * accepts from, incoming handles never take its last free slots, and names
 * bound to principals in the config can only be taken by them.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { connect, BufferdError, type BufferClient, type HandleEvent } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error('resolved'); }, (e: BufferdError) => e);

t.test('send needs the receiver to accept; incoming handles leave its reserve free', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, limits: { maxHandles: 1024 } } });
  const open = async (name: string, o: { accept?: 'any' | 'none' | (string | number)[] } = {}): Promise<BufferClient> => {
    const c = await connect({ socket: d.socket, name, useCookie: false, ...o });
    t.teardown(() => c.disconnect());
    return c;
  };
  const a = await open('a');
  const b = await open('b');
  const c = await open('c');
  t.equal(b.session.accept, 'none', 'a client accepts nothing until it says so');
  const h = await a.alloc({ pool: 'default', size: 4096 });

  let e = await rejection(a.send(h.handle, 'b'));
  t.equal(e.code, 'EPERM');
  t.equal(e.message, `client ${b.id} 'b' does not accept handles from client ${a.id} 'a' (it accepts none); the receiver must say whom it accepts from (hello {accept} or op 'accept')`);
  t.same(e.details, { to: b.id, accept: 'none' });
  t.equal((await b.status()).clients.find((x) => x.id === b.id)!.handles, 0, 'nothing arrived');

  t.same(await b.accept(['a', c.id]), { accept: [c.id, 'a'] });
  const got = new Promise<HandleEvent>((r) => b.once('handle', r));
  await a.send(h.handle, 'b');
  t.equal((await got).from.id, a.id, 'accepted by name');
  await c.alloc({ pool: 'default', size: 10 }).then((x) => c.send(x.handle, b.id));
  const other = await open('other');
  const oh = await other.alloc({ pool: 'default', size: 10 });
  e = await rejection(other.send(oh.handle, 'b'));
  t.equal(e.code, 'EPERM', 'not on the list');
  t.match(e.message, `(it accepts only ${c.id}, a)`);
  await b.accept('none');
  t.equal((await rejection(a.send(h.handle, 'b'))).code, 'EPERM', 'and back to none');

  // a flood from an accepted sender stops short of the receiver's own slots
  await b.accept('any');
  const before = (await b.status()).clients.find((x) => x.id === b.id)!.handles;
  let sent = 0;
  let last: BufferdError | null = null;
  for (let i = 0; i < 1024; i++) {
    const r = await a.send(h.handle, 'b').then(() => null, (x: BufferdError) => x);
    if (r !== null) {
      last = r;
      break;
    }
    sent++;
  }
  t.equal(before + sent, 1024 - 16, 'incoming handles stop 16 slots short of maxHandles');
  t.equal(last?.code, 'EMFILE');
  t.match(last?.message, `client ${b.id} 'b' already holds 1008 handles of maxHandles 1024; its last 16 slots are kept for its own use`);
  const mine = await b.alloc({ pool: 'default', size: 100 });
  t.ok(mine.handle >= 0, "the receiver's own alloc still works");
  t.equal(b.session.limits.reservedHandles, 16);
});

t.test('hello {accept}: handles sent the moment a client connects all reach its listener', async (t) => {
  const d = await startDaemon(t);
  const sender = await connect({ socket: d.socket, name: 'sender', useCookie: false });
  t.teardown(() => sender.disconnect());
  const bufs = await Promise.all(Array.from({ length: 20 }, () => sender.alloc({ pool: 'default', size: 64 })));
  await sender.subscribe({ topics: ['clients'] });
  // as soon as the receiver's hello is done, 20 handles go to it
  sender.on('activity', (ev) => {
    if (ev.kind === 'connect' && ev['name'] === 'late') for (const b of bufs) void sender.send(b.handle, 'late');
  });
  for (let round = 0; round < 5; round++) {
    const r = await connect({ socket: d.socket, name: 'late', useCookie: false, accept: ['sender'] });
    const seen: number[] = [];
    r.on('handle', (ev) => seen.push(ev.handle));
    const deadline = Date.now() + 5000;
    while (seen.length < 20 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    t.equal(seen.length, 20, `round ${round}: every handle event reached the listener attached after connect()`);
    t.same([...seen].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
    await r.disconnect();
  }
});

t.test('auth.names: a bound name can only be taken by its principal', async (t) => {
  const d = await startDaemon(t, {
    config: {
      ...DEFAULT_MACHINE,
      auth: {
        ...DEFAULT_MACHINE.auth,
        tokens: [{ name: 'decoder-app', secret: 'decoder-secret-0123456789', capabilities: [] }],
        names: { decoder: 'decoder-app' },
      },
    },
  });
  const e = await rejection(connect({ socket: d.socket, name: 'decoder', useCookie: false }));
  t.equal(e.code, 'EPERM');
  t.equal(e.message, "client name 'decoder' is reserved for 'decoder-app' (auth.names); this client is 'anonymous'");
  const admin = await rejection(connect({ socket: d.socket, name: 'decoder', admin: true }));
  t.equal(admin.code, 'EPERM', 'not even the cookie admin');
  const dec = await connect({ socket: d.socket, name: 'decoder', token: 'decoder-secret-0123456789', accept: 'any' });
  t.teardown(() => dec.disconnect());
  t.equal(dec.session.name, 'decoder');
  // so a sender naming 'decoder' reaches the decoder principal, never an impostor
  const app = await connect({ socket: d.socket, name: 'app', useCookie: false });
  t.teardown(() => app.disconnect());
  const h = await app.alloc({ pool: 'default', size: 10 });
  const r = await app.send(h.handle, 'decoder');
  t.equal(r.to, dec.id);
  const free = await connect({ socket: d.socket, name: 'anything', useCookie: false });
  t.equal(free.session.name, 'anything', 'unbound names stay first come, first served');
  await free.disconnect();
});
