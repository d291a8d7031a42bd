/**
 * Bad input from one client gets the documented error or disconnect, and a
 * bystander connected throughout keeps getting correct answers.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { RawClient, type Msg } from '../helpers/raw.js';
import { connect, type BufferClient } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { encodeValue } from '../../protocol/codec.js';

type Err = { code: string; message: string; details?: Record<string, unknown> };
const errOf = (m: Msg | null): Err => (m as { error: Err }).error;

/** A well-behaved client that keeps asking while the test misbehaves. */
function bystander(c: BufferClient) {
  let stop = false;
  let rounds = 0;
  const failures: string[] = [];
  const done = (async () => {
    while (!stop) {
      try {
        const p = await c.ping();
        if (typeof p.uptimeMs !== 'number') failures.push('ping result malformed');
        const st = await c.status();
        if (!st.clients.some((x) => x.id === c.id)) failures.push('status lost the bystander');
        rounds++;
      } catch (e) {
        failures.push(String(e));
        return;
      }
    }
  })();
  return {
    async finish() {
      stop = true;
      await done;
      return { rounds, failures };
    },
  };
}

t.test('bad input on one connection never disturbs another', async (t) => {
  const d = await startDaemon(t, {
    logLevel: 'info',
    config: { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, frameTimeoutMs: 300 } },
  });
  const good = await connect({ socket: d.socket, name: 'bystander' });
  t.teardown(() => good.disconnect());
  const b = bystander(good);

  await t.test('oversized length prefix: one E2BIG frame naming the limit, then close', async (t) => {
    const r = await RawClient.connect(d.socket);
    r.sendBytes(Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    const m = await r.next();
    t.equal(m?.['id'], null);
    t.equal(errOf(m).code, 'E2BIG');
    t.match(errOf(m).message, '4194304');
    t.equal(errOf(m).details?.['limit'], 4194304);
    t.equal(await r.next(), null, 'connection closed by the daemon');
  });

  await t.test('oversized prefix after hello, mid-session', async (t) => {
    const r = await RawClient.open(d.socket);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(4 * 1024 * 1024 + 1);
    r.sendBytes(head);
    t.equal(errOf(await r.next()).code, 'E2BIG');
    t.equal(await r.next(), null);
  });

  await t.test('random bytes', async (t) => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let round = 0; round < 10; round++) {
      const r = await RawClient.connect(d.socket);
      const bytes = Buffer.from(Array.from({ length: 2000 }, rnd));
      r.sendBytes(bytes);
      // every answer is an error; the daemon either closes or keeps the connection
      for (;;) {
        const m = await r.next(1500).catch(() => 'silence' as const);
        if (m === null || m === 'silence') break;
        t.ok(['E2BIG', 'EPROTO', 'EINVAL', 'ETIMEDOUT'].includes(errOf(m).code), `error ${errOf(m).code}`);
      }
      r.sock.destroy();
    }
  });

  await t.test('truncated frame then close', async (t) => {
    const r = await RawClient.connect(d.socket);
    const f = Buffer.alloc(4 + 10);
    f.writeUInt32BE(100);
    r.sendBytes(f);
    await r.end();
    t.pass('closed mid-frame');
  });

  await t.test('half a frame then silence: ETIMEDOUT and close', async (t) => {
    const r = await RawClient.open(d.socket);
    const f = Buffer.alloc(4 + 3);
    f.writeUInt32BE(50);
    r.sendBytes(f);
    const m = await r.next(5000);
    t.equal(errOf(m).code, 'ETIMEDOUT');
    t.match(errOf(m).message, 'frameTimeoutMs');
    t.equal(await r.next(), null);
  });

  await t.test('frame bodies that are not one MessagePack map: EPROTO, connection kept', async (t) => {
    const r = await RawClient.connect(d.socket);
    const frame = (body: Buffer) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(body.length);
      return Buffer.concat([h, body]);
    };
    for (const body of [
      Buffer.alloc(0),
      Buffer.from([0xc1]),
      Buffer.from([0x92, 0x01]),
      Buffer.from([0x01, 0x02]),
      encodeValue([1, 2, 3]),
      encodeValue('hello'),
      encodeValue(42),
      encodeValue(null),
    ]) {
      r.sendBytes(frame(body));
      const m = await r.next();
      t.equal(m?.['id'], null);
      t.equal(errOf(m).code, 'EPROTO', `body ${body.toString('hex')}`);
    }
    const ok = await r.call({ id: 9, op: 'hello', version: 1 });
    t.ok(ok['result'], 'still usable after EPROTO');
    await r.end();
  });

  await t.test('a str32 header lying about its length, after a frame with a long string: EPROTO, daemon alive', async (t) => {
    // this pair crashed the daemon (SIGSEGV in msgpackr-extract's native string decoder)
    const warm = await RawClient.connect(d.socket);
    const m1 = await warm.call({ id: 1, op: 'x'.repeat(40) });
    t.equal(errOf(m1).code, 'EINVAL', 'a long string (an unknown op) in a frame before hello');
    for (const len of ['fffffffb', 'fffffffc', 'fffffffd', 'fffffffe', 'ffffffff']) {
      const r = await RawClient.connect(d.socket);
      r.sendBytes(Buffer.from(`00000008db${len}616263`, 'hex'));
      const m = await r.next();
      t.equal(m?.['id'], null);
      t.equal(errOf(m).code, 'EPROTO');
      t.match(errOf(m).message, `claims ${parseInt(len, 16)} bytes, only 3 left`);
      t.ok((await r.call({ id: 2, op: 'hello', version: 1 }))['result'], 'the connection is still usable');
      await r.end();
    }
    await warm.end();
    t.equal(d.proc.exitCode, null, 'daemon still running');
    t.equal(d.proc.signalCode, null, 'no signal');
  });

  await t.test('extension types, 0xc1 and non-string keys nested in a request: EPROTO, id nil', async (t) => {
    const r = await RawClient.open(d.socket);
    const bodies = [
      '83 a26964 05 a26f70 a4696e666f a668616e646c65 d40100', // {id:5, op:'info', handle: fixext1}
      '83 a26964 06 a26f70 a4696e666f a668616e646c65 c1', // handle: 0xc1
      '83 a26964 07 a26f70 a6737461747573 a4706f6f6c 91 c70105ff', // pool: [ext8]
      '83 a26964 08 a26f70 a470696e67 01 02', // a non-string key
    ];
    for (const h of bodies) {
      const body = Buffer.from(h.replace(/ /g, ''), 'hex');
      r.sendBytes(Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]));
      const m = await r.next();
      t.equal(m?.['id'], null, h);
      t.equal(errOf(m).code, 'EPROTO', h);
    }
    t.ok((await r.call({ id: 9, op: 'ping' }))['result'], 'connection kept');
    await r.end();
  });

  await t.test('ops before hello and wrong version: EPROTO', async (t) => {
    const r = await RawClient.connect(d.socket);
    for (const op of ['ping', 'status']) {
      const m = await r.call({ id: 1, op });
      t.equal(errOf(m).code, 'EPROTO');
      t.equal(m['id'], 1);
    }
    const v = await r.call({ id: 2, op: 'hello', version: 0 });
    t.equal(errOf(v).code, 'EPROTO');
    t.match(errOf(v).message, 'version 0');
    t.match(errOf(v).message, 'version 1');
    await r.end();
  });

  await t.test('unknown op, missing, extra and wrongly typed fields: EINVAL naming the field', async (t) => {
    const r = await RawClient.open(d.socket);
    const cases: [unknown, string][] = [
      [{ id: 1, op: 'nope' }, "unknown op 'nope'"],
      [{ id: 2 }, "field 'op' is required"],
      [{ op: 'ping' }, "field 'id' is required"],
      [{ id: 3, op: 'ping', extra: true }, "field 'extra' is not allowed"],
      [{ id: 4, op: 'status', verbose: 1 }, "field 'verbose' is not allowed"],
      [{ id: 'five', op: 'ping' }, "field 'id' must be an unsigned integer"],
      [{ id: 6, op: 42 }, 'unknown op'],
    ];
    for (const [req, text] of cases) {
      const m = await r.call(req);
      t.equal(errOf(m).code, 'EINVAL', JSON.stringify(req));
      t.match(errOf(m).message, text);
      const id = (req as { id?: unknown }).id;
      t.equal(m['id'], typeof id === 'number' ? id : null, 'answer carries the id when there was a valid one');
    }
    const ok = await r.call({ id: 10, op: 'ping' });
    t.ok(ok['result']);
    await r.end();
  });

  await t.test('a client that pipelines and never reads costs only itself', async (t) => {
    const r = await RawClient.open(d.socket);
    r.sock.pause();
    const burst = Buffer.concat(Array.from({ length: 20000 }, (_, i) => Buffer.from(encodeFrameLike({ id: i, op: 'status' }))));
    r.sock.write(burst);
    const other = await connect({ socket: d.socket });
    for (let i = 0; i < 20; i++) t.ok(await other.ping());
    await other.disconnect();
    r.sock.destroy();
  });

  await t.test('disconnect mid-request burst', async (t) => {
    for (let i = 0; i < 20; i++) {
      const r = await RawClient.open(d.socket);
      for (let j = 0; j < 50; j++) r.send({ id: j, op: 'status' });
      r.sock.destroy();
    }
    t.pass();
  });

  const res = await b.finish();
  t.same(res.failures, [], 'bystander saw no failure');
  t.ok(res.rounds > 5, `bystander completed ${res.rounds} rounds`);
  // the daemon learns of the last sockets' ends on its own time (their close events, then a teardown in slices): wait for it, boundedly
  let st = await good.status();
  for (const t0 = Date.now(); st.clients.length > 1 && Date.now() - t0 < 5000; st = await good.status()) await new Promise((r) => setTimeout(r, 20));
  t.equal(st.clients.length, 1, 'only the bystander is left connected');
  t.equal(d.proc.exitCode, null, 'daemon still running');
});

function encodeFrameLike(v: unknown): Buffer {
  const body = encodeValue(v);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
}
