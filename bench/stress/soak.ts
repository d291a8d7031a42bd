/**
 * soak: mixed churn for a bounded time, then everything undone.
 *
 * WORKERS processes (worker.js soak: two connections each, alloc / write /
 * read / close / dup / send / export / import / register / unregister /
 * sync / device.fill / map / unmap between them, seeded) churn against the
 * daemon (embedded default machine) for DURATION. Every SAMPLE_MS the
 * daemon's RSS (/proc/PID/status VmRSS) and status counters are sampled.
 * Then each worker is told to stop: it undoes what it holds (unmap,
 * unregister, close) and disconnects. The status must come back to the
 * baseline taken before the churn (live buffers 0, tokens 0, pools'
 * allocated/active/mapped/dirty..., hugepages, memory: polled with a
 * deadline while tokens expire and empty chunks decay), the workers must
 * have met no unexpected error (EIO, ECONNRESET, EINVAL, EBADF...), and the
 * RSS drift from the second sample to the end must stay under
 * RSS_DRIFT_LIMIT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isDeepStrictEqual } from 'node:util';
import { connect } from '../../client/connect.js';
import { DIST, MiB, Part, differences, kill9, poll, present, rssOf, sleep, startDaemon, track, type PartOptions, type Verdict } from './common.js';

const DURATION_MS = { short: 15_000, full: 5 * 60_000 };
const WORKERS = { short: 3, full: 4 };
const SAMPLE_MS = { short: 2_500, full: 5_000 };
const RSS_DRIFT_LIMIT = 64 * MiB;
const STOP_TIMEOUT_MS = 30_000;
const BASELINE_DEADLINE_MS = 25_000;

interface Worker {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  wait(key: string, ms: number): Promise<Record<string, unknown> | undefined>;
}

function startWorker(socket: string, seed: number): Worker {
  const proc = track(spawn(process.execPath, [join(DIST, 'bench', 'stress', 'worker.js'), socket, String(seed), 'soak'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  proc.stdin!.on('error', () => {});
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* not ours */
    }
  });
  const wait = async (key: string, ms: number) => {
    const end = Date.now() + ms;
    for (;;) {
      const l = lines.find((x) => x[key] !== undefined);
      if (l !== undefined || proc.exitCode !== null || proc.signalCode !== null || Date.now() > end) return l;
      await sleep(50);
    }
  };
  return { proc, lines, wait };
}

export async function run(opts: PartOptions): Promise<Verdict> {
  const part = new Part('soak', opts);
  const mode = opts.short ? 'short' : 'full';
  part.log(`seed ${opts.seed}, ${WORKERS[mode]} worker processes (2 clients each) for ${DURATION_MS[mode] / 1000} s`);
  try {
    const d = await startDaemon(part, { logLevel: 'warn' });
    const obs = await connect({ socket: d.socket, name: 'observer', useCookie: false });
    part.defer(() => obs.disconnect());
    const base = await obs.status();
    const rss0 = rssOf(d);

    const workers = Array.from({ length: WORKERS[mode] }, (_, i) => startWorker(d.socket, opts.seed * 1_000_003 + i));
    part.defer(() => Promise.all(workers.map((w) => kill9(w.proc))));
    for (const w of workers) if ((await w.wait('ready', 15_000)) === undefined) throw new Error('a worker did not connect');

    const samples: { t: number; rss: number; live: number; tokens: number; allocated: number }[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < DURATION_MS[mode] && d.alive()) {
      await sleep(Math.min(SAMPLE_MS[mode], DURATION_MS[mode] - (Date.now() - t0)));
      const st = await obs.status();
      const s = { t: Date.now() - t0, rss: rssOf(d), live: st.buffers.live, tokens: st.buffers.tokensInFlight, allocated: st.pools.reduce((a, p) => a + p.allocated, 0) };
      samples.push(s);
      part.log(`t=${(s.t / 1000).toFixed(0)} s: rss ${(s.rss / MiB).toFixed(1)} MiB, ${s.live} live buffers, ${s.tokens} tokens, ${(s.allocated / MiB).toFixed(1)} MiB allocated`);
    }

    for (const w of workers) w.proc.stdin!.write('stop\n');
    const reports = await Promise.all(workers.map((w) => w.wait('done', STOP_TIMEOUT_MS)));
    const stopped = reports.filter((x) => x !== undefined).length;
    let ops = 0;
    const errors: Record<string, number> = {};
    const unexpected: string[] = [];
    for (const r of reports) {
      if (r === undefined) continue;
      ops += r['ops'] as number;
      for (const [k, v] of Object.entries(r['errors'] as Record<string, number>)) errors[k] = (errors[k] ?? 0) + v;
      unexpected.push(...(r['unexpected'] as string[]));
    }
    await Promise.all(workers.map((w) => Promise.race([new Promise((r) => w.proc.once('exit', r)), sleep(5000)])));

    const back = d.alive()
      ? await poll(
          () => obs.status(),
          (st) => isDeepStrictEqual(present(st), present(base)) && st.clients.length === base.clients.length,
          BASELINE_DEADLINE_MS,
          250,
        )
      : { value: base, ok: false, ms: 0 };
    const rssEnd = rssOf(d);
    const second = samples[1] ?? samples[0];
    const drift = second === undefined ? 0 : rssEnd - second.rss;
    const alive = d.alive();

    part.fig('churn', 'ops', ops, 'count');
    part.fig('churn', 'opsPerSec', ops / (DURATION_MS[mode] / 1000), 'ops/s');
    for (const [k, v] of Object.entries(errors)) part.fig('churn', `errors${k}`, v, 'count');
    part.fig('churn', 'unexpectedErrors', unexpected.length, 'count');
    part.fig('churn', 'peakLiveBuffers', Math.max(0, ...samples.map((s) => s.live)), 'count');
    part.fig('rss', 'start', rss0 / MiB, 'MiB');
    part.fig('rss', 'secondSample', (second?.rss ?? 0) / MiB, 'MiB');
    part.fig('rss', 'max', Math.max(0, ...samples.map((s) => s.rss)) / MiB, 'MiB');
    part.fig('rss', 'end', rssEnd / MiB, 'MiB');
    part.fig('rss', 'driftSecondToEnd', drift / MiB, 'MiB');
    part.fig('after', 'timeToBaseline', back.ok ? back.ms : -1, 'ms');
    part.fig('after', 'liveBuffers', back.value.buffers.live, 'count');
    part.fig('after', 'tokensInFlight', back.value.buffers.tokensInFlight, 'count');

    part.check('daemon alive', alive, alive ? 'yes' : `no (${d.exit?.signal ?? d.exit?.code})`);
    part.check('workers stopped cleanly', stopped === workers.length, `${stopped}/${workers.length} undid their work and reported`);
    part.check('no unexpected errors', unexpected.length === 0, unexpected.length === 0 ? `${ops} ops; expected errors ${JSON.stringify(errors)}` : unexpected.slice(0, 3).join(' | '));
    const diffs = back.ok ? [] : differences(present(base), present(back.value));
    part.check('back to baseline', back.ok, back.ok ? `in ${back.ms} ms` : `not after ${BASELINE_DEADLINE_MS} ms: ${diffs.join('; ')}`);
    part.check('RSS drift', drift < RSS_DRIFT_LIMIT, `${(drift / MiB).toFixed(1)} MiB from the second sample to the end (limit ${RSS_DRIFT_LIMIT / MiB} MiB)`);
  } finally {
    await part.close();
  }
  part.rep.table('soak');
  return part.verdict();
}
