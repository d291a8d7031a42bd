/**
 * events: what live event subscribers cost the daemon.
 *
 * Workload: one client doing alloc+close pairs (4 KiB from pool 'default'),
 * 32 lanes each awaiting alloc then close, so 32 requests are in flight; a
 * run is a fixed number of pairs, timed. Each pair publishes an alloc and a
 * free activity event. '0 subscribers' and '10 subscribers' also time
 * pipelined pings (32 in flight), which publish nothing.
 *
 * Subscribers live in separate processes (this file run with --subscriber;
 * 10 processes, one subscriber each; 2 in quick mode, up to 5 each), each a
 * BufferClient connection subscribed to every topic with intervalMs 1000,
 * reading and decoding everything. They connect and subscribe before a run
 * and, after it, ping (answered after every event published before it),
 * report what they got and disconnect. allocEventsReceived = alloc-topic
 * events one subscriber got in a run, ratio to the 2 per pair published:
 * 1 when every alloc and free is sent, far less when aggregated.
 *
 * Three real daemons (dist/daemon/main.js, default machine) run side by side:
 *  - default:    events.allocRate 200: above 200 alloc/free events a second
 *                they are aggregated into one summary every 250 ms.
 *  - every:      events.allocRate 1000000: every event is sent one by one.
 *  - every, 64K: the same with events.maxBuffered 64K.
 *
 * never-reading: a raw socket does hello + subscribe (all topics), reads the
 * answer, then never reads again. The workload runs in chunks of 4096 pairs
 * with a status request between chunks until the daemon reports it dropped
 * (status.events.dropped grew) and at least the fixed number of pairs ran;
 * pairsPerSec covers the whole run, so mostly the time it was attached.
 * dropped = subscribers the daemon dropped per run (1 = always);
 * rssGrowthMB = daemon VmRSS right after the drop (the stuck socket still
 * open) minus before it connected; bytesQueued = what the socket then reads
 * up to the subscription-dropped event: all the daemon still held for it,
 * plus what the kernel and the paused socket held, ratio to maxBuffered.
 * With the default allocRate a stuck subscriber gets a few summaries and one
 * snapshot a second and would take many minutes to reach 8 MiB, so it runs
 * on the every-event daemons. Quick mode runs only the 64K one.
 *
 * daemonCpuUsPerPair / subscribersCpuUsPerPair: CPU time (harness.ts cpuUs:
 * the scheduler's ns, or 10 ms ticks) of the daemon / of all the subscriber processes during a run,
 * per pair: what the daemon does per pair, whatever else uses the machine.
 *
 * Rounds run every case once, in an order shuffled each round (seeded);
 * figures are the median of the rounds. Every ratio is to the 0-subscriber
 * case on the same daemon; '0 subscribers, every event' and '0 subscribers,
 * maxBuffered 64K' are themselves given as ratios to the previous daemon's:
 * same code path at 0 subscribers, so they show the noise between daemons.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { DEFAULT_MACHINE } from '../daemon/config/default-machine.js';
import { TOPIC_NAMES } from '../protocol/ops/events.js';
import { decodeValue, isPlainMap } from '../protocol/codec.js';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { type BenchArgs, Reporter, cpuUs, median, prng, startDaemon, track, vmRss, type Child } from './harness.js';

const WINDOW = 32;
const CHUNK = 4096;
const SUBS = 10;
const POOL = 'default';
const SIZE = 4096;
const MiB = 1024 * 1024;


type DaemonKey = 'default' | 'every' | 'every64K';
interface Case {
  name: string;
  d: DaemonKey;
  subs: number;
  stuck?: boolean;
  ping?: boolean;
  base?: string;
}
const BASE = '0 subscribers';
const BASE_EVERY = '0 subscribers, every event';
const BASE_64K = '0 subscribers, maxBuffered 64K';
const CASES: Case[] = [
  { name: BASE, d: 'default', subs: 0, ping: true },
  { name: '1 subscriber', d: 'default', subs: 1, base: BASE },
  { name: '10 subscribers', d: 'default', subs: SUBS, ping: true, base: BASE },
  { name: BASE_EVERY, d: 'every', subs: 0, base: BASE },
  { name: '1 subscriber, every event', d: 'every', subs: 1, base: BASE_EVERY },
  { name: '10 subscribers, every event', d: 'every', subs: SUBS, base: BASE_EVERY },
  { name: 'never-reading, 8M', d: 'every', subs: 0, stuck: true, base: BASE_EVERY },
  { name: BASE_64K, d: 'every64K', subs: 0, base: BASE_EVERY },
  { name: 'never-reading, 64K', d: 'every64K', subs: 0, stuck: true, base: BASE_64K },
];
const MAX_BUFFERED: Record<DaemonKey, number> = { default: 8 * MiB, every: 8 * MiB, every64K: 64 * 1024 };

/** What one subscriber connection got during a run. */
interface SubReport {
  alloc: number;
  dropped: boolean;
}

