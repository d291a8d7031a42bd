/**
 * One client connection: framing in, in-order dispatch, framing out.
 *
 * - Responses leave in request order even when a handler is asynchronous:
 *   while one is pending, later frames wait in a backlog.
 * - Backpressure: when the client stops reading (socket buffer full) or the
 *   backlog grows, the connection stops reading until it drains, so a
 *   pipelining client that never reads costs bounded memory.
 * - A length prefix over the limit gets one E2BIG error frame and a close; a
 *   frame started and not finished within frameTimeoutMs gets ETIMEDOUT and
 *   a close. Nothing a client sends can affect another connection.
 */
import type { Socket } from 'node:net';
import { encodeFrame, FrameReader, FrameTooLargeError } from '../protocol/frame.js';
import type { DaemonContext } from './context.js';
import type { Session } from './clients.js';
import type { Dispatcher, Reply } from './dispatch.js';

const BACKLOG_PAUSE = 256;
/** Subscription events go to the socket only while it holds less than this. */
const STREAM_HIGH_WATER = 64 * 1024;

export class Connection {
  readonly session: Session;
  private readonly reader: FrameReader;
  private readonly backlog: Buffer[] = [];
  private busy = false;
  private closed = false;
  private draining = false;
  private stopping = false;
  private frameTimer: NodeJS.Timeout | null = null;
  private idleWaiters: (() => void)[] = [];
  /** Subscription event frames waiting for the socket to drain. */
  private streamQueue: Buffer[] = [];
  private streamBytes = 0;
  private corked = false;

  constructor(
    private readonly ctx: DaemonContext,
    private readonly socket: Socket,
    private readonly dispatch: Dispatcher,
    private readonly onClose: (c: Connection) => void,
  ) {
    const id = ctx.clients.allocateId();
    const log = ctx.log.child({ client: id });
    this.session = {
      id,
      name: null,
      connectedAt: ctx.now(),
      open: false,
      capabilities: new Set(),
      principal: null,
      handles: null,
      mappings: new Map(),
      nextMapping: 1,
      log,
      send: (ev) => this.write(ev),
      stream: (ev) => this.stream(ev),
      dropStream: () => {
        this.streamQueue = [];
        this.streamBytes = 0;
      },
      buffered: () => this.streamBytes + this.socket.writableLength,
      subscription: null,
    };
    this.reader = new FrameReader(ctx.config.server.maxFrameBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.flushStream();
      this.maybeResume();
    });
    socket.on('error', (err) => log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.handleClose());
    log.debug('connection accepted');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.stopping) return;
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      if (e instanceof FrameTooLargeError) {
        this.session.log.warn({ code: 'E2BIG', length: e.length, limit: e.limit }, 'frame too large; closing connection');
        this.fatal({ id: null, error: { code: 'E2BIG', message: e.message, details: { length: e.length, limit: e.limit } } });
        return;
      }
      throw e;
    }
    for (const f of frames) this.enqueue(f);
    this.armFrameTimer();
  }

  private armFrameTimer(): void {
    const pending = this.reader.pendingBytes > 0;
    if (!pending) {
      if (this.frameTimer !== null) {
        clearTimeout(this.frameTimer);
        this.frameTimer = null;
      }
      return;
    }
    if (this.frameTimer !== null) this.frameTimer.refresh();
    else {
      const ms = this.ctx.config.server.frameTimeoutMs;
      this.frameTimer = setTimeout(() => {
        this.frameTimer = null;
        this.session.log.warn({ code: 'ETIMEDOUT' }, 'incomplete frame timed out; closing connection');
        this.fatal({ id: null, error: { code: 'ETIMEDOUT', message: `incomplete frame: no data for ${ms} ms (frameTimeoutMs)` } });
      }, ms);
      this.frameTimer.unref();
    }
  }

  private enqueue(body: Buffer): void {
    if (this.busy || this.backlog.length > 0) {
      this.backlog.push(body);
      if (this.backlog.length >= BACKLOG_PAUSE) this.pause();
      return;
    }
    this.run(body);
  }

  private run(body: Buffer): void {
    const out = this.dispatch(this.session, body);
    if (out instanceof Promise) {
      this.busy = true;
      void out.then((reply) => {
        this.busy = false;
        this.write(reply);
        this.pump();
      });
    } else {
      this.write(out);
    }
  }

  private pump(): void {
    while (!this.busy && this.backlog.length > 0) this.run(this.backlog.shift()!);
    if (!this.busy && this.backlog.length === 0) {
      this.maybeResume();
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  private write(msg: Reply | ({ event: string } & Record<string, unknown>)): void {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    const ok = this.socket.write(encodeFrame(msg));
    if (!ok) this.pause();
  }

  /**
   * A subscription event: written while the socket holds little, else queued
   * (coalesced on drain). The queue is what events.maxBuffered bounds, and
   * it is freed at once when the subscriber is dropped.
   */
  private stream(ev: ({ event: string } & Record<string, unknown>) | Buffer): void {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    const f = Buffer.isBuffer(ev) ? ev : encodeFrame(ev);
    if (this.streamQueue.length === 0 && this.socket.writableLength < STREAM_HIGH_WATER) {
      // events of one event-loop turn leave in one write (responses written
      // meanwhile join the same write, so the order on the wire holds)
      if (!this.corked) {
        this.corked = true;
        this.socket.cork();
        setImmediate(() => {
          this.corked = false;
          this.socket.uncork();
        });
      }
      this.socket.write(f);
      return;
    }
    this.streamQueue.push(f);
    this.streamBytes += f.length;
  }

  private flushStream(): void {
    const q = this.streamQueue;
    let head = 0;
    while (head < q.length && this.socket.writableLength < STREAM_HIGH_WATER && this.socket.writable) {
      let n = head;
      let bytes = 0;
      while (n < q.length && bytes < STREAM_HIGH_WATER) bytes += q[n++]!.length;
      const chunk = n === head + 1 ? q[head]! : Buffer.concat(q.slice(head, n), bytes);
      head = n;
      this.streamBytes -= bytes;
      this.socket.write(chunk);
    }
    if (head > 0) this.streamQueue = q.slice(head);
  }

  private pause(): void {
    if (!this.draining) {
      this.draining = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (this.draining && !this.socket.writableNeedDrain && this.backlog.length < BACKLOG_PAUSE && !this.stopping) {
      this.draining = false;
      this.socket.resume();
    }
  }

  /** Send one last frame and close. */
  private fatal(msg: Reply): void {
    this.stopping = true;
    this.backlog.length = 0;
    this.socket.pause();
    if (this.socket.writable) this.socket.end(encodeFrame(msg));
    const t = setTimeout(() => this.socket.destroy(), 2000);
    t.unref();
  }

  /** Wait until no request is being handled or queued. */
  private idle(): Promise<void> {
    if (!this.busy && this.backlog.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Graceful stop: tell the client, finish what it already sent, then close.
   * Resolves once the socket is closed (destroyed after timeoutMs at most).
   */
  async shutdown(reason: string, timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.write({ event: 'shutdown', reason });
    await this.idle();
    this.stopping = true;
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, timeoutMs);
      t.unref();
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.socket.end();
    });
  }

  private handleClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.frameTimer !== null) clearTimeout(this.frameTimer);
    this.backlog.length = 0;
    this.streamQueue = [];
    this.streamBytes = 0;
    this.ctx.clients.remove(this.session);
    try {
      this.ctx.sessionClosed(this.session);
    } catch (err) {
      this.session.log.error({ err }, 'error releasing the session');
    }
    this.session.log.info({ event: 'disconnect' }, 'client disconnected');
    this.onClose(this);
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }
}
