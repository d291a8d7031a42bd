/**
 * Benchmark conventions: every figure is one JSON object per line on stdout,
 *   {"bench","case","metric","value","unit","baseline"?,"baselineValue"?,"ratio"?}
 * and each benchmark also prints a readable table (on stderr, so stdout stays
 * machine-readable). Ratios are value / baselineValue, measured in one run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rng } from '../daemon/lib/rng.js';

/** What `npm run bench` passes each bench's run(): --quick, and --smoke (which implies quick; see run.ts). */
export interface BenchArgs {
  quick: boolean;
  /** the smallest parameters that still exercise every case once: the figures are not measurements */
  smoke?: boolean;
}

export interface Figure {
  bench: string;
  case: string;
  metric: string;
  value: number;
  unit: string;
  baseline?: string;
  baselineValue?: number;
  ratio?: number;
}

export class Reporter {
  readonly figures: Figure[] = [];
  constructor(readonly bench: string) {}

  /** Record a figure; with a baseline the ratio is value / baselineValue. */
  figure(c: string, metric: string, value: number, unit: string, baseline?: { name: string; value: number }): Figure {
    const f: Figure = { bench: this.bench, case: c, metric, value: round(value), unit };
    if (baseline !== undefined) {
      f.baseline = baseline.name;
      f.baselineValue = round(baseline.value);
      f.ratio = round(baseline.value === 0 ? 0 : value / baseline.value, 4);
    }
    this.figures.push(f);
    process.stdout.write(`${JSON.stringify(f)}\n`);
    return f;
  }

  /** Print the figures recorded so far as a table on stderr. */
  table(title: string): void {
    const rows = this.figures.map((f) => [
      f.case,
      f.metric,
      fmt(f.value),
      f.unit,
      f.baseline ?? '',
      f.baselineValue !== undefined ? fmt(f.baselineValue) : '',
      f.ratio !== undefined ? f.ratio.toFixed(3) : '',
    ]);
    const head = ['case', 'metric', 'value', 'unit', 'baseline', 'baseline value', 'ratio'];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((c, i) => (i >= 2 && i !== 3 && i !== 4 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ');
    process.stderr.write(`\n${title}\n${line(head)}\n${w.map((n) => '-'.repeat(n)).join('  ')}\n${rows.map(line).join('\n')}\n\n`);
  }
}

function round(v: number, digits = 2): number {
  const k = 10 ** digits;
  return Math.round(v * k) / k;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : String(round(v));
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** The median of unsorted samples; with an even count, the upper of the two middle values. */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}

/**
 * CPU time of a process, all its threads, in µs: the scheduler's own count
 * (/proc/PID/task/N/schedstat, ns), or user + system from /proc/PID/stat in
 * clock ticks of 10 ms where schedstat is missing (a kernel without
 * CONFIG_SCHEDSTATS); null without /proc.
 */
export function cpuUs(pid: number): number | null {
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns)) return ns / 1000;
  } catch {
    // a thread gone between the listing and the read, or no schedstat: the ticks below
  }
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // fields 14 and 15 (utime, stime), counted after the command name
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return null;
  }
}

/** Resident set size of a process, bytes (VmRSS in /proc/<pid>/status). */
export function vmRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Child {
  proc: ChildProcess;
  socket: string;
  dir: string;
  stop(): Promise<void>;
}

/** Children still running: killed when this process exits or is told to stop, pass or fail. */
const running = new Set<ChildProcess>();
let reaping = false;

function reapOnExit(): void {
  if (reaping) return;
  reaping = true;
  const killAll = () => {
    for (const p of running) p.kill('SIGKILL');
  };
  process.once('exit', killAll);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(128 + (sig === 'SIGHUP' ? 1 : sig === 'SIGINT' ? 2 : 15));
    });
  }
}

/** Track a child process so it never outlives this one. */
export function track(proc: ChildProcess): ChildProcess {
  reapOnExit();
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  return proc;
}

/** Start a node script (from dist/) and wait for a line on stdout containing `ready`. */
export function startChild(script: string, args: (socket: string, dir: string) => string[], ready: string): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), 'bufferd-bench-'));
  const socket = join(dir, 'bench.sock');
  const proc = track(spawn(process.execPath, [join(ROOT, 'dist', script), ...args(socket, dir)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (s: Buffer) => {
      out += s.toString();
      if (out.includes(ready)) {
        proc.stdout!.off('data', onData);
        proc.stdout!.resume();
        resolve({
          proc,
          socket,
          dir,
          stop: () =>
            new Promise<void>((r) => {
              proc.once('exit', () => {
                rmSync(dir, { recursive: true, force: true });
                r();
              });
              proc.kill('SIGTERM');
            }),
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready: ${out}`)));
  });
}

/** Start the real daemon; `config` (optional) is written to a temp file. */
export function startDaemon(config?: unknown): Promise<Child> {
  return startChild(
    'daemon/main.js',
    (socket, dir) => {
      const a = ['--socket', socket, '--log-level', 'info'];
      if (config !== undefined) {
        const p = join(dir, 'config.json');
        writeFileSync(p, JSON.stringify(config));
        a.push('--config', p);
      }
      return a;
    },
    '"listening"',
  );
}

/** mulberry32 (the daemon's own PRNG): small, fast, deterministic. */
export const prng = rng;

/** Run dist/bench/<script> in its own process (with --expose-gc and any node flags) and parse the JSON line it prints. */
export function runChildJson<T>(script: string, args: string[], nodeArgs: string[] = []): Promise<T> {
  const p = track(spawn(process.execPath, ['--expose-gc', ...nodeArgs, join(ROOT, 'dist', 'bench', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  return new Promise((resolve, reject) => {
    p.once('error', reject);
    p.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || line === undefined) reject(new Error(`${script} exited with ${code}: ${out}`));
      else resolve(JSON.parse(line) as T);
    });
  });
}
