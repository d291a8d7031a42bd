/**
 * Quotas belong to the principal: every connection presenting a token
 * shares that token's quota, and all anonymous connections share the
 * anonymous one. The charge travels with the buffer (whatever keeps it
 * alive: handles, tokens, mappings, registrations) and is released when it
 * is freed. maxHandles bounds handles, mappings and registrations together.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { connect, BufferdError } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const SECRET = 'quota-token-secret-0123456789';

t.test('a second connection is not a second quota', async (t) => {
  const d = await startDaemon(t, {
    config: {
      ...DEFAULT_MACHINE,
      auth: {
        anonymous: { capabilities: [], maxBytes: '16K' },
        tokens: [{ name: 'limited', secret: SECRET, capabilities: [], maxBytes: '64K' }],
      },
    },
  });
  const a = await connect({ socket: d.socket, token: SECRET });
  const b = await connect({ socket: d.socket, token: SECRET, accept: 'any' });
  t.teardown(() => Promise.all([a.disconnect(), b.disconnect()]));
  t.equal(a.session.principal, 'limited');
  t.equal(a.session.maxBytes, 64 * 1024);
  const h1 = await a.alloc({ pool: 'default', size: 40 * 1024 });
  // 40 KiB is a size class; 24 KiB + 1 rounds to the 28 KiB class: 68 KiB passes the shared 64 KiB
  const e = await b.alloc({ pool: 'default', size: 24 * 1024 + 1 }).catch((x: BufferdError) => x);
  t.equal((e as BufferdError).code, 'EDQUOT');
  t.match((e as BufferdError).message, "allowed to 'limited'");
  t.same((e as BufferdError).details, { quota: 65536, used: 40960, requested: 28672, principal: 'limited' });
  t.match((e as BufferdError).message, 'shared by all its connections');
  const st = await b.status();
  t.equal(st.clients.find((c) => c.id === b.id)!.principalBytes, 40960, 'both connections show the shared use');
  t.equal(st.clients.find((c) => c.id === b.id)!.bytes, 0, 'and each its own');
  // the charge travels with the buffer: passing it on and leaving does not release it
  await a.send(h1.handle, b.id);
  await a.disconnect();
  const e2 = await b.alloc({ pool: 'default', size: 24 * 1024 + 1 }).catch((x: BufferdError) => x);
  t.equal((e2 as BufferdError).code, 'EDQUOT', 'still charged while the buffer lives');
  t.equal((await b.buffers()).buffers.length, 1, 'b holds the buffer a allocated');
  await b.close(0);
  t.equal((await b.status()).clients.find((c) => c.id === b.id)!.principalBytes, 0, 'freed: quota released');
  const ok = await b.alloc({ pool: 'default', size: 60 * 1024 });
  t.equal(ok.usize, 65536, "60 KiB rounds to the 64 KiB class: exactly the quota");
  // anonymous connections are one principal: one quota
  const x = await connect({ socket: d.socket, useCookie: false });
  const y = await connect({ socket: d.socket, useCookie: false });
  t.teardown(() => Promise.all([x.disconnect(), y.disconnect()]));
  await x.alloc({ pool: 'default', size: 16 * 1024 });
  const ey = (await y.alloc({ pool: 'default', size: 1 }).catch((z: BufferdError) => z)) as BufferdError;
  t.equal(ey.code, 'EDQUOT', 'a second anonymous connection shares the anonymous quota');
  t.equal(ey.details?.['principal'], 'anonymous');
});

t.test('reconnecting does not renew a quota: buffers kept alive by tokens still count', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, auth: { anonymous: { capabilities: [], maxBytes: '8M' } } } });
  const watcher = await connect({ socket: d.socket });
  t.teardown(() => watcher.disconnect());
  let kept = 0;
  for (let i = 0; i < 10; i++) {
    const c = await connect({ socket: d.socket, useCookie: false });
    const r = await c.alloc({ pool: 'default', size: 8 * 2 ** 20 }).catch((e: BufferdError) => e);
    if (!(r instanceof BufferdError)) {
      await c.export(r.handle, { ttlMs: 60_000 }); // the token keeps it alive after the client leaves
      kept++;
    } else {
      t.equal(r.code, 'EDQUOT', `reconnect ${i}: EDQUOT`);
    }
    await c.disconnect();
  }
  t.equal(kept, 1, 'only the first 8 MiB fits the quota, however often the client reconnects');
  const st = await watcher.status();
  t.equal(st.buffers.live, 1);
  t.equal(st.buffers.tokensInFlight, 1);
});

t.test('maxHandles bounds what keeps buffers alive: mappings and registrations count with handles', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, auth: { anonymous: { capabilities: ['driver'], maxHandles: 8 } } } });
  const c = await connect({ socket: d.socket, useCookie: false });
  t.teardown(() => c.disconnect());
  t.equal(c.session.limits.maxHandles, 8);
  let mapped = 0;
  let err: BufferdError | null = null;
  for (let i = 0; i < 100 && err === null; i++) {
    try {
      const h = await c.alloc({ pool: 'default', size: 4096 });
      await c.mapRemote(h.handle);
      await c.close(h.handle); // the mapping keeps the buffer alive
      mapped++;
    } catch (e) {
      err = e as BufferdError;
    }
  }
  t.equal(mapped, 7, 'the 8th buffer: its handle takes the last slot, so it cannot be mapped');
  t.equal(err?.code, 'EMFILE');
  t.match(err?.message, 'this connection already holds 8 slots (1 handles, 7 mappings)');
  const st = await c.status();
  t.equal(st.buffers.live, 8, '8 buffers alive: what maxHandles allows, not 100');
  const me = st.clients.find((x) => x.id === c.id)!;
  t.equal(me.handles, 1);
  t.equal(me.mappings, 7);
  // registrations too: alloc, register, close
  await c.close(0);
  await c.unmap(1);
  const h = await c.alloc({ pool: 'default', size: 4096 });
  await c.register(h.handle, 'capture');
  await c.close(h.handle);
  t.equal((await c.status()).clients.find((x) => x.id === c.id)!.registrations, 1);
  const h2 = await c.alloc({ pool: 'default', size: 4096 });
  t.equal((await c.register(h2.handle, 'capture').catch((e: BufferdError) => e) as BufferdError).code, 'EMFILE', 'the registration would take a 9th slot');
});
