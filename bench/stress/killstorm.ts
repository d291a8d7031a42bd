/**
 * killstorm: hundreds of client processes SIGKILLed at random moments.
 *
 * The daemon runs the embedded default machine. PROCS worker processes
 * (worker.js storm: one connection, four lanes of pipelined alloc / write /
 * register / sync / device.fill / export (short ttlMs) / import / map /
 * dup / close) are started CONCURRENCY at a time, so the 2-core machine is
 * not swamped. A seeded plan kills each one: EARLY_P of them at a random
 * moment after spawn (before, during or just after connecting), the others
 * a random time after they said ready (mid-operation). A bystander process
 * pings all along.
 *
 * Afterwards the status must come back to what it was before the storm:
 * memory, hugepages, pools (without history counters), 0 live buffers and
 * 0 tokens in flight (tokens expire after ≤ 1.5 s; empty chunks decay), and
 * only the observer and the bystander connected — polled until a deadline.
 * Pass = back to baseline and the daemon alive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isDeepStrictEqual } from 'node:util';
import { connect } from '../../client/connect.js';
import type { Status } from '../../protocol/status.js';
import { DIST, Part, Rand, differences, exitOf, kill9, poll, present, reportPings, sleep, startBystander, startDaemon, track, type PartOptions, type Verdict } from './common.js';

const PROCS = { short: 100, full: 2000 };
const CONCURRENCY = 8;
const LANES = 4;
/** Share of processes killed at a random moment after spawn rather than after ready. */
const EARLY_P = 0.25;
const EARLY_KILL_MAX_MS = 200;
const MID_KILL_MAX_MS = 250;
const READY_TIMEOUT_MS = 15_000;
/** How long the daemon gets to be back at its baseline after the last kill. */
const BASELINE_DEADLINE_MS = 25_000;

interface Outcome {
  early: boolean;
  ready: boolean;
  /** Exited by itself (not our SIGKILL). */
  selfExit: string | null;
}

function runOne(socket: string, seed: number, plan: Rand): Promise<Outcome> {
  const early = plan.chance(EARLY_P);
  const delay = early ? plan.int(EARLY_KILL_MAX_MS) : plan.int(MID_KILL_MAX_MS);
  const p: ChildProcess = track(spawn(process.execPath, [join(DIST, 'bench', 'stress', 'worker.js'), socket, String(seed), 'storm', String(LANES)], { stdio: ['ignore', 'pipe', 'ignore'] }));
  const out: Outcome = { early, ready: false, selfExit: null };
  let killed = false;
  const exited = exitOf(p).then((e) => {
    if (!killed) out.selfExit = `${e.code ?? e.signal}`;
  });
  const ready = new Promise<void>((resolve) => {
    createInterface({ input: p.stdout! }).on('line', (l) => {
      if (l.includes('"ready":true')) {
        out.ready = true;
        resolve();
      }
    });
    void exited.then(() => resolve());
  });
  return (async () => {
    if (!early) await Promise.race([ready, sleep(READY_TIMEOUT_MS)]);
    await Promise.race([sleep(delay), exited]);
    killed = true;
    await kill9(p);
    await exited;
    return out;
  })();
}

export async function run(opts: PartOptions): Promise<Verdict> {
  const part = new Part('killstorm', opts);
  const total = PROCS[opts.short ? 'short' : 'full'];
  part.log(`seed ${opts.seed}, ${total} processes, ${CONCURRENCY} at a time`);
  try {
    const d = await startDaemon(part, { logLevel: 'warn' });
    const bystander = await startBystander(part, d.socket);
    const obs = await connect({ socket: d.socket, name: 'observer', useCookie: false });
    part.defer(() => obs.disconnect());
    const base = await obs.status();
    const baseClients = base.clients.length;

    const outcomes: Outcome[] = [];
    let next = 0;
    const t0 = Date.now();
    let lastReport = t0;
    const lane = async () => {
      while (next < total && d.alive()) {
        const i = next++;
        outcomes.push(await runOne(d.socket, opts.seed * 100_003 + i, new Rand(opts.seed * 7_919 + i)));
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          part.log(`${outcomes.length}/${total} processes killed, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    const stormMs = Date.now() - t0;
    const aliveAfterStorm = d.alive();

    let back = { value: base as Status, ok: false, ms: 0 };
    if (aliveAfterStorm) {
      back = await poll(
        () => obs.status(),
        (st) => isDeepStrictEqual(present(st), present(base)) && st.clients.length === baseClients,
        BASELINE_DEADLINE_MS,
        250,
      );
    }
    const stats = await bystander.stop();
    const alive = d.alive();
    const st = back.value;

    part.fig('storm', 'processes', outcomes.length, 'count');
    part.fig('storm', 'killedEarly', outcomes.filter((o) => o.early).length, 'count');
    part.fig('storm', 'killedMidOperation', outcomes.filter((o) => !o.early && o.ready).length, 'count');
    part.fig('storm', 'readyBeforeKill', outcomes.filter((o) => o.ready).length, 'count');
    part.fig('storm', 'exitedByThemselves', outcomes.filter((o) => o.selfExit !== null).length, 'count');
    part.fig('storm', 'durationS', stormMs / 1000, 's');
    part.fig('storm', 'processesPerSec', outcomes.length / (stormMs / 1000), 'procs/s');
    reportPings(part, 'bystander', stats);
    part.fig('after', 'timeToBaseline', back.ok ? back.ms : -1, 'ms');
    part.fig('after', 'liveBuffers', st.buffers.live, 'count');
    part.fig('after', 'tokensInFlight', st.buffers.tokensInFlight, 'count');
    part.fig('after', 'clients', st.clients.length, 'count');
    part.fig('after', 'daemonAlive', alive ? 1 : 0, 'bool');
    const selfExits = outcomes.filter((o) => o.selfExit !== null).map((o) => o.selfExit);
    if (selfExits.length > 0) part.log(`${selfExits.length} workers exited by themselves (codes ${[...new Set(selfExits)].join(',')})`);

    part.check('daemon alive', alive, alive ? `yes, after ${outcomes.length} SIGKILLed clients` : `no (${d.exit?.signal ?? d.exit?.code})`);
    const diffs = back.ok ? [] : differences(present(base), present(st));
    if (!back.ok && st.clients.length !== baseClients) diffs.unshift(`/clients: ${baseClients} -> ${st.clients.length}`);
    part.check(
      'back to baseline',
      back.ok,
      back.ok ? `in ${back.ms} ms: 0 live buffers, 0 tokens in flight, pools and hugepages as before` : `not after ${BASELINE_DEADLINE_MS} ms: ${diffs.slice(0, 6).join('; ')}`,
    );
  } finally {
    await part.close();
  }
  part.rep.table('killstorm');
  return part.verdict();
}
