/**
 * Quotas belong to the principal: every connection presenting a token
 * shares that token's quota; each anonymous connection has its own. The
 * charge travels with the buffer and is released when it is freed.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { connect, BufferdError } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/default-machine.js';

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
  const b = await connect({ socket: d.socket, token: SECRET });
  t.teardown(() => Promise.all([a.disconnect(), b.disconnect()]));
  t.equal(a.session.principal, 'limited');
  t.equal(a.session.maxBytes, 64 * 1024);
  const h1 = await a.alloc({ pool: 'default', size: 40 * 1024 });
  // 40 KiB is a size class; 24 KiB + 1 rounds to the 28 KiB class: 68 KiB passes the shared 64 KiB
  const e = await b.alloc({ pool: 'default', size: 24 * 1024 + 1 }).catch((x: BufferdError) => x);
  t.equal((e as BufferdError).code, 'EDQUOT');
  t.match((e as BufferdError).message, "allowed to 'limited'");
  t.same((e as BufferdError).details, { quota: 65536, used: 40960, requested: 28672 });
  const st = await b.status();
  t.equal(st.clients.find((c) => c.id === b.id)!.bytes, 40960, 'both connections show the shared use');
  // the charge travels with the buffer: passing it on and leaving does not release it
  await a.send(h1.handle, b.id);
  await a.disconnect();
  const e2 = await b.alloc({ pool: 'default', size: 24 * 1024 + 1 }).catch((x: BufferdError) => x);
  t.equal((e2 as BufferdError).code, 'EDQUOT', 'still charged while the buffer lives');
  t.equal((await b.buffers()).buffers.length, 1, 'b holds the buffer a allocated');
  await b.close(0);
  t.equal((await b.status()).clients.find((c) => c.id === b.id)!.bytes, 0, 'freed: quota released');
  const ok = await b.alloc({ pool: 'default', size: 60 * 1024 });
  t.equal(ok.usize, 65536, "60 KiB rounds to the 64 KiB class: exactly the quota");
  // anonymous connections each have their own quota
  const x = await connect({ socket: d.socket, useCookie: false });
  const y = await connect({ socket: d.socket, useCookie: false });
  t.teardown(() => Promise.all([x.disconnect(), y.disconnect()]));
  await x.alloc({ pool: 'default', size: 16 * 1024 });
  await y.alloc({ pool: 'default', size: 16 * 1024 });
  t.equal((await x.alloc({ pool: 'default', size: 1 }).catch((z: BufferdError) => z) as BufferdError).code, 'EDQUOT');
});
