/**
 * The connection under BufferClient: one Unix socket, frames in and out,
 * requests matched to their answers by id (pipelined, answered in order),
 * events held until someone listens, and every pending call rejected with
 * ECONNRESET when the connection is lost. BufferClient adds the typed ops.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { BufferdError, type WireError } from '../protocol/errors.js';
import { decodeValue, isPlainMap } from '../protocol/codec.js';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { PROTOCOL_VERSION, type OpName, type ParamsOf } from '../protocol/requests.js';
import type { AcceptFrom, HelloResult, ResultOf, HandleEvent, ShutdownEvent, RegistrationEvent, UnregistrationEvent, LeakEvent, ViolationEvent, ActivityEvent, SnapshotEvent, SubscriptionDroppedEvent } from '../protocol/results.js';
import { HeldEvents } from './held.js';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: BufferdError) => void;
  op: string;
}

export interface BufferClientEvents {
  /** Another client sent this one a handle. */
  handle: [HandleEvent];
  /** The daemon is stopping. */
  shutdown: [ShutdownEvent];
  /** A buffer was registered with this client's driver; the event's handle is new in this table. */
  registration: [RegistrationEvent];
  /** A registration with this client's driver was dropped; its handle was closed. */
  unregistration: [UnregistrationEvent];
  /** A registration of a buffer this client holds was dropped without unregister. */
  leak: [LeakEvent];
  /** A coherency violation on a buffer this client holds. */
  violation: [ViolationEvent];
  /** Something happened on a subscribed topic (after subscribe()). */
  activity: [ActivityEvent];
  /** A periodic status snapshot (topic "status"). */
  snapshot: [SnapshotEvent];
  /** The daemon ended this subscription: the client read too slowly. */
  'subscription-dropped': [SubscriptionDroppedEvent];
  /** Every event, whatever its name. */
  event: [Record<string, unknown> & { event: string }];
  /** A connection-level error frame (E2BIG, ETIMEDOUT, EPROTO without an id). */
  'protocol-error': [BufferdError];
  /** The connection closed; the error says why. */
  close: [BufferdError];
}

export class Connection extends EventEmitter<BufferClientEvents> {
  readonly socketPath: string;
  private readonly sock: Socket;
  private readonly reader: FrameReader;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: BufferdError | null = null;
  private hello_: HelloResult | null = null;
  /** Events that arrive while nobody listens for them (e.g. in the same read as hello's answer). */
  private readonly held: HeldEvents;

  /** @internal use connect() */
  constructor(sock: Socket, socketPath: string, maxFrameBytes: number) {
    super();
    this.sock = sock;
    this.socketPath = socketPath;
    this.reader = new FrameReader(maxFrameBytes);
    // a listener attached after connect() resolves still gets what came before it
    this.held = new HeldEvents(
      this as EventEmitter,
      (name) => this.listenerCount(name as keyof BufferClientEvents) > 0 || this.listenerCount('event') > 0,
      (ev) => {
        (this.emit as (name: string, arg: unknown) => boolean)(ev.event, ev);
        this.emit('event', ev);
      },
    );
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', () => {
      /* reported through close */
    });
    sock.on('close', () => this.onClose());
  }

  /** The daemon's answer to hello (client id, limits, capabilities). */
  get session(): HelloResult {
    if (this.hello_ === null) throw new BufferdError('EPROTO', 'session not open');
    return this.hello_;
  }

  get id(): number {
    return this.session.clientId;
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  /**
   * Send one request and wait for its answer. A failure is thrown from here,
   * so its stack is the caller's (V8's async stack traces follow the awaits
   * back to the user's line), not the socket's data handler; nothing is
   * captured on success.
   */
  async request<K extends OpName>(op: K, params: ParamsOf<K>): Promise<ResultOf<K>> {
    try {
      return await this.transmit(op, params);
    } catch (e) {
      if (!(e instanceof BufferdError)) throw e;
      const here = new BufferdError(e.code, e.message, e.details);
      here.stack = `${here.name} [${here.code}]: ${here.message}\n${here.stack?.split('\n').slice(1).join('\n') ?? ''}`;
      throw here;
    }
  }

  private transmit<K extends OpName>(op: K, params: ParamsOf<K>): Promise<ResultOf<K>> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<ResultOf<K>>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, op });
      this.sock.write(encodeFrame({ ...params, id, op }));
    });
  }

  /** @internal */
  async open(name: string | undefined, token: string | undefined, accept?: AcceptFrom): Promise<HelloResult> {
    const params: ParamsOf<'hello'> = { version: PROTOCOL_VERSION };
    if (name !== undefined) params.name = name;
    if (token !== undefined) params.token = token;
    if (accept !== undefined) params.accept = accept;
    this.hello_ = await this.request('hello', params);
    return this.hello_;
  }

  /** End the session; resolves once the connection is closed. */
  disconnect(): Promise<void> {
    if (this.sock.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.sock.once('close', () => resolve());
      this.sock.end();
    });
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      this.fail(new BufferdError('E2BIG', `daemon sent an oversized frame: ${(e as Error).message}`));
      return;
    }
    for (const f of frames) {
      let msg: unknown;
      try {
        msg = decodeValue(f);
      } catch (e) {
        this.fail(new BufferdError('EPROTO', `daemon sent an undecodable frame: ${(e as Error).message}`));
        return;
      }
      this.onMessage(msg);
    }
  }

  private onMessage(msg: unknown): void {
    if (!isPlainMap(msg)) return;
    if (typeof msg['event'] === 'string') {
      this.held.push(msg as Record<string, unknown> & { event: string });
      return;
    }
    const id = msg['id'];
    const err = msg['error'] as WireError | undefined;
    if (typeof id !== 'number') {
      // A connection-level error (E2BIG, ETIMEDOUT, EPROTO on a frame without id).
      if (err !== undefined) this.emit('protocol-error', BufferdError.fromWire(err));
      return;
    }
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    if (err !== undefined) p.reject(BufferdError.fromWire(err));
    else p.resolve(msg['result']);
  }

  private fail(e: BufferdError): void {
    this.closedError ??= e;
    this.sock.destroy();
  }

  private onClose(): void {
    this.closedError ??= new BufferdError('ECONNRESET', `connection to bufferd at ${this.socketPath} was lost`);
    const err = this.closedError;
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(new BufferdError('ECONNRESET', `${err.message} before '${p.op}' was answered`));
    this.emit('close', err);
  }
}
