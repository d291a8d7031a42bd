/**
 * handles: passing a handle costs the same whatever the buffer's size, and
 * data through the daemon vs a raw socket with the same framing.
 *
 * 1. Handle passing, 4 KiB ('default') vs 1 GiB ('giant': one 1 GiB
 *    hugepage), interleaved in blocks so machine noise falls on both:
 *    - sendLatencyUs: from A's send() call until B's 'handle' event fires
 *      (stamped in the listener). Each iteration then waits for A's send
 *      answer and B's close of the received handle, untimed, so every timed
 *      send starts with an idle daemon.
 *    - exportImportLatencyUs: A export + B import, both round trips timed;
 *      B's close follows untimed.
 *    p50 after a warm-up; the 1 GiB case carries baseline '4KiB' (ratio ≈ 1
 *    means passing is O(1) in the size).
 *
 * 2. Data throughput of a 64 MiB buffer ('huge'), bytes of payload per second,
 *    baseline 'raw-socket' = bench/echo-server.ts in the matching mode (same
 *    Unix socket type and framing, nothing behind it):
 *    - write: daemon "data in, small answer out" (client.write) vs raw 'ack'
 *      mode, which decodes each request and answers {id, result:{written}}.
 *    - read: daemon "small request in, data out" (client.read) vs raw 'serve'
 *      mode, which answers each request with `length` bytes of bin data.
 *    The raw side is driven by the same BufferClient (the raw server answers
 *    hello), so both sides run the identical client path: frames of
 *    maxDataBytes, all frames of one 64 MiB transfer in flight at once. The
 *    ratio isolates what the daemon adds: validation, handle lookup, and the
 *    copy into / out of its (simulated, page-by-page) memory.
 */
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { type BenchArgs, Reporter, median, prng, startChild, startDaemon } from './harness.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const DATA_BYTES = 64 * MiB;

type Timed<T> = { v: T; t: bigint };

/** A sends to B; B's 'handle' events are stamped on arrival and handed to whoever waits. */
class Pair {
  private waiter: ((e: Timed<number>) => void) | null = null;
  constructor(
    readonly a: BufferClient,
    readonly b: BufferClient,
  ) {
    b.on('handle', (ev) => {
      const t = process.hrtime.bigint();
      const w = this.waiter;
      this.waiter = null;
      if (w !== null) w({ v: ev.handle, t });
      else void b.close(ev.handle); // not expected: nothing is sent untimed
    });
  }

  async send(h: number): Promise<number> {
    const got = new Promise<Timed<number>>((r) => (this.waiter = r));
    const t0 = process.hrtime.bigint();
    const sent = this.a.send(h, this.b.id);
    const ev = await got;
    await Promise.all([sent, this.b.close(ev.v)]);
    return Number(ev.t - t0) / 1000;
  }

  async exportImport(h: number): Promise<number> {
    const t0 = process.hrtime.bigint();
    const { token } = await this.a.export(h);
    const got = await this.b.import(token);
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    await this.b.close(got.handle);
    return us;
  }
}

interface Lat {
  send: number[];
  exportImport: number[];
}

/** n timed iterations per size and metric, in blocks alternating sizes and metrics. */
async function passing(p: Pair, handles: Record<string, number>, n: number, warm: number, block: number): Promise<Record<string, Lat>> {
  const out: Record<string, Lat> = {};
  for (const k of Object.keys(handles)) out[k] = { send: [], exportImport: [] };
  for (const h of Object.values(handles)) {
    for (let i = 0; i < warm; i++) {
      await p.send(h);
      await p.exportImport(h);
    }
  }
  for (let done = 0; done < n; done += block) {
    const m = Math.min(block, n - done);
    for (const [k, h] of Object.entries(handles)) for (let i = 0; i < m; i++) out[k]!.send.push(await p.send(h));
    for (const [k, h] of Object.entries(handles)) for (let i = 0; i < m; i++) out[k]!.exportImport.push(await p.exportImport(h));
  }
  return out;
}

