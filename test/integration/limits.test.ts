/**
 * What one connection can make the daemon hold or keep: unread responses,
 * a frame trickled forever, sockets that never say hello.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { startDaemon } from '../helpers/daemon.js';
import { RawClient } from '../helpers/raw.js';
import { connect } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { encodeFrame } from '../../protocol/frame.js';

const MiB = 1024 * 1024;
type Err = { code: string; message: string };
const errOf = (m: Record<string, unknown> | null): Err => (m as { error: Err }).error;

/** Resident set size of a process, bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw client with a 4 MiB buffer that pipelines `n` reads of it and never reads its socket. */
async function unreadReads(socket: string, n: number, firstId = 10): Promise<RawClient> {
  const r = await RawClient.open(socket);
  const a = await r.call({ id: 1, op: 'alloc', pool: 'default', size: 4 * MiB });
  const h = (a['result'] as { handle: number }).handle;
  r.sock.pause();
  r.sock.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame({ id: firstId + i, op: 'read', handle: h, offset: 0, length: 4 * MiB - 2048 }))));
  return r;
}

t.test('pipelined reads that are never read: the daemon holds about maxUnsentBytes, not the sum', async (t) => {
  const limit = 4 * MiB; // server.maxUnsentBytes's default
  const d = await startDaemon(t, { logLevel: 'info' });
  const pid = d.proc.pid!;
  const bystander = await connect({ socket: d.socket, useCookie: false });
  t.teardown(() => bystander.disconnect());

  const r = await RawClient.open(d.socket);
  const a = await r.call({ id: 1, op: 'alloc', pool: 'default', size: 4 * MiB });
  const h = (a['result'] as { handle: number }).handle;
  await r.call({ id: 2, op: 'write', handle: h, offset: 0, data: Buffer.alloc(4096, 7) });
  // settle the heap, then measure
  for (let i = 0; i < 5; i++) await bystander.ping();
  await sleep(300);
  const before = rss(pid);
  r.sock.pause(); // never read
  const burst = Buffer.concat(Array.from({ length: 150 }, (_, i) => encodeFrame({ id: 100 + i, op: 'read', handle: h, offset: 0, length: 4 * MiB - 2048 })));
  t.ok(burst.length < 16 * 1024, `${burst.length} bytes of requests ask for ${150 * 4} MiB`);
  r.sock.write(burst);
  await sleep(1500);
  // others are served meanwhile
  const p0 = performance.now();
  for (let i = 0; i < 20; i++) await bystander.ping();
  t.ok(performance.now() - p0 < 2000, 'a bystander is answered while the pipeliner holds its responses');
  const grown = rss(pid) - before;
  // the response being encoded, its frame and the unsent bytes are a few times the limit; 600 MiB is not
  t.ok(grown < 12 * limit, `RSS grew ${(grown / MiB).toFixed(1)} MiB with ${150 * 4} MiB of responses asked for (limit ${limit / MiB} MiB)`);

  // once the client reads, every response comes, in order, complete
  r.sock.resume();
  for (let i = 0; i < 150; i++) {
    const m = await r.next(10_000);
    t.equal(m?.['id'], 100 + i, `response ${i} in order`);
    if ((m?.['result'] as { data: Buffer } | undefined)?.data.length !== 4 * MiB - 2048) {
      t.fail(`response ${i} incomplete`);
      break;
    }
  }
  r.sock.destroy();
});

t.test('a client that leaves with unread responses leaves nothing behind', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info' });
  const pid = d.proc.pid!;
  const c = await connect({ socket: d.socket, useCookie: false });
  t.teardown(() => c.disconnect());
  const base = rss(pid);
  const samples: number[] = [];
  for (let round = 0; round < 6; round++) {
    const r = await unreadReads(d.socket, 100);
    await sleep(300);
    samples.push(rss(pid) - base);
    r.sock.destroy();
    await sleep(100);
  }
  await sleep(500);
  samples.push(rss(pid) - base);
  const st = await c.status();
  t.equal(st.clients.length, 1, 'only this client is left');
  t.equal(st.buffers.live, 0, 'their buffers were freed');
  // garbage collection and the allocator make RSS noisy (±50 MiB here); what matters is no client's 400 MiB
  const worst = Math.max(...samples);
  t.ok(worst < 128 * MiB, `RSS grew at most ${(worst / MiB).toFixed(1)} MiB (samples ${samples.map((x) => (x / MiB).toFixed(0)).join(', ')} MiB) while 6 clients in turn asked for 400 MiB each`);
});