/** A subscriber process: "sub SOCKET K" opens K subscribed connections; "unsub" reports each and disconnects them. */
async function subscriberMain(): Promise<void> {
  let conns: { c: BufferClient; got: SubReport }[] = [];
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out('ready');
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, k, ...path] = line.split(' ');
    const socket = path.join(' ');
    if (cmd === 'sub') {
      conns = await Promise.all(
        Array.from({ length: Number(k) }, async () => {
          const c = await connect({ socket });
          const me = { c, got: { alloc: 0, dropped: false } };
          c.on('activity', (ev) => ev.topic === 'alloc' && me.got.alloc++);
          c.on('subscription-dropped', () => (me.got.dropped = true));
          await c.subscribe({ topics: [...TOPIC_NAMES], intervalMs: 1000 });
          me.got = { alloc: 0, dropped: false };
          return me;
        }),
      );
      out('ok');
    } else if (cmd === 'unsub') {
      // a ping's answer comes after every event published before it
      const r = await Promise.all(conns.map(async ({ c, got }) => (await c.ping(), await c.disconnect(), got)));
      conns = [];
      out(JSON.stringify(r));
    }
  }
  process.exit(0);
}

class SubProc {
  private readonly lines: string[] = [];
  private waiter: { resolve: (l: string) => void; reject: (e: Error) => void } | null = null;
  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      const w = this.waiter;
      this.waiter = null;
      if (w !== null) w.resolve(l);
      else this.lines.push(l);
    });
    proc.once('exit', (code) => this.waiter?.reject(new Error(`events: subscriber process exited with ${code}`)));
  }
  static async start(): Promise<SubProc> {
    const proc = track(spawn(process.execPath, [fileURLToPath(import.meta.url), '--subscriber'], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const s = new SubProc(proc);
    const l = await s.next();
    if (l !== 'ready') throw new Error(`events: subscriber process said ${l}`);
    return s;
  }
  private next(): Promise<string> {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift()!);
    if (this.proc.exitCode !== null) return Promise.reject(new Error(`events: subscriber process exited with ${this.proc.exitCode}`));
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
  async sub(socket: string, k: number): Promise<void> {
    this.proc.stdin!.write(`sub ${k} ${socket}\n`);
    const l = await this.next();
    if (l !== 'ok') throw new Error(`events: subscribe failed: ${l}`);
  }
  async unsub(): Promise<SubReport[]> {
    this.proc.stdin!.write('unsub\n');
    return JSON.parse(await this.next()) as SubReport[];
  }
  stop(): Promise<void> {
    return new Promise((r) => {
      if (this.proc.exitCode !== null) return r();
      this.proc.once('exit', () => r());
      this.proc.stdin!.end();
    });
  }
}

/** A raw subscriber that never reads after its subscribe answer. */
class Stuck {
  bytes = 0;
  private readonly reader = new FrameReader(1 << 26);
  private onFrame: (m: Record<string, unknown>) => void = () => {};
  private constructor(private readonly sock: Socket) {
    sock.on('error', () => {}); // a reset after the drop is not this bench's concern
    sock.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
      for (const f of this.reader.push(chunk)) {
        const m = decodeValue(f);
        if (isPlainMap(m)) this.onFrame(m);
      }
    });
  }
  static async open(path: string): Promise<Stuck> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ path }, () => resolve(s));
      s.once('error', reject);
    });
    const st = new Stuck(sock);
    await new Promise<void>((resolve, reject) => {
      st.onFrame = (m) => {
        if (m['error'] !== undefined) reject(new Error(`events: stuck subscriber: ${JSON.stringify(m['error'])}`));
        if (m['id'] === 2) {
          sock.pause(); // from now on, never read
          st.onFrame = () => {};
          resolve();
        }
      };
      sock.write(encodeFrame({ op: 'hello', id: 1, version: 1 }));
      sock.write(encodeFrame({ op: 'subscribe', id: 2, topics: [...TOPIC_NAMES], intervalMs: 1000 }));
    });
    return st;
  }
  /** Read everything queued, up to the subscription-dropped event; total bytes the socket got. */
  drain(): Promise<number> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`events: no subscription-dropped event after ${this.bytes} bytes`)), 30_000);
      this.onFrame = (m) => {
        if (m['event'] !== 'subscription-dropped') return;
        clearTimeout(t);
        this.sock.destroy();
        resolve(this.bytes);
      };
      this.sock.resume();
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

