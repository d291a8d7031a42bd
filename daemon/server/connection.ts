/**
 * One client connection: framing in, in-order dispatch, framing out.
 *
 * What one connection can make the daemon hold is bounded:
 * - unsent responses: while more than `server.maxUnsentBytes` wait in the
 *   socket for the client to read, its next request waits and its socket is
 *   not read (a pipelining client that never reads holds at most the limit
 *   plus one response);
 * - requests received and not yet run: reading stops at BACKLOG_FRAMES
 *   frames or `maxUnsentBytes` bytes of them;
 * - a frame being received: at most about twice the bytes that arrived
 *   (FrameReader), and it must be complete `frameTimeoutMs` after its first
 *   byte (a deadline, not an idle timer; the clock stops while the daemon
 *   itself is not reading);
 * - a connection that has not completed `hello` within `helloTimeoutMs` is
 *   closed.
 * Responses leave in request order even when a handler is asynchronous.
 * Everything is released when the socket closes. Nothing a client sends can
 * affect another connection.
 */
import type { Socket } from 'node:net';
import { encodeFrame, FrameReader, FrameTooLargeError } from '../../protocol/frame.js';
import type { WireError } from '../../protocol/errors.js';
import type { DaemonContext } from './context.js';
import { newSession, type Session } from '../session/clients.js';
import { dropsConnection } from '../ops/inject.js';
import type { Dispatcher, Reply } from './dispatch.js';
import { peerOf } from '../lib/native.js';

/** Requests received and not yet run, after which the socket is not read. */
const BACKLOG_FRAMES = 256;
/** Subscription events go to the socket only while it holds less than this. */
const STREAM_HIGH_WATER = 64 * 1024;

type EventMsg = { event: string } & Record<string, unknown>;

export class Connection {
  readonly session: Session;
  private readonly reader: FrameReader;
  /** Limits in force when the connection was accepted (a reload applies to new connections). */
  private readonly maxUnsent: number;
  private readonly frameTimeoutMs: number;
  private backlog: Buffer[] = [];
  private backlogBytes = 0;
  private busy = false;
  private closed = false;
  private stopping = false;
  /** The socket is paused by us (backpressure), not by the client. */
  private paused = false;
  private frameTimer: NodeJS.Timeout | null = null;
  /** When the frame being received must be complete (null: none pending). */
  private frameDeadline: number | null = null;
  /** Since when reading has been paused by us (the frame's clock stops meanwhile). */
  private pausedAt = 0;
  private helloTimer: NodeJS.Timeout | null = null;
  private idleWaiters: (() => void)[] = [];
  /** Subscription event frames waiting for the socket to drain. */
  private streamQueue: Buffer[] = [];
  private streamBytes = 0;
  private corked = false;
  /** Events dropped because the client was not reading (violation reports). */
  eventsDropped = 0;
  private readonly afterFlush = () => this.onFlushed();

