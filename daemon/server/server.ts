/**
 * Layer daemon/server/: the process's shell — the Unix-socket listener (this
 * file), connections (framing, ordering, backpressure, deadlines), dispatch
 * (decode, validate, call the handler), the context it builds
 * (context.ts), the dashboard's HTTP and WebSocket listener, systemd socket
 * activation and notify. It may use ops/, session/, config/, dma/,
 * buffers/, alloc/, memory/, lib/ and protocol/; only daemon/main.ts uses it.
 *
 * The Unix-socket listener: acquires the socket path (refusing when a live
 * daemon answers there, removing a stale socket file), accepts connections,
 * and stops gracefully.
 */
import { createServer, createConnection, type Server as NetServer, type Socket } from 'node:net';
import { lstatSync, unlinkSync, chmodSync } from 'node:fs';
import { encodeFrame } from '../../protocol/frame.js';
import { cookiePathFor } from '../../protocol/paths.js';
import { unixSocketPathOfFd } from './activation.js';
import { CookieRefused, removeStaleCookie } from '../session/cookie.js';
import { FdBox, fdSocketPathFor } from '../session/fdbox.js';
import { native } from '../lib/native.js';
import type { DaemonContext } from './context.js';
import { Connection } from './connection.js';
import { createDispatcher, type Dispatcher } from './dispatch.js';
import { stopJournal } from '../ops/record.js';

export class StartupError extends Error {}

/** Is something accepting connections on this Unix socket path? */
export function probeSocket(path: string, timeoutMs = 1000): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    const t = setTimeout(() => {
      sock.destroy();
      resolve('live');
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(t);
      sock.destroy();
      resolve('live');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(t);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve('stale');
      else reject(err);
    });
  });
}

/** Make the path free to listen on, or explain why it can't be. */
export async function acquireSocketPath(path: string): Promise<{ removedStale: boolean }> {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { removedStale: false };
    throw new StartupError(`cannot inspect socket path ${path}: ${(e as Error).message}`);
  }
  if (!st.isSocket()) throw new StartupError(`${path} exists and is not a socket; refusing to remove it`);
  let state: 'live' | 'stale';
  try {
    state = await probeSocket(path);
  } catch (e) {
    throw new StartupError(`cannot probe existing socket ${path}: ${(e as Error).message}`);
  }
  if (state === 'live') {
    throw new StartupError(`another bufferd is already listening on ${path}; stop it first or choose another path with --socket`);
  }
  unlinkSync(path);
  return { removedStale: true };
}

export class Server {
  private readonly net: NetServer;
  private readonly conns = new Set<Connection>();
  private readonly dispatch: Dispatcher;
  private path: string | null = null;
  /** Serving on a socket systemd passed us: never unlink it. */
  private inherited = false;
  private stopping = false;

  constructor(private readonly ctx: DaemonContext) {
    this.dispatch = createDispatcher(ctx);
    this.net = createServer({ allowHalfOpen: false, pauseOnConnect: false }, (sock) => this.accept(sock));
    this.net.on('error', (err) => ctx.log.error({ err }, 'listener error'));
  }

  get connections(): number {
    return this.conns.size;
  }