/** n alloc+close pairs (or pings), WINDOW in flight; per second. */
async function timed(c: BufferClient, n: number, ping = false): Promise<number> {
  let left = n;
  const t0 = performance.now();
  const lane = async () => {
    while (left-- > 0) await (ping ? c.ping() : c.close((await c.alloc({ pool: POOL, size: SIZE })).handle));
  };
  await Promise.all(Array.from({ length: WINDOW }, lane));
  return n / ((performance.now() - t0) / 1000);
}

const dropped = async (c: BufferClient) => (await c.status()).events.dropped;

/** CPU time of a process, µs (harness.ts cpuUs; this bench runs where there is /proc). */
const cpu = (pid: number): number => cpuUs(pid) ?? 0;

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('events');
  const quick = args.quick;
  // --smoke runs as --quick: with fewer pairs the daemon's CPU per pair can read 0 where only 10 ms ticks are counted, and the test wants every figure positive
  const n = quick ? 1000 : 10000;
  const rounds = quick ? 1 : 9;
  const cases = CASES.filter((k) => !(quick && k.name === 'never-reading, 8M'));
  const every = { allocRate: 1_000_000 };
  const configs: Record<DaemonKey, unknown> = {
    default: DEFAULT_MACHINE,
    every: { ...DEFAULT_MACHINE, events: every },
    every64K: { ...DEFAULT_MACHINE, events: { ...every, maxBuffered: '64K' } },
  };
  const keys = Object.keys(configs) as DaemonKey[];
  const daemons = {} as Record<DaemonKey, Child>;
  const clients = {} as Record<DaemonKey, BufferClient>;
  const subs: SubProc[] = [];
  /** case → metric → one value per round */
  const vals = new Map<string, Record<string, number[]>>(cases.map((k) => [k.name, {}]));
  const readerDrops = new Map<string, number>();
  const started = performance.now();
  const load = loadavg()[0]!.toFixed(1);
  try {
    const procs = Promise.all(Array.from({ length: quick ? 2 : SUBS }, () => SubProc.start().then((s) => subs.push(s))));
    await Promise.all(
      keys.map(async (k) => {
        daemons[k] = await startDaemon(configs[k]);
        clients[k] = await connect({ socket: daemons[k].socket, name: `bench-events-${k}` });
      }),
    );
    await procs;

    const once = async (k: Case, pairsN: number, record: boolean) => {
      const v = vals.get(k.name)!;
      const put = (m: string, x: number) => record && (v[m] ??= []).push(x);
      const c = clients[k.d];
      const pid = daemons[k.d].proc.pid!;
      // k.subs connections spread over the subscriber processes
      const per = subs.map((_, i) => Math.floor(k.subs / subs.length) + (i < k.subs % subs.length ? 1 : 0));
      const active = subs.filter((_, i) => per[i]! > 0);
      await Promise.all(active.map((s) => s.sub(daemons[k.d].socket, per[subs.indexOf(s)]!)));
      const subCpu = () => active.reduce((x, s) => x + cpu(s.proc.pid!), 0);
      const [d0, rss0, cpu0, sub0] = [await dropped(c), vmRss(pid) / MiB, cpu(pid), subCpu()];
      let done = 0;
      let ms = 0;
      if (k.stuck) {
        const stuck = await Stuck.open(daemons[k.d].socket);
        try {
          // chunks until the daemon dropped it and at least pairsN ran
          let gone = false;
          while (!(gone && done >= pairsN) && done < 50 * pairsN) {
            const m = Math.min(CHUNK, pairsN);
            ms += (m / (await timed(c, m))) * 1000;
            done += m;
            gone = (await dropped(c)) > d0;
          }
          put('rssGrowthMB', vmRss(pid) / MiB - rss0);
          put('dropped', (await dropped(c)) - d0);
          if (gone && record) put('bytesQueued', await stuck.drain());
        } finally {
          stuck.close();
        }
      } else {
        ms = (pairsN / (await timed(c, pairsN))) * 1000;
        done = pairsN;
        if (k.d !== 'default' && k.subs === 0) put('rssGrowthMB', vmRss(pid) / MiB - rss0);
      }
      put('pairsPerSec', done / (ms / 1000));
      put('daemonCpuUsPerPair', (cpu(pid) - cpu0) / done);
      if (k.ping) put('pingsPerSec', await timed(c, pairsN, true));
      if (active.length > 0) await new Promise((r) => setTimeout(r, 300)); // the last 250 ms summary
      const reports = (await Promise.all(active.map((s) => s.unsub()))).flat();
      if (reports.length === 0) return;
      put('allocEventsReceived', reports.reduce((x, r) => x + r.alloc, 0) / reports.length);
      put('subscribersCpuUsPerPair', (subCpu() - sub0) / done);
      if (record) readerDrops.set(k.name, (readerDrops.get(k.name) ?? 0) + reports.filter((r) => r.dropped).length);
    };

    // warm-up: every reading case once, a quarter of the pairs; then rounds, each in a shuffled order
    if (!quick) for (const k of cases) if (!k.stuck) await once(k, n >> 2, false);
    const rnd = prng(0xe7e7);
    for (let r = 0; r < rounds; r++) {
      const order = [...cases];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (const k of order) await once(k, n, true);
    }
  } finally {
    for (const c of Object.values(clients)) await c.disconnect();
    await Promise.all(subs.map((s) => s.stop()));
    await Promise.all(Object.values(daemons).map((d) => d.stop()));
  }

  const med = (c: string, m: string) => median(vals.get(c)![m]!);
  const UNITS: Record<string, string> = {
    pairsPerSec: 'pairs/s',
    daemonCpuUsPerPair: 'us',
    pingsPerSec: 'req/s',
    allocEventsReceived: 'events',
    subscribersCpuUsPerPair: 'us',
    dropped: 'subscribers/run',
    bytesQueued: 'bytes',
    rssGrowthMB: 'MB',
  };
  const notes: string[] = [];
  const busy = ((med(BASE, 'pairsPerSec') * med(BASE, 'daemonCpuUsPerPair')) / 1e4).toFixed(0);
  for (const k of cases) {
    for (const m of Object.keys(UNITS).filter((x) => vals.get(k.name)![x] !== undefined)) {
      let base: { name: string; value: number } | undefined;
      if (k.base !== undefined && ['pairsPerSec', 'daemonCpuUsPerPair', 'pingsPerSec'].includes(m)) base = { name: k.base, value: med(k.base, m) };
      if (m === 'allocEventsReceived') base = { name: 'alloc+free', value: 2 * n };
      if (m === 'bytesQueued') base = { name: 'maxBuffered', value: MAX_BUFFERED[k.d] };
      rep.figure(k.name, m, med(k.name, m), UNITS[m]!, base);
    }
    const lost = readerDrops.get(k.name) ?? 0;
    if (lost > 0) notes.push(`BUG? ${k.name}: ${lost} reading subscriber(s) were dropped`);
    const d = vals.get(k.name)!['dropped'];
    if (d !== undefined && d.some((x) => x !== 1)) notes.push(`BUG? ${k.name}: subscribers dropped per run ${d.join(', ')} (want 1)`);
  }
  rep.table(
    `events: alloc+close pairs (${WINDOW} in flight), ${n} pairs per run, median of ${rounds} round(s) (${((performance.now() - started) / 1000).toFixed(0)} s in all)\n` +
      `ratio = value / baseline; subscribers are separate processes reading everything: on this ${cpus().length}-core machine (load average ${load} at start) they compete with the daemon for CPU\n` +
      `daemonCpuUsPerPair / subscribersCpuUsPerPair: CPU time of the daemon / of all subscriber processes per pair (10 ms ticks); at 0 subscribers the daemon used ${busy}% of a core (pairsPerSec × daemonCpuUsPerPair)\n` +
      'allocEventsReceived: alloc-topic events one subscriber got in a run (ratio 1 = every alloc and free one by one; the default allocRate 200/s aggregates into 250 ms summaries)\n' +
      'never-reading: dropped = daemon drops per run (1 = always); bytesQueued = bytes the stuck socket then read (incl. what the kernel and the paused socket held); rssGrowthMB = daemon VmRSS growth over a run' +
      (notes.length > 0 ? `\n${notes.join('\n')}` : ''),
  );
  return rep;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--subscriber')) {
  subscriberMain().catch((e: unknown) => {
    process.stderr.write(`events subscriber: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  });
}
