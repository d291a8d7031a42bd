/**
 * history: what buffer histories cost when nobody asks for them, and what
 * they hold.
 *
 * 1. The request path with history on (the default) vs off
 *    (`history.enabled: false`), in one daemon switched between the two by
 *    a config reload (SIGHUP) before each block: two daemons differ by
 *    5–10 % in CPU per request with the same config (each process's own JIT
 *    and heap layout), more than what is measured here. Blocks of 8
 *    concurrent loops of alloc 4 KiB → dup → send → close ×2 (the receiver
 *    closes its copy) — every op a recorded one, with a free at the end —
 *    each after an untimed block as long (history switched on starts with
 *    an empty journal: the freed ring fills first), the states in turn.
 *    Figures: loop iterations per second, and the daemon's CPU time per
 *    iteration (all its threads, /proc/PID/task/N/schedstat in ns — the
 *    figure to trust on a busy machine; /proc/PID/stat's 10 ms ticks where
 *    schedstat is missing), each the median block of its state. A third
 *    state, history off again (a reload that changes nothing), is measured
 *    the same way: 'history off, again' against 'history off' is the
 *    harness's own spread, what "not measurable" is judged against.
 * 1b. The same life through the daemon's dispatcher, no sockets
 *    (history-inproc.ts), one side per process as in the daemon, several
 *    processes of each side alternating: CPU per life, the median process of
 *    each side. A life costs a third of the daemon's there, so the
 *    recording's share shows ~3× larger.
 * 2. `graph` over 1000 live buffers and `history` of one: latency, p50.
 * 3. The journal alone, in a child with --expose-gc: heap bytes per kept
 *    event (200k events of the daemon's shapes), and the time to record one
 *    in the steady state of the default bounds (freed ring full) — against
 *    the daemon's CPU per op above, what recording can add at most.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { type BenchArgs, Reporter, cpuUs, median, startDaemon, runChildJson, ROOT, type Child } from './harness.js';

/** The one daemon, switched between the states, its two clients, and what it has logged since the last reload. */
interface Rig {
  daemon: Child;
  a: BufferClient;
  b: BufferClient;
  log: { text: string };
}

/** A state of the daemon: its config (written and reloaded before each of its blocks), and per block lives/s and CPU µs per life. */
interface State {
  name: string;
  config: unknown;
  rates: number[];
  cpus: number[];
}

/** The daemon's CPU time, µs (this bench runs where there is /proc). */
const daemonCpu = (r: Rig): number => cpuUs(r.daemon.proc.pid!) ?? 0;

/** The daemon in this state's config: written where it reads it, reloaded (SIGHUP), back when its log says so. */
async function enter(r: Rig, s: State): Promise<void> {
  writeFileSync(join(r.daemon.dir, 'config.json'), JSON.stringify(s.config));
  const from = r.log.text.length;
  r.daemon.proc.kill('SIGHUP');
  const t0 = performance.now();
  while (!r.log.text.includes('configuration reloaded', from)) {
    if (performance.now() - t0 > 10_000) throw new Error('the daemon did not reload its config within 10 s');
    await new Promise((res) => setTimeout(res, 2));
  }
  r.log.text = r.log.text.slice(-4096);
}

/** One iteration: a buffer's short life, every op one the journal records. */
async function life(r: Rig): Promise<void> {
  const h = await r.a.alloc({ pool: 'default', size: 4096 });
  const d = await r.a.dup(h.handle);
  await r.a.send(d.handle, r.b.id);
  await r.a.close(d.handle);
  await r.a.close(h.handle);
}

/** `loops` concurrent loops of lives for `ms`: lives per second, and the daemon's CPU µs per life. */
async function block(r: Rig, ms: number, loops: number): Promise<{ rate: number; cpu: number }> {
  const t0 = performance.now();
  const c0 = daemonCpu(r);
  let n = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (performance.now() - t0 < ms) {
        await life(r);
        n++;
      }
    }),
  );
  return { rate: n / ((performance.now() - t0) / 1000), cpu: (daemonCpu(r) - c0) / Math.max(1, n) };
}

