/**
 * Child processes and scopes of the stress harness: every child is tracked
 * so that killAll() (and run.ts's exit hook) can SIGKILL what is left, and
 * a Scope releases what was deferred on it, pass or fail.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../harness.js';

export const MiB = 1024 * 1024;
export const DIST = join(ROOT, 'dist');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
