/**
 * ipc: ping round trips through the daemon vs a raw echo server with the
 * same framing and socket type, in the same run and with the same client
 * code (encode request, write, reassemble frame, decode answer).
 *
 * recording: the same pipelined pings through a daemon started with
 * --record (the journal on the bench's temp dir), baseline 'pipelined'; the
 * two daemons are measured in alternating rounds and each case reports its
 * median, so machine noise falls on both.
 */
import { createConnection, type Socket } from 'node:net';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { decodeValue } from '../protocol/codec.js';
import { connect } from '../client/connect.js';
import { Reporter, percentile, startChild, startDaemon, type Child } from './harness.js';

class Pinger {
  private readonly reader = new FrameReader(1 << 26);
  private waiting: (() => void)[] = [];
  private nextId = 1;
  constructor(private readonly sock: Socket) {
    sock.on('data', (c: Buffer) => {
      for (const f of this.reader.push(c)) {
        decodeValue(f);
        this.waiting.shift()!();
      }
    });
  }
  static open(path: string): Promise<Pinger> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ path }, () => resolve(new Pinger(s)));
      s.once('error', reject);
    });
  }
  call(msg: Record<string, unknown>): Promise<void> {
    return new Promise((r) => {
      this.waiting.push(r);
      this.sock.write(encodeFrame({ ...msg, id: this.nextId++ }));
    });
  }
  ping(): Promise<void> {
    return this.call({ op: 'ping' });
  }
  close(): void {
    this.sock.destroy();
  }
}

async function unpipelined(p: Pinger, n: number): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 2000; i++) await p.ping();
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await p.ping();
    lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  lat.sort();
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

async function pipelined(p: Pinger, window: number, ms: number): Promise<number> {
  let done = 0;
  let stop = false;
  const t0 = performance.now();
  const lane = async () => {
    while (!stop) {
      await p.ping();
      done++;
      if ((done & 1023) === 0 && performance.now() - t0 >= ms) stop = true;
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return done / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Pipelined pings with and without a journal, alternating rounds; medians. */
async function recording(plain: Pinger, ms: number, rounds: number): Promise<{ plain: number; recording: number; bytesPerRequest: number }> {
  const rd: Child = await startChild('daemon/main.js', (socket, dir) => ['--socket', socket, '--log-level', 'info', '--record', join(dir, 'journal')], '"listening"');
  try {
    const r = await Pinger.open(rd.socket);
    await r.call({ op: 'hello', version: 1 });
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < rounds; i++) {
      a.push(await pipelined(plain, 64, ms));
      b.push(await pipelined(r, 64, ms));
    }
    r.close();
    await new Promise((res) => setTimeout(res, 200));
    const bytes = statSync(join(rd.dir, 'journal')).size;
    const n = b.reduce((x, y) => x + (y * ms) / 1000, 0);
    return { plain: median(a), recording: median(b), bytesPerRequest: bytes / Math.max(1, n) };
  } finally {
    await rd.stop();
  }
}

export async function run(args: { quick: boolean }): Promise<Reporter> {
  const rep = new Reporter('ipc');
  const n = args.quick ? 5000 : 20000;
  const ms = args.quick ? 1000 : 3000;
  const daemon = await startDaemon();
  const echo = await startChild('bench/echo-server.js', (s) => [s], 'ready');
  try {
    const d = await Pinger.open(daemon.socket);
    await d.call({ op: 'hello', version: 1 });
    const e = await Pinger.open(echo.socket);
    // alternate to spread machine noise over both
    const du = await unpipelined(d, n);
    const eu = await unpipelined(e, n);
    const dp = await pipelined(d, 64, ms);
    const ep = await pipelined(e, 64, ms);
    rep.figure('unpipelined', 'p50LatencyUs', du.p50, 'us', { name: 'echo', value: eu.p50 });
    rep.figure('unpipelined', 'p99LatencyUs', du.p99, 'us', { name: 'echo', value: eu.p99 });
    rep.figure('pipelined', 'requestsPerSec', dp, 'req/s', { name: 'echo', value: ep });
    const rec = await recording(d, ms, args.quick ? 3 : 5);
    rep.figure('recording', 'requestsPerSec', rec.recording, 'req/s', { name: 'pipelined', value: rec.plain });
    rep.figure('recording', 'journalBytesPerRequest', rec.bytesPerRequest, 'B');
    // the client library on the same daemon, for reference
    const c = await connect({ socket: daemon.socket });
    const t0 = performance.now();
    const k = n;
    for (let i = 0; i < k; i++) await c.ping();
    rep.figure('client-library', 'meanLatencyUs', ((performance.now() - t0) * 1000) / k, 'us');
    await c.disconnect();
    d.close();
    e.close();
  } finally {
    await daemon.stop();
    await echo.stop();
  }
  rep.table('ipc: ping through bufferd vs raw echo server (ratio = bufferd / echo)');
  return rep;
}
