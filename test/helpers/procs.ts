/**
 * Real client processes for the end-to-end tests: spawn a fixture program
 * (test/fixtures/*.mjs, plain ESM on the built client), read the JSON lines
 * it prints, drive it with JSON lines on stdin, kill it at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ROOT, unhookedNode } from './daemon.js';
import { BufferdError } from '../../client/index.js';

export const FIXTURES = join(ROOT, 'test', 'fixtures');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export type Line = Record<string, unknown>;

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Wait for the first line with `ready: true` (default true). */
  waitReady?: boolean;
  timeoutMs?: number;
  /** A file descriptor the child gets as its fd 3. */
  fd3?: number;
}

/** One fixture process and the JSON lines it has printed. */
export class Proc {
  readonly lines: Line[] = [];
  private readonly waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  private err = '';
  private nextId = 1;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ready: Line = {};

  constructor(
    readonly child: ChildProcess,
    readonly label: string,
  ) {
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      buf += s;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let l: Line;
        try {
          l = JSON.parse(text) as Line;
        } catch {
          this.err += `(stdout, not JSON) ${text}\n`;
          continue;
        }
        this.lines.push(l);
        for (const w of [...this.waiters]) {
          if (w.pred(l)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(l);
          }
        }
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => (this.err += s));
    child.stdin?.on('error', () => {
      /* the process may be gone */
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  stderr(): string {
    return this.err;
  }

  /** The first line (already printed or still to come) matching pred. */
  wait(pred: (l: Line) => boolean, what = 'a line', timeoutMs = 30_000): Promise<Line> {
    const seen = this.lines.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label}: ${what} not seen in ${timeoutMs} ms; stderr: ${this.err}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void this.exited.then(({ code, signal }) => {
        setImmediate(() => {
          clearTimeout(timer);
          reject(new Error(`${this.label} exited (${code ?? signal}) before ${what}; stderr: ${this.err}`));
        });
      });
    });
  }

  /** Write one JSON line on the process's stdin. */
  send(msg: Line): void {
    this.child.stdin!.write(`${JSON.stringify(msg)}\n`);
  }

  /** Ask the fixture to run a command and wait for its reply; a daemon error rejects as BufferdError. */
  async cmd<T = unknown>(cmd: string, fields: Line = {}): Promise<T> {
    const id = this.nextId++;
    this.send({ id, cmd, ...fields });
    const r = await this.wait((l) => l['reply'] === id, `the reply to ${cmd} #${id}`);
    if (r['error'] !== undefined) {
      const e = r['error'] as { code: string; message: string; details?: Record<string, unknown> };
      throw new BufferdError(e.code as never, e.message, e.details);
    }
    return r['result'] as T;
  }

  /** Call a BufferClient method in the fixture: proc.call('alloc', {pool, size}). */
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    return this.cmd<T>('call', { method, args });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** Spawn `node test/fixtures/<fixture> ...args`; killed at teardown. */
export async function spawnFixture(t: Teardown, fixture: string, args: string[], opts: SpawnOptions = {}): Promise<Proc> {
  // unhooked: the client library a fixture drives is covered in-process by the tests
  const [cmd, argv] = unhookedNode([join(FIXTURES, fixture), ...args]);
  const child = spawn(cmd, argv, {
    env: { ...process.env, ...opts.env },
    stdio: opts.fd3 === undefined ? ['pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe', opts.fd3],
  });
  const p = new Proc(child, `${fixture} ${args.slice(1).join(' ')}`.trim());
  t.teardown(() => p.kill('SIGKILL'));
  if (opts.waitReady !== false) p.ready = await p.wait((l) => l['ready'] === true, 'ready', opts.timeoutMs);
  return p;
}

/** A scriptable client process (test/fixtures/client.mjs) connected as `name`. */
export async function spawnClient(t: Teardown, socket: string, name: string, env: Record<string, string> = {}): Promise<Proc & { id: number }> {
  const p = await spawnFixture(t, 'client.mjs', [socket, name], { env });
  return Object.assign(p, { id: p.ready['clientId'] as number });
}

/** The distinct byte pattern the fixtures write: a function of the offset and a seed. */
export function pattern(length: number, seed: number, offset = 0): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    b[i] = (x * 31 + seed * 97 + (x >>> 8) * 13 + (x >>> 16)) & 0xff;
  }
  return b;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The error a promise rejects with (fails when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<BufferdError> {
  try {
    await p;
  } catch (e) {
    return e as BufferdError;
  }
  throw new Error('expected a rejection');
}

/** Poll `get` until `ok` holds or the time is up; returns the last value. */
export async function poll<T>(get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await get();
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, everyMs));
    v = await get();
  }
  return v;
}

/** Wait until get() returns something truthy (a value, or true) and return it; throws naming `what` after timeoutMs. */
export async function until<T>(get: () => T | undefined | null | false, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what}: not seen in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A command started without waiting for it (bufctl, or script(1) around it); killed at teardown. */
export interface Running {
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  /** Type into its stdin. */
  write(s: string): void;
  kill(sig: NodeJS.Signals): void;
}

export function startCommand(t: Teardown, cmd: string, args: string[]): Running {
  const p = spawn(cmd, args, { env: { ...process.env, BUFFERD_SOCKET: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  p.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  p.stdin.on('error', () => {});
  const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });
  return { out: () => out, err: () => err, exited, write: (s) => p.stdin.write(s), kill: (s) => p.kill(s) };
}