  constructor(
    private readonly ctx: DaemonContext,
    private readonly socket: Socket,
    private readonly dispatch: Dispatcher,
    private readonly onClose: (c: Connection) => void,
  ) {
    const id = ctx.clients.allocateId();
    const log = ctx.log.child({ client: id });
    const cfg = ctx.config.server;
    this.maxUnsent = cfg.maxUnsentBytes;
    this.frameTimeoutMs = cfg.frameTimeoutMs;
    this.session = newSession(id, ctx.now(), peerOf(socket), log, {
      send: (ev, droppable) => this.event(ev, droppable === true),
      stream: (ev) => this.stream(ev),
      dropStream: () => {
        this.streamQueue = [];
        this.streamBytes = 0;
      },
      buffered: () => this.streamBytes + this.socket.writableLength,
      eventsDropped: () => this.eventsDropped,
    });
    this.reader = new FrameReader(cfg.maxFrameBytes);
    const helloMs = cfg.helloTimeoutMs;
    this.helloTimer = setTimeout(() => {
      this.helloTimer = null;
      if (this.session.open || this.closed) return;
      log.warn({ code: 'ETIMEDOUT', helloTimeoutMs: helloMs }, 'no hello in time; closing connection');
      this.fatal({ code: 'ETIMEDOUT', message: `no successful hello within ${helloMs} ms of connecting (helloTimeoutMs)` });
    }, helloMs);
    this.helloTimer.unref();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.flushStream();
      this.pump();
    });
    socket.on('error', (err) => log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.handleClose());
    log.debug('connection accepted');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Has the client completed hello? */
  get opened(): boolean {
    return this.session.open;
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.stopping) return;
    const before = this.reader.completed;
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      if (e instanceof FrameTooLargeError) {
        this.session.log.warn({ code: 'E2BIG', length: e.length, limit: e.limit }, 'frame too large; closing connection');
        this.fatal({ code: 'E2BIG', message: e.message, details: { length: e.length, limit: e.limit } });
        return;
      }
      throw e;
    }
    for (const f of frames) {
      this.backlog.push(f);
      this.backlogBytes += f.length;
    }
    this.frameClock(this.reader.completed !== before);
    this.pump();
  }

  /** Arm, keep or clear the deadline of the frame being received. */
  private frameClock(frameEnded: boolean): void {
    if (this.reader.pendingBytes === 0) {
      this.clearFrameTimer();
      this.frameDeadline = null;
      return;
    }
    // a frame started in this chunk (none was pending, or one ended and another began)
    if (this.frameDeadline === null || frameEnded) {
      this.frameDeadline = this.ctx.now() + this.frameTimeoutMs;
      this.armFrameTimer();
    }
  }

  private armFrameTimer(): void {
    this.clearFrameTimer();
    const ms = this.frameTimeoutMs;
    this.frameTimer = setTimeout(() => {
      this.frameTimer = null;
      this.session.log.warn({ code: 'ETIMEDOUT', received: this.reader.pendingBytes }, 'frame not completed in time; closing connection');
      this.fatal({ code: 'ETIMEDOUT', message: `incomplete frame: not completed within ${ms} ms of its first byte (frameTimeoutMs); ${this.reader.pendingBytes} bytes received` });
    }, Math.max(0, (this.frameDeadline ?? 0) - this.ctx.now()));
    this.frameTimer.unref();
  }

  private clearFrameTimer(): void {
    if (this.frameTimer !== null) clearTimeout(this.frameTimer);
    this.frameTimer = null;
  }

  /** Run queued requests while the client takes its responses. */
  private pump(): void {
    while (!this.busy && this.backlog.length > 0 && !this.closed) {
      if (this.socket.writableLength >= this.maxUnsent) break; // resumed when the client reads (write callback, drain)
      const body = this.backlog.shift()!;
      this.backlogBytes -= body.length;
      this.run(body);
    }
    if (!this.busy && this.backlog.length === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
    this.flow();
  }

  /** Read the socket only while the connection can take more. */
  private flow(): void {
    const want =
      !this.closed &&
      !this.stopping &&
      this.backlog.length < BACKLOG_FRAMES &&
      this.backlogBytes < this.maxUnsent &&
      this.socket.writableLength < this.maxUnsent;
    if (want === !this.paused) return;
    this.paused = !want;
    if (want) {
      this.socket.resume();
      // the frame's clock runs only while we read
      if (this.frameDeadline !== null) {
        this.frameDeadline += this.ctx.now() - this.pausedAt;
        this.armFrameTimer();
      }
    } else {
      this.socket.pause();
      this.pausedAt = this.ctx.now();
      this.clearFrameTimer();
    }
  }

  private run(body: Buffer): void {
    // the `connection` fault point: the client is dropped instead of answered
    if (dropsConnection(this.ctx, this.session)) {
      this.backlog = []; // what it sent after is never answered, as on any dropped connection
      this.backlogBytes = 0;
      return void this.socket.destroy();
    }
    this.ctx.journal?.request(this.session, body);
    const out = this.ctx.faults.within({ client: this.session.name }, () => this.dispatch(this.session, body));
    if (out instanceof Promise) {
      this.busy = true;
      void out.then((reply) => {
        this.busy = false;
        this.respond(reply);
        this.pump();
      });
    } else {
      this.respond(out);
    }
  }

  private respond(reply: Reply): void {
    if (this.helloTimer !== null && this.session.open) {
      clearTimeout(this.helloTimer);
      this.helloTimer = null;
    }
    const frame = encodeFrame(reply);
    this.ctx.journal?.response(this.session, frame);
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(frame, this.afterFlush);
  }

  /** A response left for the kernel: requests held back for the client to read may run now. */
  private onFlushed(): void {
    if (this.closed) return;
    if (this.backlog.length > 0 || this.paused) this.pump();
  }

  /**
   * An event for this client. Events it caused or must not miss (handles,
   * registrations, shutdown) always go; reports that others can make it
   * receive without end (violations) are dropped and counted while the
   * client leaves more than maxUnsentBytes unread.
   */
  private event(ev: EventMsg, droppable: boolean): void {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    if (droppable && this.socket.writableLength >= this.maxUnsent) {
      if (this.eventsDropped++ === 0) this.session.log.warn({ event: ev.event }, 'client is not reading: dropping its event reports');
      return;
    }
    const frame = encodeFrame(ev);
    this.ctx.journal?.event(this.session, frame, false);
    this.socket.write(frame, this.afterFlush);
  }

  /**
   * A subscription event: written while the socket holds little, else queued
   * (coalesced on drain). The queue is what events.maxBuffered bounds, and
   * it is freed at once when the subscriber is dropped.
   */
  private stream(ev: EventMsg | Buffer): void {
    if (this.closed || this.socket.destroyed || !this.socket.writable) return;
    const f = Buffer.isBuffer(ev) ? ev : encodeFrame(ev);
    this.ctx.journal?.event(this.session, f, true);
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

  /** Send one last error frame (id nil) and close. */
  fatal(error: WireError): void {
    if (this.stopping || this.closed) return;
    this.stopping = true;
    this.backlog = [];
    this.backlogBytes = 0;
    this.clearFrameTimer();
    this.flow();
    if (this.socket.writable) this.socket.end(encodeFrame({ id: null, error }));
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
    const deadline = this.ctx.now() + timeoutMs;
    this.event({ event: 'shutdown', reason }, false);
    // finish what the client sent, unless it does not read its answers in time
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.stopping = true;
    this.backlog = [];
    this.backlogBytes = 0;
    this.flow();
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, Math.max(0, deadline - this.ctx.now()));
      t.unref();
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      // on a Unix socket, written is delivered (it sits in the peer's receive queue): close once
      // everything is written, without waiting for the client to close its end
      this.socket.once('finish', () => this.socket.destroy());
      this.socket.end();
    });
  }

  private handleClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.session.closed = true;
    this.clearFrameTimer();
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.backlog = [];
    this.backlogBytes = 0;
    this.streamQueue = [];
    this.streamBytes = 0;
    this.ctx.clients.remove(this.session);
    this.ctx.journal?.gone(this.session);
    try {
      this.ctx.sessionClosed(this.session);
    } catch (err) {
      this.session.log.error({ err }, 'error releasing the session');
    }
    this.session.log.debug({ event: 'disconnect' }, 'client disconnected');
    this.onClose(this);
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }
}