/** The in-process life (history-inproc.ts), `reps` processes a side, alternating: each side's median process, µs per life. */
async function inProcess(reps: number, lives: number): Promise<{ on: number; off: number }> {
  const on: number[] = [];
  const off: number[] = [];
  for (let i = 0; i < reps; i++) {
    for (const side of i % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
      const r = await runChildJson<{ usPerLife: number }>('history-inproc.js', [side, String(lives)]);
      (side === 'on' ? on : off).push(r.usPerLife);
    }
  }
  return { on: median(on), off: median(off) };
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('history');
  const smoke = args.smoke === true;
  // smoke: blocks long enough that the daemon's CPU (10 ms ticks) is not 0
  const rounds = smoke ? 2 : args.quick ? 16 : 40;
  const ms = smoke ? 100 : args.quick ? 200 : 400;
  const machine = JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Record<string, unknown>;
  const daemon = await startDaemon(machine);
  const a = await connect({ socket: daemon.socket, name: 'bench-a', useCookie: false });
  const b = await connect({ socket: daemon.socket, name: 'bench-b', accept: ['bench-a'], useCookie: false });
  b.on('handle', (ev) => void b.close(ev.handle));
  const rig: Rig = { daemon, a, b, log: { text: '' } };
  daemon.proc.stdout!.setEncoding('utf8').on('data', (d: string) => (rig.log.text += d));
  const state = (name: string, config: unknown): State => ({ name, config, rates: [], cpus: [] });
  const on = state('history on', machine);
  const off = state('history off', { ...machine, history: { enabled: false } });
  const again = state('history off, again', { ...machine, history: { enabled: false } });
  const states = [on, off, again];
  try {
    // warm-up, then the states in turn, each round starting with the next; each timed block after an untimed one in its state; the median block of each
    await block(rig, smoke ? 20 : 300, 8);
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < states.length; k++) {
        const s = states[(i + k) % states.length]!;
        await enter(rig, s);
        await block(rig, ms, 8);
        const m = await block(rig, ms, 8);
        s.rates.push(m.rate);
        s.cpus.push(m.cpu);
      }
    }
    rep.figure('history off', 'livesPerSec', median(off.rates), 'lives/s');
    rep.figure('history on', 'livesPerSec', median(on.rates), 'lives/s', { name: 'history off', value: median(off.rates) });
    rep.figure('history off, again', 'livesPerSec', median(again.rates), 'lives/s', { name: 'history off', value: median(off.rates) });
    // the daemon's own CPU per life: what recording adds, whatever else runs on the machine
    rep.figure('history off', 'daemonCpuUsPerLife', median(off.cpus), 'us');
    rep.figure('history on', 'daemonCpuUsPerLife', median(on.cpus), 'us', { name: 'history off', value: median(off.cpus) });
    rep.figure('history off, again', 'daemonCpuUsPerLife', median(again.cpus), 'us', { name: 'history off', value: median(off.cpus) });

    // 1b. the same life through the dispatcher, no sockets (history-inproc.ts): the recording's cost ~3× as visible
    const ip = await inProcess(smoke ? 1 : args.quick ? 8 : 16, smoke ? 200 : args.quick ? 20_000 : 30_000);
    rep.figure('history off, in-process', 'cpuUsPerLife', ip.off, 'us');
    rep.figure('history on, in-process', 'cpuUsPerLife', ip.on, 'us', { name: 'history off, in-process', value: ip.off });

    // 2. the debugging ops themselves, history on
    await enter(rig, on);
    const held = [];
    for (let i = 0; i < 1000; i++) held.push(a.alloc({ pool: 'default', size: 64 }));
    const hs = await Promise.all(held);
    await a.send(hs[0]!.handle, b.id);
    const g: number[] = [];
    const h: number[] = [];
    for (let i = 0; i < (smoke ? 1 : args.quick ? 10 : 40); i++) {
      let t0 = performance.now();
      await a.graph({ limit: 1000 });
      g.push(performance.now() - t0);
      t0 = performance.now();
      await a.history(hs[0]!.buffer);
      h.push(performance.now() - t0);
    }
    rep.figure('graph, 1000 buffers', 'latencyMs', median(g), 'ms');
    rep.figure('history, one buffer', 'latencyMs', median(h), 'ms');
  } finally {
    await a.disconnect();
    await b.disconnect();
    await daemon.stop();
  }
  // 3. memory per event
  const mem = await runChildJson<{ bytesPerEvent: number; recordNsPerEvent: number }>('history-child.js', [smoke ? '10000' : args.quick ? '100000' : '200000']);
  rep.figure('journal', 'heapBytesPerEvent', mem.bytesPerEvent, 'bytes');
  rep.figure('journal', 'recordNsPerEvent', mem.recordNsPerEvent, 'ns');
  rep.table('history: request path with history on vs off (ratio = on / off), debugging ops, memory per kept event');
  return rep;
}
