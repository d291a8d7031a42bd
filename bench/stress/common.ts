/**
 * Shared pieces of the stress harness (npm run stress): a part's figures,
 * checks and verdict; scopes that stop every process they started; the real
 * daemon as a child process (with config keys the daemon may not know yet
 * left out, and said so); the bystander pinger; a raw socket client; the
 * status baseline; a seeded PRNG.
 *
 * Output follows the benchmarks: one JSON figure per line on stdout, human
 * text on stderr. run.ts prints each part's final `PART: pass|fail (...)`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isDeepStrictEqual } from 'node:util';
import { buildConfig } from '../../daemon/config.js';
import { decodeValue } from '../../protocol/codec.js';
import { FrameReader } from '../../protocol/frame.js';
import type { Status } from '../../protocol/status.js';
import { Reporter, ROOT, vmRss } from '../harness.js';

export { Rand } from './rand.js';

export const MiB = 1024 * 1024;
export const DIST = join(ROOT, 'dist');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface PartOptions {
  short: boolean;
  seed: number;
}

export interface Verdict {
  pass: boolean;
  reason?: string;
}

// ---------------------------------------------------------------- processes

/** Every child process started by the harness that has not exited yet. */
const LIVE = new Set<ChildProcess>();

/** Remember a child so that killAll() (and the exit hook of run.ts) can SIGKILL it. */
export function track<T extends ChildProcess>(p: T): T {
  LIVE.add(p);
  p.once('exit', () => LIVE.delete(p));
  return p;
}

/** SIGKILL every child still running (by its pid). Returns how many. */
export function killAll(): number {
  let n = 0;
  for (const p of LIVE) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        p.kill('SIGKILL');
        n++;
      } catch {
        /* gone */
      }
    }
  }
  return n;
}

export function exitOf(p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
}

/** SIGKILL a child (if still running) and wait for it. */
export async function kill9(p: ChildProcess): Promise<void> {
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await exitOf(p);
}

/** Resources released in reverse order by close(), pass or fail. */
export class Scope {
  private readonly fns: (() => unknown)[] = [];

  defer(fn: () => unknown): void {
    this.fns.push(fn);
  }

  async close(): Promise<void> {
    while (this.fns.length > 0) {
      try {
        await this.fns.pop()!();
      } catch {
        /* cleanup goes on */
      }
    }
  }

