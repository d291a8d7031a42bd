/**
 * Start the real bufferd (dist/daemon/main.js) as a child process on a
 * temporary socket, and stop it at the end of the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DAEMON = join(ROOT, 'dist', 'daemon', 'main.js');
export const BUFCTL = join(ROOT, 'dist', 'client', 'bufctl.js');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface DaemonOptions {
  /** Config object written to a temp file and passed with --config. */
  config?: unknown;
  args?: string[];
  env?: Record<string, string>;
  /** Socket path (default: <tmpdir>/bufferd.sock); null: pass no --socket. */
  socket?: string | null;
  logLevel?: string;
  /** An executable to run instead of `node dist/daemon/main.js` (an installed bufferd bin). */
  bin?: string;
  /** Start it without tap's coverage hook (see unhookedNode): only where another daemon of the suite covers the same code. */
  unhooked?: boolean;
}

export interface Daemon {
  socket: string;
  dir: string;
  proc: ChildProcess;
  /** Parsed JSON log lines seen so far. */
  logs: Record<string, unknown>[];
  stderr: () => string;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Send a signal and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function tempDir(t: Teardown, prefix = 'bufferd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Process groups started by runNode and startDaemon that may still hold processes. A test
 * stops what it started, pass or fail: each runNode child leads a process
 * group of its own, so what it started (a bench's daemons, say) goes with it
 * when it times out, and whatever is left when this test process ends is
 * killed then.
 */
const groups = new Set<number>();
let reaping = false;

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* the group is gone */
  }
}

function reapAtExit(): void {
  if (reaping) return;
  reaping = true;
  const reap = () => {
    for (const pid of groups) killGroup(pid);
    groups.clear();
  };
  process.on('exit', reap);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      reap();
      process.kill(process.pid, sig);
    });
  }
}

/** Spawn the daemon and resolve once it logs 'listening'. */
export async function startDaemon(t: Teardown, opts: DaemonOptions = {}): Promise<Daemon> {
  const dir = tempDir(t);
  const wanted = opts.socket === undefined ? join(dir, 'bufferd.sock') : opts.socket;
  const args = [DAEMON, '--log-level', opts.logLevel ?? 'debug'];
  if (wanted !== null) args.push('--socket', wanted);
  if (opts.config !== undefined) {
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify(opts.config));
    args.push('--config', cfg);
  }
  args.push(...(opts.args ?? []));
  reapAtExit();
  const [cmd, argv] = opts.bin !== undefined ? [opts.bin, args.slice(1)] : opts.unhooked === true ? unhookedNode(args) : [process.execPath, args];
  // a group of its own: killed with this test process if a teardown never runs
  const proc = spawn(cmd, argv, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (proc.pid !== undefined) {
    const pid = proc.pid;
    groups.add(pid);
    proc.once('exit', () => groups.delete(pid));
  }
  const logs: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let err = '';
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (s: string) => {
    buf += s;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      logs.push(l);
      for (const w of [...waiters]) {
        if (w.pred(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000) => {
    const seen = logs.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon log line not seen in ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`daemon exited before the expected log line; stderr: ${err}`));
      });
    });
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    const r = await exited;
    clearTimeout(timer);
    return r;
  };
  t.teardown(async () => {
    await stop('SIGTERM');
  });
  // a safety net, not a clock: on a loaded 2-core machine a start has taken over 10 s
  const listening = await waitForLog((l) => l['msg'] === 'listening', 90_000);
  const socket = listening['socket'] as string;
  return { socket, dir, proc, logs, stderr: () => err, waitForLog, stop, exited };
}

/**
 * `node ...args` without tap's per-process hook (coverage and process
 * info): tap's spawn wrapper puts the hook back into a node child's
 * NODE_OPTIONS whatever env it is given, so the child starts through
 * env(1), which drops it before exec'ing node (same pid). The hook costs a
 * process ~0.8 s of CPU and slows its hot loops; for a process whose code
 * other tests already cover (benches, scripted client fixtures) that is
 * suite time for nothing.
 */
export function unhookedNode(args: string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, ...args]];
}

/** Run a node script to completion, collecting its output; on timeout it and everything it started are killed. `unhooked`: see unhookedNode. */
export function runNode(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number; input?: string; unhooked?: boolean } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  reapAtExit();
  return new Promise((resolve, reject) => {
    const [cmd, argv] = opts.unhooked === true ? unhookedNode(args) : [process.execPath, args];
    const p = spawn(cmd, argv, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const pid = p.pid;
    if (pid !== undefined) groups.add(pid);
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      if (pid !== undefined) killGroup(pid);
      reject(new Error(`timed out after ${opts.timeoutMs ?? 30_000} ms (it and what it started were killed): node ${args.join(' ')}\n${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      // anything it left behind in its group goes too
      if (pid !== undefined) {
        killGroup(pid);
        groups.delete(pid);
      }
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(opts.input ?? '');
  });
}

/** Run bufctl against a socket. */
export function bufctl(socket: string | null, ...args: string[]) {
  const a = socket === null ? args : ['--socket', socket, ...args];
  return runNode([BUFCTL, ...a], { env: { BUFFERD_SOCKET: '' } });
}

export function writeJson(dir: string, name: string, v: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof v === 'string' ? v : JSON.stringify(v));
  return p;
}
