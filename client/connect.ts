/**
 * Reaching the daemon: the socket path, the admin cookie beside it, the
 * connection and its hello, and the error raised when it can't be reached.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { cookiePathFor, resolveSocketPath } from '../protocol/paths.js';
import { BufferdError } from '../protocol/errors.js';
import { BufferClient } from './client.js';
import type { AcceptFrom } from '../protocol/results.js';

export interface ConnectOptions {
  /** Socket path; default resolution as the daemon's (BUFFERD_SOCKET, XDG_RUNTIME_DIR, /tmp). */
  socket?: string;
  /** Unique client name shown in status and usable as a send target. */
  name?: string;
  /** Authentication token (a token from the daemon's config or token file). Default: none, the grant of this process's uid/gid or anonymous. */
  token?: string;
  /**
   * Present the admin cookie the daemon writes beside its socket (only when
   * no token is given). Default false: an application is who its token or
   * uid makes it, and sees the EPERM a capability it lacks gives.
   * - true: the cookie must be readable by this process; otherwise connect()
   *   rejects with EPERM naming the cookie file.
   * - 'if-readable': present it when readable, else connect as if not asked
   *   (what bufctl does; check session.principal === 'cookie').
   */
  admin?: boolean | 'if-readable';
  /** @deprecated the former name of `admin`: true means `admin: 'if-readable'`. */
  useCookie?: boolean;
  /** Largest frame accepted from the daemon (default 256 MiB). */
  maxFrameBytes?: number;
  /** Connection timeout in ms (default 5000). */
  timeoutMs?: number;
  /**
   * Whom this client accepts handles from (`send`): "any", "none" (default)
   * or client ids and names. Can be changed later with client.accept().
   */
  accept?: AcceptFrom;
}


/** The admin cookie beside the socket, or why it cannot be read. */
function cookieAt(socketPath: string): { token: string } | { why: string } {
  const p = cookiePathFor(socketPath);
  try {
    if (!existsSync(p)) return { why: 'does not exist (the daemon writes it at start unless auth.cookie is false)' };
    const t = readFileSync(p, 'utf8').trim();
    return t === '' ? { why: 'is empty' } : { token: t };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const uid = typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '';
    return { why: err.code === 'EACCES' ? `is not readable by this process${uid}: it is mode 0600, for the daemon's own user` : `cannot be read: ${err.message}` };
  }
}

/** Read the admin cookie written by the daemon beside its socket, if we may. */
export function readCookie(socketPath: string): string | undefined {
  const c = cookieAt(socketPath);
  return 'token' in c ? c.token : undefined;
}

/** Error raised when the daemon cannot be reached at all. */
export class ConnectError extends Error {
  constructor(
    readonly socketPath: string,
    readonly code: string,
    detail: string,
  ) {
    super(`cannot connect to bufferd at ${socketPath} (${code}): ${detail}`);
    this.name = 'ConnectError';
  }
}

/** What connect() does about the admin cookie: nothing, present it when readable, or insist. */
function adminMode(opts: ConnectOptions): false | true | 'if-readable' {
  if (opts.token !== undefined) return false;
  if (opts.admin !== undefined) return opts.admin;
  return opts.useCookie === true ? 'if-readable' : false;
}

/**
 * Connect to the daemon and open a session (hello). The admin cookie is
 * presented only when asked for (`admin`).
 */
export async function connect(opts: ConnectOptions = {}): Promise<BufferClient> {
  const path = resolveSocketPath(opts.socket);
  const admin = adminMode(opts);
  if (admin === false) return openSession(path, opts, opts.token, false);
  const cookie = readCookie(path);
  // a cookie read when only tried may be a dead daemon's: then fall back to no token
  const client = await openSession(path, opts, cookie, admin === 'if-readable');
  if (cookie !== undefined) return client;
  // Socket activation: this connection may have started the daemon, which
  // writes its cookie only then. Having it now, open an admin session instead.
  const late = cookieAt(path);
  if (!('token' in late)) {
    if (admin === 'if-readable') return client;
    await client.disconnect().catch(() => {});
    throw new BufferdError('EPERM', `admin asked for (connect({admin: true})), but the admin cookie ${cookiePathFor(path)} ${late.why}`, { cookie: cookiePathFor(path) });
  }
  // the name must be free again before the new session takes it
  await client.disconnect().catch(() => {});
  for (let attempt = 1; ; attempt++) {
    try {
      return await openSession(path, opts, late.token, admin === 'if-readable');
    } catch (e) {
      if (!(e instanceof BufferdError && e.code === 'EEXIST' && attempt < 5)) throw e;
      await new Promise((r) => setTimeout(r, 10 * attempt));
    }
  }
}

async function openSession(path: string, opts: ConnectOptions, token: string | undefined, fallBack: boolean): Promise<BufferClient> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const sock = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ path });
    const t = setTimeout(() => {
      s.destroy();
      reject(new ConnectError(path, 'ETIMEDOUT', `no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(new ConnectError(path, e.code ?? 'ERROR', e.message));
    });
  });
  const client = new BufferClient(sock, path, opts.maxFrameBytes ?? 256 * 1024 * 1024);
  try {
    try {
      await client.open(opts.name, token, opts.accept);
    } catch (e) {
      // a cookie only tried may be a dead daemon's: fall back to no token
      if (!(fallBack && token !== undefined && e instanceof BufferdError && e.code === 'EPERM')) throw e;
      await client.open(opts.name, undefined, opts.accept);
    }
  } catch (e) {
    sock.destroy();
    throw e;
  }
  return client;
}