  /** A temp directory removed at close. */
  tempDir(prefix = 'bufferd-stress-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.defer(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }
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

// ---------------------------------------------------------------- the daemon

export interface DaemonHandle {
  proc: ChildProcess;
  pid: number;
  socket: string;
  dir: string;
  /** Set once it exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  alive(): boolean;
  /** Log lines at level error or above. */
  errorLines: string[];
  stderr(): string;
  /** SIGTERM, SIGKILL after 5 s. */
  stop(): Promise<void>;
}

export interface DaemonOptions {
  config?: unknown;
  logLevel?: string;
  /** Directory of the socket (reused by a restart); default a new temp dir. */
  dir?: string;
}

/**
 * Set config keys the daemon may not implement yet (JSON paths such as
 * 'server.maxUnsentBytes'). Each key the daemon's own config validation
 * refuses is left out and listed in `unsupported`.
 */
export function withFutureKeys(base: unknown, future: Record<string, unknown>): { config: unknown; unsupported: string[] } {
  const config = structuredClone(base) as Record<string, unknown>;
  const unsupported: string[] = [];
  const remaining = new Map(Object.entries(future));
  for (const [path, v] of remaining) {
    const keys = path.split('.');
    let o = config;
    for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
    o[keys.at(-1)!] = v;
  }
  for (;;) {
    try {
      buildConfig(config, join(tmpdir(), 'stress-config.json'));
      return { config, unsupported };
    } catch (e) {
      const msg = (e as Error).message;
      const hit = [...remaining.keys()].find((p) => msg.includes(`/${p.split('.').join('/')}`));
      if (hit === undefined) throw e;
      remaining.delete(hit);
      unsupported.push(hit);
      const keys = hit.split('.');
      let o = config;
      for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
      delete o[keys.at(-1)!];
    }
  }
}

/** Start dist/daemon/main.js on a temp socket; stopped when `scope` closes. */
export async function startDaemon(scope: Scope, o: DaemonOptions = {}): Promise<DaemonHandle> {
  const dir = o.dir ?? scope.tempDir();
  const socket = join(dir, 'bufferd.sock');
  const args = [join(DIST, 'daemon', 'main.js'), '--socket', socket, '--log-level', o.logLevel ?? 'warn'];
  if (o.config !== undefined) {
    const p = join(dir, `config-${Date.now()}.json`);
    writeFileSync(p, JSON.stringify(o.config));
    args.push('--config', p);
  }
  const proc = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let err = '';
  const errorLines: string[] = [];
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err = (err + s).slice(-8000)));
  const h: DaemonHandle = {
    proc,
    pid: proc.pid!,
    socket,
    dir,
    exit: null,
    alive: () => h.exit === null,
    errorLines,
    stderr: () => err,
    stop: async () => {
      if (h.exit !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exitOf(proc);
      clearTimeout(t);
    },
  };
  proc.once('exit', (code, signal) => (h.exit = { code, signal }));
  scope.defer(() => h.stop());
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    if (/"level":(5\d|60)/.test(line) && errorLines.length < 50) errorLines.push(line.slice(0, 500));
  });
  // ready once the socket accepts (the 'listening' line is below some log levels)
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (h.exit !== null) throw new Error(`daemon exited (${h.exit.code ?? h.exit.signal}) before listening: ${err.trim()}`);
    if (Date.now() > deadline) {
      await kill9(proc);
      throw new Error(`daemon not listening on ${socket} after 15 s: ${err.trim()}`);
    }
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection({ path: socket });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up && h.exit === null) break;
    await sleep(25);
  }
  return h;
}

export function rssOf(d: DaemonHandle): number {
  return d.alive() ? vmRss(d.pid) : 0;
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

// ---------------------------------------------------------------- raw sockets

export type Msg = Record<string, unknown>;

/** A raw socket to the daemon: bytes out as given, every frame in decoded and kept. */
export class RawConn {
  readonly msgs: Msg[] = [];
  /** Messages carrying `id` (responses and connection errors), as opposed to events. */
  replies = 0;
  /** Frames from the daemon that did not decode. */
  undecodable = 0;
  closedAt: number | null = null;
  private readonly reader = new FrameReader(1 << 30);
  private readonly waiters = new Set<() => void>();

  private constructor(readonly sock: Socket) {
    sock.on('data', (c: Buffer) => {
      let frames: Buffer[] = [];
      try {
        frames = this.reader.push(c);
      } catch {
        this.undecodable++;
      }
      for (const f of frames) {
        try {
          const m = decodeValue(f) as Msg;
          this.msgs.push(m);
          if (m !== null && typeof m === 'object' && 'id' in m) this.replies++;
        } catch {
          this.undecodable++;
        }
      }
      this.wake();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closedAt = Date.now();
      this.wake();
    });
  }

  static open(path: string, timeoutMs = 5000): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ path });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timed out'));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new RawConn(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  get closed(): boolean {
    return this.closedAt !== null;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  write(b: Uint8Array): void {
    if (!this.sock.destroyed) this.sock.write(b);
  }

  /** Resolve true once pred() holds (checked on every message and on close), false after timeoutMs. */
  waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(t);
        this.waiters.delete(check);
        resolve(v);
      };
      const check = () => {
        if (pred()) done(true);
      };
      const t = setTimeout(() => done(pred()), timeoutMs);
      this.waiters.add(check);
    });
  }

  /** Error codes received, in order. */
  codes(): string[] {
    return this.msgs.map((m) => (m['error'] as { code?: string } | undefined)?.code).filter((c): c is string => typeof c === 'string');
  }

  destroy(): void {
    this.sock.destroy();
  }
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
