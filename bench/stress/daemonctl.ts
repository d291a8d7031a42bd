/**
 * The real daemon (dist/daemon/main.js) as a child process of the stress
 * harness, on a socket in a temp directory, with config keys it may not
 * know yet left out (and said so).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildConfig } from '../../daemon/config/config.js';
import { vmRss } from '../harness.js';
import { DIST, exitOf, kill9, sleep, track, type Scope } from './procs.js';

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
  // STRESS_DAEMON_NODE_ARGS: node flags for the daemon only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see what a part makes it do)
  const nodeArgs = (process.env['STRESS_DAEMON_NODE_ARGS'] ?? '').split(' ').filter((x) => x !== '');
  const proc = track(spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
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