/** Run whole transfers until `ms` have passed; accumulate into acc. */
async function timed(acc: { bytes: number; ms: number }, ms: number, op: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  do {
    await op();
    acc.bytes += DATA_BYTES;
  } while (performance.now() - t0 < ms);
  acc.ms += performance.now() - t0;
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('handles');
  const smoke = args.smoke === true;
  const n = smoke ? 3 : args.quick ? 300 : 2000;
  const warm = smoke ? 1 : args.quick ? 50 : 200;
  const block = smoke ? 3 : args.quick ? 50 : 100;
  const dataMs = smoke ? 1 : args.quick ? 300 : 1000; // timed() runs at least one transfer
  const rounds = smoke ? 1 : args.quick ? 2 : 4;
  const daemon = await startDaemon();
  const ack = await startChild('bench/echo-server.js', (s) => [s, 'ack'], 'ready');
  const serve = await startChild('bench/echo-server.js', (s) => [s, 'serve'], 'ready');
  const clients: BufferClient[] = [];
  try {
    const a = await connect({ socket: daemon.socket, name: 'bench-a' });
    clients.push(a);
    const b = await connect({ socket: daemon.socket, name: 'bench-b', accept: ['bench-a'] });
    clients.push(b);

    // 1. handle passing
    const small = await a.alloc({ pool: 'default', size: 4096 });
    const big = await a.alloc({ pool: 'giant', size: GiB });
    const lat = await passing(new Pair(a, b), { '4KiB': small.handle, '1GiB': big.handle }, n, warm, block);
    const s4 = median(lat['4KiB']!.send);
    const e4 = median(lat['4KiB']!.exportImport);
    rep.figure('4KiB', 'sendLatencyUs', s4, 'us');
    rep.figure('4KiB', 'exportImportLatencyUs', e4, 'us');
    rep.figure('1GiB', 'sendLatencyUs', median(lat['1GiB']!.send), 'us', { name: '4KiB', value: s4 });
    rep.figure('1GiB', 'exportImportLatencyUs', median(lat['1GiB']!.exportImport), 'us', { name: '4KiB', value: e4 });
    await a.close(small.handle);
    await a.close(big.handle);

    // 2. data throughput
    const data = Buffer.allocUnsafe(DATA_BYTES);
    const rnd = prng(42);
    for (let i = 0; i < MiB; i++) data[i] = 1 + Math.floor(rnd() * 255); // non-zero: every page holds memory
    for (let off = MiB; off < DATA_BYTES; off += MiB) data.copy(data, off, 0, MiB);
    const buf = await a.alloc({ pool: 'huge', size: DATA_BYTES });
    const ra = await connect({ socket: ack.socket, useCookie: false });
    clients.push(ra);
    const rs = await connect({ socket: serve.socket, useCookie: false });
    clients.push(rs);
    if (ra.session.limits.maxDataBytes !== a.session.limits.maxDataBytes) throw new Error('handles: raw server frames differ from the daemon\'s');
    // warm-up, and check that the bytes really go through
    await a.write(buf.handle, 0, data);
    if (!(await a.read(buf.handle, 0, DATA_BYTES)).equals(data)) throw new Error('handles: data read back differs from data written');
    if ((await ra.write(1, 0, data)).written !== DATA_BYTES) throw new Error('handles: raw ack server miscounted');
    if ((await rs.read(1, 0, DATA_BYTES)).length !== DATA_BYTES) throw new Error('handles: raw serve server sent a short read');
    const dw = { bytes: 0, ms: 0 };
    const rw = { bytes: 0, ms: 0 };
    const dr = { bytes: 0, ms: 0 };
    const rr = { bytes: 0, ms: 0 };
    for (let i = 0; i < rounds; i++) {
      await timed(dw, dataMs / rounds, () => a.write(buf.handle, 0, data));
      await timed(rw, dataMs / rounds, () => ra.write(1, 0, data));
      await timed(dr, dataMs / rounds, () => a.read(buf.handle, 0, DATA_BYTES));
      await timed(rr, dataMs / rounds, () => rs.read(1, 0, DATA_BYTES));
    }
    const bps = (x: { bytes: number; ms: number }) => x.bytes / (x.ms / 1000);
    rep.figure('data', 'writeBytesPerSec', bps(dw), 'bytes/s', { name: 'raw-socket', value: bps(rw) });
    rep.figure('data', 'readBytesPerSec', bps(dr), 'bytes/s', { name: 'raw-socket', value: bps(rr) });
    await a.close(buf.handle);
  } finally {
    for (const c of clients) await c.disconnect();
    await daemon.stop();
    await ack.stop();
    await serve.stop();
  }
  rep.table(`handles: p50 of ${n} passes per size (ratio = 1 GiB / 4 KiB); ${DATA_BYTES / MiB} MiB transfers (ratio = bufferd / raw socket)`);
  return rep;
}