t.test('frameTimeoutMs is a deadline from the first byte, not an idle timer', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info', config: { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, frameTimeoutMs: 600 } } });
  const conns = await Promise.all(Array.from({ length: 5 }, () => RawClient.open(d.socket)));
  const frame = encodeFrame({ id: 1, op: 'ping' });
  const start = performance.now();
  const closedAt: number[] = [];
  const trickle = conns.map(async (r, k) => {
    // one byte every 250 ms: the frame never completes in time
    for (let i = 0; i < frame.length - 1 && !r.sock.destroyed; i++) {
      r.sendBytes(frame.subarray(i, i + 1));
      await sleep(250);
      if (closedAt[k] !== undefined) break;
    }
  });
  const answers = await Promise.all(
    conns.map(async (r, k) => {
      const m = await r.next(5000);
      closedAt[k] = performance.now() - start;
      return m;
    }),
  );
  await Promise.all(trickle);
  for (const [k, m] of answers.entries()) {
    t.equal(errOf(m).code, 'ETIMEDOUT', `connection ${k}`);
    t.match(errOf(m).message, 'not completed within 600 ms of its first byte (frameTimeoutMs)');
    t.ok(closedAt[k]! < 600 + 700, `closed ${Math.round(closedAt[k]!)} ms after its first byte`);
  }
  for (const r of conns) t.equal(await r.next(), null, 'and closed');
  // a frame sent whole is of course fine, and so are frames that keep coming whole
  const ok = await RawClient.open(d.socket);
  for (let i = 0; i < 10; i++) {
    t.ok((await ok.call({ id: i, op: 'ping' }))['result']);
    await sleep(100);
  }
  await ok.end();
});

t.test('sockets that never say hello are closed after helloTimeoutMs, and cannot lock others out', async (t) => {
  const d = await startDaemon(t, {
    logLevel: 'info',
    config: { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, helloTimeoutMs: 800, maxConnections: 8 } },
  });
  const start = performance.now();
  const silent = await Promise.all(Array.from({ length: 8 }, () => RawClient.connect(d.socket)));
  // the daemon is full of silent sockets: a new client still gets in, the oldest silent one makes room
  const c = await connect({ socket: d.socket, useCookie: false });
  t.ok(c.id > 0, 'a well-behaved client connects while 8 silent sockets fill maxConnections');
  const first = await silent[0]!.next(3000);
  t.equal(errOf(first).code, 'EBUSY', 'the oldest silent socket was closed to make room');
  t.match(errOf(first).message, 'has not completed hello');
  // the others are closed at their deadline
  for (const r of silent.slice(1)) {
    const m = await r.next(3000);
    t.equal(errOf(m).code, 'ETIMEDOUT');
    t.match(errOf(m).message, 'no successful hello within 800 ms');
    t.equal(await r.next(), null);
  }
  const took = performance.now() - start;
  t.ok(took < 800 + 1500, `all closed ${Math.round(took)} ms after connecting`);
  // a client that said hello is never timed out
  await sleep(1000);
  t.ok(await c.ping(), 'the client with a session is still served');
  await c.disconnect();
});

t.test('a client that never reads cannot hold up shutdown', async (t) => {
  const d = await startDaemon(t, { logLevel: 'info', config: { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, shutdownTimeoutMs: 1000 } } });
  const r = await unreadReads(d.socket, 50);
  await sleep(500);
  const t0 = performance.now();
  const exit = await d.stop('SIGTERM');
  const took = performance.now() - t0;
  t.equal(exit.code, 0, 'clean exit');
  t.ok(took < 1000 + 1500, `stopped ${Math.round(took)} ms after SIGTERM (shutdownTimeoutMs 1000)`);
  r.sock.destroy();
});
