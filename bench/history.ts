/**
 * history: what buffer histories cost when nobody asks for them, and what
 * they hold.
 *
 * 1. The request path with history on (the default) vs off
 *    (`history.enabled: false`), two daemons side by side, measured in
 *    alternating blocks so machine noise falls on both: 8 concurrent loops
 *    per daemon of alloc 4 KiB → dup → send → close ×2 (the receiver closes
 *    its copy) — every op a recorded one, with a free at the end. Figure:
 *    loop iterations per second (the median block of each side: wall-clock
 *    rates swing with other processes), and the daemon's CPU time per
 *    iteration (/proc/PID/stat, 10 ms ticks: the figure to trust on a loaded
 *    machine; over all blocks, since one block may be only a few ticks); 'history on'
 *    carries baseline 'history off' (ratio ≈ 1: recording costs nothing
 *    measurable).
 * 1b. The same life through the daemon's dispatcher in one process (no
 *    sockets, history-inproc.ts): two contexts, on and off, alternating
 *    blocks of 50 lives; CPU per life. A life costs a quarter of the
 *    daemon's there, so the recording's share shows ~4× larger.
 * 2. `graph` over 1000 live buffers and `history` of one: latency, p50.
 * 3. The journal alone, in a child with --expose-gc: heap bytes per kept
 *    event (200k events of the daemon's shapes), and the time to record one
 *    in the steady state of the default bounds (freed ring full) — against
 *    the daemon's CPU per op above, what recording can add at most.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { type BenchArgs, Reporter, median, startDaemon, runChildJson, ROOT, type Child } from './harness.js';

interface Side {
  name: string;
  daemon: Child;
  a: BufferClient;
  b: BufferClient;
  /** Per block: lives per second, and the daemon's CPU µs per life. */
  rates: number[];
  /** The daemon's CPU ms and the lives of all measured blocks. */
  cpuMs: number;
  lives: number;
}

/** user + system CPU time of a process, ms (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function side(name: string, config: unknown): Promise<Side> {
  const daemon = await startDaemon(config);
  const a = await connect({ socket: daemon.socket, name: 'bench-a', useCookie: false });
  const b = await connect({ socket: daemon.socket, name: 'bench-b', accept: ['bench-a'], useCookie: false });
  b.on('handle', (ev) => void b.close(ev.handle));
  return { name, daemon, a, b, rates: [], cpuMs: 0, lives: 0 };
}

/** One iteration: a buffer's short life, every op one the journal records. */
async function life(s: Side): Promise<void> {
  const h = await s.a.alloc({ pool: 'default', size: 4096 });
  const d = await s.a.dup(h.handle);
  await s.a.send(d.handle, s.b.id);
  await s.a.close(d.handle);
  await s.a.close(h.handle);
}

async function block(s: Side, ms: number, loops: number): Promise<void> {
  const t0 = performance.now();
  const c0 = cpuMs(s.daemon.proc.pid!);
  let n = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (performance.now() - t0 < ms) {
        await life(s);
        n++;
      }
    }),
  );
  s.rates.push(n / ((performance.now() - t0) / 1000));
  s.cpuMs += cpuMs(s.daemon.proc.pid!) - c0;
  s.lives += n;
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('history');
  const smoke = args.smoke === true;
  // smoke: blocks long enough that the daemon's CPU (10 ms ticks) is not 0
  const rounds = smoke ? 2 : args.quick ? 16 : 40;
  const ms = smoke ? 100 : args.quick ? 200 : 400;
  const machine = JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Record<string, unknown>;
  const on = await side('history on', machine);
  const off = await side('history off', { ...machine, history: { enabled: false } });
  try {
    // warm-up, then alternate; the median block of each side (a block the machine's other load fell on does not move it)
    await block(on, smoke ? 20 : 200, 8);
    await block(off, smoke ? 20 : 200, 8);
    for (const s of [on, off]) {
      s.rates.length = 0;
      s.cpuMs = s.lives = 0;
    }
    for (let i = 0; i < rounds; i++) {
      for (const s of i % 2 === 0 ? [on, off] : [off, on]) await block(s, ms, 8);
    }
    rep.figure('history off', 'livesPerSec', median(off.rates), 'lives/s');
    rep.figure('history on', 'livesPerSec', median(on.rates), 'lives/s', { name: 'history off', value: median(off.rates) });
    // the daemon's own CPU per life: what recording adds, whatever else runs on the machine
    // over all blocks, not the median block: a block is a few 10 ms ticks of the daemon's CPU on a loaded box, too coarse alone
    const perLife = (s: Side) => (s.cpuMs * 1000) / s.lives;
    rep.figure('history off', 'daemonCpuUsPerLife', perLife(off), 'us');
    rep.figure('history on', 'daemonCpuUsPerLife', perLife(on), 'us', { name: 'history off', value: perLife(off) });

    // 1b. the same life through the dispatcher in one process, no sockets (history-inproc.ts): the recording's cost ~4× as visible
    const ip = await runChildJson<{ onUsPerLife: number; offUsPerLife: number }>('history-inproc.js', smoke ? ['4', '5'] : args.quick ? ['400', '50'] : ['1600', '50']);
    rep.figure('history off, in-process', 'cpuUsPerLife', ip.offUsPerLife, 'us');
    rep.figure('history on, in-process', 'cpuUsPerLife', ip.onUsPerLife, 'us', { name: 'history off, in-process', value: ip.offUsPerLife });

    // 2. the debugging ops themselves
    const held = [];
    for (let i = 0; i < 1000; i++) held.push(on.a.alloc({ pool: 'default', size: 64 }));
    const hs = await Promise.all(held);
    await on.a.send(hs[0]!.handle, on.b.id);
    const g: number[] = [];
    const h: number[] = [];
    for (let i = 0; i < (smoke ? 1 : args.quick ? 10 : 40); i++) {
      let t0 = performance.now();
      await on.a.graph({ limit: 1000 });
      g.push(performance.now() - t0);
      t0 = performance.now();
      await on.a.history(hs[0]!.buffer);
      h.push(performance.now() - t0);
    }
    rep.figure('graph, 1000 buffers', 'latencyMs', median(g), 'ms');
    rep.figure('history, one buffer', 'latencyMs', median(h), 'ms');
  } finally {
    for (const s of [on, off]) {
      await s.a.disconnect();
      await s.b.disconnect();
      await s.daemon.stop();
    }
  }
  // 3. memory per event
  const mem = await runChildJson<{ bytesPerEvent: number; recordNsPerEvent: number }>('history-child.js', [smoke ? '10000' : args.quick ? '100000' : '200000']);
  rep.figure('journal', 'heapBytesPerEvent', mem.bytesPerEvent, 'bytes');
  rep.figure('journal', 'recordNsPerEvent', mem.recordNsPerEvent, 'ns');
  rep.table('history: request path with history on vs off (ratio = on / off), debugging ops, memory per kept event');
  return rep;
}
