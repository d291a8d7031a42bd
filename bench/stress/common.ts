/**
 * Shared pieces of the stress harness (npm run stress): a part's figures,
 * checks and verdict; the bystander pinger; the status baseline. It also
 * re-exports the rest: processes and scopes (procs.ts), the real daemon
 * (daemonctl.ts), a raw socket client (rawconn.ts), the seeded PRNG (rand.ts).
 *
 * Output follows the benchmarks: one JSON figure per line on stdout, human
 * text on stderr. run.ts prints each part's final `PART: pass|fail (...)`.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isDeepStrictEqual } from 'node:util';
import type { Status } from '../../protocol/status.js';
import { Reporter } from '../harness.js';
import { DIST, kill9, sleep, track, Scope } from './procs.js';

export { MiB, DIST, sleep, track, killAll, exitOf, kill9, Scope } from './procs.js';
export { startDaemon, withFutureKeys, rssOf, type DaemonHandle, type DaemonOptions } from './daemonctl.js';
export { RawConn, type Msg } from './rawconn.js';
export { Rand } from './rand.js';

export interface PartOptions {
  short: boolean;
  seed: number;
}

export interface Verdict {
  pass: boolean;
  reason?: string;
}

// ---------------------------------------------------------------- a part

/** One part: its figures (JSON on stdout), its checks (stderr) and the verdict they make. */
export class Part extends Scope {
  readonly rep: Reporter;
  readonly failures: string[] = [];

  constructor(
    readonly name: string,
    readonly opts: PartOptions,
  ) {
    super();
    this.rep = new Reporter(name);
  }

  fig(c: string, metric: string, value: number, unit: string): void {
    this.rep.figure(c, metric, Number.isFinite(value) ? value : -1, unit);
  }

  log(msg: string): void {
    process.stderr.write(`[${this.name}] ${msg}\n`);
  }

  /** Record a check; a failed one becomes part of the verdict's reason. */
  check(what: string, ok: boolean, detail: string): boolean {
    this.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}`);
    if (!ok) this.failures.push(`${what}: ${detail}`);
    return ok;
  }

  /** Run a sub-check in its own scope; an exception fails that check only. */
  async sub(what: string, body: (s: Scope) => Promise<void>): Promise<void> {
    const s = new Scope();
    const t0 = Date.now();
    this.log(`--- ${what}`);
    try {
      await body(s);
    } catch (e) {
      this.check(what, false, `harness error: ${(e as Error)?.message ?? String(e)}`);
    } finally {
      await s.close();
      this.log(`--- ${what} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  }

  verdict(): Verdict {
    return this.failures.length === 0 ? { pass: true } : { pass: false, reason: this.failures.join('; ') };
  }
}
// ---------------------------------------------------------------- the bystander

export interface PingStats {
  pings: number;
  failures: number;
  errors: string[];
  p50: number;
  p99: number;
  max: number;
  over1s: number;
  reconnects: number;
}

export interface Bystander {
  stop(): Promise<PingStats>;
}

/** A separate process (bystander.js) pinging the daemon all along; stop() returns its figures (ms). */
export async function startBystander(scope: Scope, socket: string, gapMs = 2): Promise<Bystander> {
  const p = track(spawn(process.execPath, [join(DIST, 'bench', 'stress', 'bystander.js'), socket, String(gapMs)], { stdio: ['pipe', 'pipe', 'inherit'] }));
  scope.defer(() => kill9(p));
  p.stdin!.on('error', () => {});
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: p.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) w();
  });
  p.once('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  const waitLine = async (key: string, ms: number) => {
    const end = Date.now() + ms;
    for (;;) {
      const l = lines.find((x) => x[key] !== undefined);
      if (l !== undefined || p.exitCode !== null || p.signalCode !== null || Date.now() > end) return l;
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  if ((await waitLine('ready', 15_000)) === undefined) throw new Error('the bystander did not connect');
  return {
    async stop() {
      p.stdin!.write('stop\n');
      const l = await waitLine('stats', 15_000);
      await kill9(p);
      if (l === undefined) return { pings: 0, failures: 1, errors: ['the bystander reported nothing'], p50: 0, p99: 0, max: 0, over1s: 0, reconnects: 0 };
      return l['stats'] as PingStats;
    },
  };
}

/** Print a bystander's figures. */
export function reportPings(part: Part, c: string, s: PingStats): void {
  part.fig(c, 'bystanderPings', s.pings, 'count');
  part.fig(c, 'bystanderPingP50', s.p50, 'ms');
  part.fig(c, 'bystanderPingP99', s.p99, 'ms');
  part.fig(c, 'bystanderPingMax', s.max, 'ms');
  part.fig(c, 'bystanderPingsOver1s', s.over1s, 'count');
  part.fig(c, 'bystanderPingFailures', s.failures, 'count');
  part.log(
    `bystander: ${s.pings} pings, p50 ${s.p50} ms, p99 ${s.p99} ms, max ${s.max} ms, ${s.over1s} over 1 s, ${s.failures} failed` +
      (s.errors.length > 0 ? ` (${s.errors.join(' | ')})` : ''),
  );
}
// ---------------------------------------------------------------- status

/** Everything status shows of memory, hugepages, pools and live buffers/tokens, without history counters. */
export function present(st: Status) {
  return {
    memory: st.memory,
    hugepages: st.hugepages,
    pools: st.pools.map(({ nmalloc: _a, ndalloc: _b, purges: _c, conversions: _d, conversionCostUs: _e, ...rest }) => rest),
    buffers: { live: st.buffers.live, tokensInFlight: st.buffers.tokensInFlight },
  };
}

/** The JSON paths where two values differ (at most `max`), as "path: a -> b". */
export function differences(a: unknown, b: unknown, max = 6, path = ''): string[] {
  if (isDeepStrictEqual(a, b)) return [];
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return [`${path || '/'}: ${JSON.stringify(a)} -> ${JSON.stringify(b)}`];
  const out: string[] = [];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const name = Array.isArray(a) && (a[Number(k)] as { name?: string } | undefined)?.name !== undefined ? (a[Number(k)] as { name: string }).name : k;
    out.push(...differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], max - out.length, `${path}/${name}`));
    if (out.length >= max) break;
  }
  return out;
}

/** Poll get() until ok() holds or timeoutMs passed; the last value and whether it held. */
export async function poll<T>(get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, everyMs = 200): Promise<{ value: T; ok: boolean; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const value = await get();
    if (ok(value)) return { value, ok: true, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) return { value, ok: false, ms: Date.now() - t0 };
    await sleep(everyMs);
  }
}
