/**
 * The package as a user gets it: `npm pack` of this checkout, the tarball
 * unpacked, installed into scratch projects, and run.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, openSync, readSync, closeSync, existsSync } from 'node:fs';
import { join, dirname, relative, resolve } from 'node:path';

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * The environment of a user's shell: without the npm_* variables that
 * `npm test` exports (npm_config_local_prefix would point a nested npm at
 * this checkout) and without tap's NODE_OPTIONS and coverage.
 */
export function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'NODE_OPTIONS' || k === 'NODE_V8_COVERAGE' || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return { ...env, NO_COLOR: '1', npm_config_update_notifier: 'false', ...extra };
}

/** Run a command to completion in cwd with userEnv(); SIGKILL after timeoutMs. */
export function run(cmd: string, args: string[], opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<Ran> {
  const t0 = Date.now();
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: userEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs} ms: ${cmd} ${args.join(' ')}\n${stderr}`));
    }, timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** npm's way of saying it could not reach the registry (nothing to do with the package). */
export const OFFLINE = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ENOTCACHED)\b/;

/** Every file under dir, relative to it, with '/' separators. */
export function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)).split('\\').join('/'));
  }
  return out.sort();
}

/** The file starts with the ELF magic (0x7f 'E' 'L' 'F'): a native binary or object. */
export function isElf(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    closeSync(fd);
  }
}

/**
 * Source maps in the unpacked package whose sources are not shipped (and not
 * embedded): each as "map: the missing source".
 */
export function danglingMaps(root: string, files: string[]): string[] {
  const bad: string[] = [];
  for (const f of files.filter((f) => f.endsWith('.map'))) {
    const abs = join(root, f);
    const m = JSON.parse(readFileSync(abs, 'utf8')) as { sources?: string[]; sourceRoot?: string; sourcesContent?: unknown[] };
    (m.sources ?? []).forEach((s, i) => {
      if (m.sourcesContent?.[i] != null) return; // embedded: nothing to find
      const src = resolve(dirname(abs), m.sourceRoot ?? '', s);
      if (!existsSync(src)) bad.push(`${f}: source ${relative(root, src)} is not in the package`);
    });
  }
  return bad;
}