  /** Listen on a Unix socket path with the configured file mode. */
  async listen(path: string): Promise<void> {
    const { removedStale } = await acquireSocketPath(path);
    if (removedStale) this.ctx.log.warn({ socket: path }, 'removed stale socket file');
    const mode = this.ctx.config.server.socketMode;
    const oldMask = process.umask(~mode & 0o777);
    try {
      await new Promise<void>((resolve, reject) => {
        const onErr = (err: NodeJS.ErrnoException) => {
          reject(
            err.code === 'EADDRINUSE'
              ? new StartupError(`another bufferd is already listening on ${path}; stop it first or choose another path with --socket`)
              : new StartupError(`cannot listen on ${path}: ${err.message}`),
          );
        };
        this.net.once('error', onErr);
        this.net.listen(path, () => {
          this.net.off('error', onErr);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(path, mode);
    this.path = path;
    this.writeCookie(path);
    this.openFdBox(path);
  }

  /** The fd socket beside the main socket (only with shared memory). A failure leaves fds unavailable, not the daemon. */
  private openFdBox(path: string): void {
    const sys = native();
    if (sys === null || !this.ctx.shared.available) return;
    const at = fdSocketPathFor(path);
    try {
      this.ctx.fdbox = FdBox.open(sys, at, this.ctx.config.server.socketMode, this.ctx.now);
      this.ctx.log.debug({ fdSocket: at }, 'fd socket listening');
    } catch (e) {
      this.ctx.log.warn({ fdSocket: at, err: (e as Error).message }, 'cannot open the fd socket: map and exportFd answer ENOTSUP');
    }
  }

  private writeCookie(path: string): void {
    const cookie = cookiePathFor(path);
    if (!this.ctx.config.auth.cookie) {
      // a cookie beside a socket we just acquired is a dead daemon's: remove it (only if it is one)
      if (removeStaleCookie(cookie)) this.ctx.log.warn({ cookie }, 'removed a stale admin cookie');
      return;
    }
    try {
      this.ctx.auth.writeCookie(cookie);
      this.ctx.log.info({ cookie }, 'admin cookie written (mode 0600)');
    } catch (err) {
      // something that is not our cookie sits there: refuse, as for a socket path that is not a socket
      if (err instanceof CookieRefused) throw new StartupError(`${err.message}; remove it or choose another socket path with --socket`);
      this.ctx.log.warn({ cookie, err: (err as Error).message }, 'could not write the admin cookie; no local admin');
    }
  }

  /**
   * Serve on an inherited listening socket (systemd socket activation: fd 3
   * when LISTEN_PID is ours and LISTEN_FDS ≥ 1). The socket file belongs to
   * systemd: it is neither created nor removed here. The cookie goes beside it.
   */
  async listenFd(fd: number, claimed: string | null): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      const onErr = (err: Error) => reject(new StartupError(`cannot serve on the inherited socket (fd ${fd}): ${err.message}`));
      this.net.once('error', onErr);
      this.net.listen({ fd }, () => {
        this.net.off('error', onErr);
        resolve();
      });
    });
    this.inherited = true;
    // where the socket really is (a --socket/BUFFERD_SOCKET given with it is trusted)
    const found = unixSocketPathOfFd(fd);
    const path = claimed ?? found;
    if (path === null) {
      this.ctx.socketPath = `(inherited fd ${fd})`;
      this.ctx.log.warn({ fd }, 'cannot tell where the inherited socket is bound: no admin cookie (pass --socket PATH to name it)');
      return this.ctx.socketPath;
    }
    this.path = path;
    this.ctx.socketPath = path;
    if (path.startsWith('@')) this.ctx.log.warn({ socket: path }, 'abstract socket: no admin cookie');
    else {
      this.writeCookie(path);
      this.openFdBox(path);
    }
    return path;
  }

  private accept(sock: Socket): void {
    if (this.stopping) {
      sock.destroy();
      return;
    }
    if (this.conns.size >= this.ctx.config.server.maxConnections) {
      const limit = this.ctx.config.server.maxConnections;
      // a socket that never said hello must not keep a client out: the oldest one makes room
      // (as sshd's MaxStartups drops unauthenticated connections first)
      for (const c of this.conns) {
        if (c.opened || c.isClosed) continue;
        this.ctx.log.warn({ limit, client: c.session.id }, 'at maxConnections: closing the oldest connection without hello to make room');
        c.fatal({ code: 'EBUSY', message: `closed to make room for a new connection: the daemon is at maxConnections ${limit} and this connection has not completed hello` });
        this.conns.delete(c);
        break;
      }
    }
    if (this.conns.size >= this.ctx.config.server.maxConnections) {
      const limit = this.ctx.config.server.maxConnections;
      this.ctx.log.warn({ limit }, 'connection refused: too many connections');
      sock.end(encodeFrame({ id: null, error: { code: 'EBUSY', message: `too many connections (maxConnections ${limit})` } }));
      return;
    }
    const c = new Connection(this.ctx, sock, this.dispatch, (x) => this.conns.delete(x));
    this.conns.add(c);
  }

  /** Stop accepting, tell every client, finish in-flight requests, close, remove the socket file. */
  async shutdown(reason: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // from now on a session that ends was ended by the daemon: what it still holds is released, not leaked
    this.ctx.stopping = true;
    const closed = new Promise<void>((r) => this.net.close(() => r()));
    const timeout = this.ctx.config.server.shutdownTimeoutMs;
    await Promise.all([...this.conns].map((c) => c.shutdown(reason, timeout)));
    await closed;
    await stopJournal(this.ctx);
    for (const t of this.ctx.timers) t.stop();
    this.ctx.auth.removeCookie();
    this.ctx.fdbox?.close();
    this.ctx.fdbox = null;
    if (this.path !== null && !this.inherited) {
      try {
        unlinkSync(this.path);
      } catch {
        /* already gone */
      }
    }
  }
}
