/**
 * Shared by the zero-copy end-to-end tests: mapper processes
 * (test/fixtures/mapper.mjs), a Python program that gets a buffer's fd over
 * a socketpair (test/fixtures/map_fd.py), a Node child that maps an
 * inherited fd, the system calls of the test process and pool figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, Proc, pattern } from './procs.js';
import { ROOT, tempDir, unhookedNode } from './daemon.js';
import { native, type Native } from '../../daemon/lib/native.js';
import type { BufferClient } from '../../client/index.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const PAGE = 4096;

/** The test process's own system calls (koffi): a test that needs them fails without them. */
export function sys(): Native {
  const n = native();
  if (n === null) throw new Error('native system calls are not available in the test process');
  return n;
}

/** sha256 of the fixtures' pattern over [offset, offset + length), a MiB at a time. */
export function patternSha(length: number, seed: number, offset = 0): string {
  const h = createHash('sha256');
  for (let at = 0; at < length; at += MiB) h.update(pattern(Math.min(MiB, length - at), seed, offset + at));
  return h.digest('hex');
}

/** A mapper.mjs process connected as `name`, its working directory a temp dir (a process that faults leaves nothing behind). */
export async function spawnMapper(t: Teardown, socket: string, name: string, env: Record<string, string> = {}): Promise<Proc & { id: number }> {
  const [cmd, argv] = unhookedNode([join(FIXTURES, 'mapper.mjs'), socket, name]);
  const child = spawn(cmd, argv, {
    cwd: tempDir(t, 'bufferd-mapper-'),
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const p = new Proc(child, `mapper.mjs ${name}`);
  t.teardown(() => p.kill('SIGKILL'));
  p.ready = await p.wait((l) => l['ready'] === true, 'ready');
  return Object.assign(p, { id: p.ready['clientId'] as number });
}

/** Debian's python3 when there, else the one on PATH; `noPython` is a skip reason or false. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const probe = spawnSync(PYTHON, ['-c', 'import socket; socket.recv_fds'], { encoding: 'utf8' });
export const noPython: string | false = probe.error !== undefined || probe.status !== 0 ? `${PYTHON} with socket.recv_fds (3.9+) is not available` : false;

export type PyResult = Record<string, unknown> & { op: string; ok: boolean };

/**
 * Run test/fixtures/map_fd.py: it inherits one end of a socketpair as fd 3,
 * the test sends {ops} with `fd` attached on the other end (SCM_RIGHTS).
 * Resolves with one result per op, the exit and stderr.
 */
export async function python(fd: number, ops: Record<string, unknown>[], as: { uid: number; gid: number } | null = null): Promise<{ results: PyResult[]; done: boolean; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const n = sys();
  const [mine, theirs] = n.socketpair();
  let child;
  try {
    const script = join(FIXTURES, 'map_fd.py');
    // as another user the script goes on the command line: its checkout may not be readable to that user
    const args = as === null ? [script] : ['-c', readFileSync(script, 'utf8')];
    child = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe', theirs], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, ...(as === null ? {} : { uid: as.uid, gid: as.gid, cwd: '/' }) });
  } finally {
    n.close(theirs);
  }
  try {
    n.sendFds(mine, Buffer.from(JSON.stringify({ ops })), [fd]);
  } finally {
    n.close(mine);
  }
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
  const lines = stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  return { results: lines.filter((l) => typeof l['op'] === 'string') as PyResult[], done: lines.some((l) => l['done'] === true), code, signal, stderr };
}

/**
 * A Node child that maps its inherited fd 3 (`length` bytes, read-only) and
 * reads the byte at `touch`: prints the byte, or dies (SIGBUS past the file).
 */
export async function touchFd(fd: number, length: number, touch: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const script = `
    const { native } = await import(${JSON.stringify(join(ROOT, 'dist', 'daemon', 'lib', 'native.js'))});
    const m = native().map(3, 0, ${length}, false);
    process.stdout.write('mapped\\n');
    process.stdout.write(String(m.bytes[${touch}]) + '\\n');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe', fd], cwd: '/tmp' });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
  return { code, signal, stdout, stderr };
}

/** A pool's row of the status object. */
export async function pool(c: BufferClient, name: string) {
  const p = (await c.status()).pools.find((x) => x.name === name);
  if (p === undefined) throw new Error(`no pool '${name}'`);
  return p;
}

/** What comes back to the pool and the daemon when buffers go: live buffers, the pool's allocated/active bytes. */
export async function usage(c: BufferClient, poolName = 'default'): Promise<{ live: number; allocated: number; active: number; buffers: number }> {
  const s = await c.status();
  const p = s.pools.find((x) => x.name === poolName)!;
  return { live: s.buffers.live, allocated: p.allocated, active: p.active, buffers: p.buffers };
}
