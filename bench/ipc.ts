/**
 * ipc: ping round trips through the daemon vs a raw echo server with the
 * same framing and socket type, in the same run and with the same client
 * code (encode request, write, reassemble frame, decode answer).
 *
 * recording: the same pipelined pings through a daemon started with
 * --record (the journal on the bench's temp dir), baseline 'pipelined'; the
 * two daemons are measured in alternating rounds and each case reports its
 * median, so machine noise falls on both; and the daemon's CPU time per
 * request (from /proc), which a loaded machine disturbs far less.
 */
import { createConnection, type Socket } from 'node:net';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { decodeValue } from '../protocol/codec.js';
import { connect } from '../client/connect.js';
import { type BenchArgs, Reporter, cpuUs, median, percentile, startChild, startDaemon, type Child } from './harness.js';

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


interface Round {
  rate: number;
  /** Daemon CPU per request, microseconds (null without /proc). */
  cpuUs: number | null;
}

async function round(p: Pinger, pid: number, ms: number): Promise<Round> {
  const c0 = cpuUs(pid);
  const t0 = performance.now();
  const rate = await pipelined(p, 64, ms);
  const c1 = cpuUs(pid);
  const n = (rate * (performance.now() - t0)) / 1000;
  return { rate, cpuUs: c0 === null || c1 === null ? null : (c1 - c0) / n };
}

/**
 * Pipelined pings with and without a journal, alternating rounds; medians
 * of the rate and of the daemon's CPU time per request (which the machine's
 * load moves far less than the rate).
 */
async function recording(plain: Pinger, plainPid: number, ms: number, rounds: number, warm: number): Promise<{ plain: Round; recording: Round; bytesPerRequest: number }> {
  const rd: Child = await startChild('daemon/main.js', (socket, dir) => ['--socket', socket, '--log-level', 'info', '--record', join(dir, 'journal')], '"listening"');
  try {
    const r = await Pinger.open(rd.socket);
    await r.call({ op: 'hello', version: 1 });
    // as warm as the plain daemon (which ran the unpipelined and pipelined cases): a fresh
    // process's unoptimised code would be charged to the journal
    await unpipelined(r, warm);
    await pipelined(r, 64, ms);
    await new Promise((res) => setTimeout(res, 100));
    const before = statSync(join(rd.dir, 'journal')).size;
    const a: Round[] = [];
    const b: Round[] = [];
    for (let i = 0; i < rounds; i++) {
      a.push(await round(plain, plainPid, ms));
      b.push(await round(r, rd.proc.pid!, ms));
    }
    r.close();
    await new Promise((res) => setTimeout(res, 200));
    const bytes = statSync(join(rd.dir, 'journal')).size - before;
    const n = b.reduce((x, y) => x + (y.rate * ms) / 1000, 0);
    const med = (xs: Round[]): Round => {
      const cpu = xs.map((x) => x.cpuUs).filter((x): x is number => x !== null);
      return { rate: median(xs.map((x) => x.rate)), cpuUs: cpu.length === 0 ? null : median(cpu) };
    };
    return { plain: med(a), recording: med(b), bytesPerRequest: bytes / Math.max(1, n) };
  } finally {
    await rd.stop();
  }
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('ipc');
  const smoke = args.smoke === true;
  const n = smoke ? 100 : args.quick ? 5000 : 20000;
  const ms = smoke ? 20 : args.quick ? 1000 : 3000;
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
    const rec = await recording(d, daemon.proc.pid!, ms, smoke ? 1 : args.quick ? 5 : 7, smoke ? n : 2000);
    rep.figure('recording', 'requestsPerSec', rec.recording.rate, 'req/s', { name: 'pipelined', value: rec.plain.rate });
    if (rec.recording.cpuUs !== null && rec.plain.cpuUs !== null) {
      rep.figure('recording', 'daemonCpuUsPerRequest', rec.recording.cpuUs, 'us', { name: 'pipelined', value: rec.plain.cpuUs });
    }
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
