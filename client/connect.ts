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
  /** Authentication token; default: the admin cookie beside the socket when readable. */
  token?: string;
  /** Read the admin cookie automatically when no token is given (default true). */
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


/** Read the admin cookie written by the daemon beside its socket, if we may. */
export function readCookie(socketPath: string): string | undefined {
  const p = cookiePathFor(socketPath);
  try {
    if (!existsSync(p)) return undefined;
    const t = readFileSync(p, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch {
    return undefined;
  }
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

/** Connect to the daemon and open a session (hello). */
export async function connect(opts: ConnectOptions = {}): Promise<BufferClient> {
  const path = resolveSocketPath(opts.socket);
  const auto = opts.token === undefined && opts.useCookie !== false;
  const cookie = auto ? readCookie(path) : undefined;
  const client = await openSession(path, opts, opts.token ?? cookie, cookie !== undefined);
  // Socket activation: this connection started the daemon, which wrote its
  // cookie only then. Having it now, open an admin session instead.
  if (auto && cookie === undefined && client.session.principal === 'anonymous') {
    const late = readCookie(path);
    if (late !== undefined) {
      // the name must be free again before the new session takes it
      await client.disconnect().catch(() => {});
      for (let attempt = 1; ; attempt++) {
        try {
          return await openSession(path, opts, late, true);
        } catch (e) {
          if (!(e instanceof BufferdError && e.code === 'EEXIST' && attempt < 5)) throw e;
          await new Promise((r) => setTimeout(r, 10 * attempt));
        }
      }
    }
  }
  return client;
}

async function openSession(path: string, opts: ConnectOptions, token: string | undefined, tokenIsCookie: boolean): Promise<BufferClient> {
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
      // a cookie read automatically may be a dead daemon's: fall back to anonymous
      if (!(tokenIsCookie && e instanceof BufferdError && e.code === 'EPERM')) throw e;
      await client.open(opts.name, undefined, opts.accept);
    }
  } catch (e) {
    sock.destroy();
    throw e;
  }
  return client;
}
