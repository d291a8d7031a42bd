/**
 * BufferClient: the typed client of bufferd.
 *
 *   const c = await connect({ name: 'app' });
 *   const st = await c.status();
 *   c.on('shutdown', (ev) => ...);
 *   await c.disconnect();
 *
 * Every method returns a promise; requests are pipelined on one connection
 * and answered in order. A daemon error rejects with BufferdError; losing the
 * connection rejects every pending call with code ECONNRESET.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { BufferdError, type WireError } from '../protocol/errors.js';
import { decodeValue, isPlainMap } from '../protocol/codec.js';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { PROTOCOL_VERSION, type OpName, type ParamsOf } from '../protocol/requests.js';
import type { AcceptFrom, HelloResult, PingResult, ResultOf, HandleInfo, HugepagesSetResult, RightName, BufferListing, HandleEvent, ShutdownEvent, MergeResult, RegistrationInfo, RegistrationEvent, UnregistrationEvent, LeakEvent, ViolationEvent, ActivityEvent, SnapshotEvent, SubscriptionDroppedEvent } from '../protocol/results.js';
import type { Status, PoolStatus, DriverStatus } from '../protocol/status.js';
import type { Constraints, CachePolicyName } from '../protocol/attributes.js';
import { DeviceApi } from './device.js';
import { HeldEvents } from './held.js';
import { exportBufferFd, importBufferFd, mapBuffer, type Access, type Mapping } from './mapping.js';
import { chunkedRead, chunkedWrite } from './chunked.js';
import { allocParams, bytes, type AllocOptions, type Size } from './sizes.js';

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

export class BufferClient extends EventEmitter<BufferClientEvents> {
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

  ping(): Promise<PingResult> {
    return this.request('ping', {});
  }

  /** The status object; with `pool`, also that pool's arena and bin tables. */
  status(opts: { pool?: string } = {}): Promise<Status> {
    return this.request('status', opts.pool === undefined ? {} : { pool: opts.pool });
  }

  /** The pools with their attributes and counters. */
  pools(): Promise<{ pools: PoolStatus[] }> {
    return this.request('pools', {});
  }

  /**
   * Allocate a zeroed buffer, from a named pool or `for` the drivers it will
   * visit (their constraints are merged and a fitting pool chosen; `info`
   * says which and why). Sizes in bytes or as strings ("6M", "1G").
   * `minAddress` places every page at or above a physical address (e.g.
   * "4G": above 4 GiB); the buffer then takes whole pages of its own.
   * Resolves to a new handle with all rights.
   */
  async alloc(opts: AllocOptions): Promise<HandleInfo> {
    return this.request('alloc', allocParams(opts));
  }

  /** Drivers with their registrations, IOVA, IOMMU entries, bounce use and leaks. */
  drivers(): Promise<{ drivers: DriverStatus[] }> {
    return this.request('drivers', {});
  }

  /** A driver's constraints. */
  constraints(driver: string): Promise<ResultOf<'constraints'>> {
    return this.request('constraints', { driver });
  }

  /** What-if: merged attributes of several drivers and the pools that satisfy them (EINVAL with the conflicts). */
  merge(drivers: string[]): Promise<MergeResult> {
    return this.request('merge', { drivers });
  }

  /** Register a buffer with a driver; rejects with code EATTR and details.mismatches when it doesn't fit. */
  register(handle: number, driver: string): Promise<RegistrationInfo> {
    return this.request('register', { handle, driver });
  }

  /** Drop a registration (by handle; or pass {buffer} as the client that registered it). */
  unregister(handle: number | { buffer: number }, driver: string): Promise<ResultOf<'unregister'>> {
    return this.request('unregister', typeof handle === 'number' ? { handle, driver } : { buffer: handle.buffer, driver });
  }

  /** Attach this client as a driver (needs the 'driver' capability); it gets 'registration' events. */
  attachDriver(name: string, constraints: Constraints): Promise<ResultOf<'driver.attach'>> {
    return this.request('driver.attach', { name, constraints });
  }

  /** Detach a client driver; its registrations are reported as leaks. */
  detachDriver(name: string): Promise<ResultOf<'driver.detach'>> {
    return this.request('driver.detach', { name });
  }

  /**
   * Begin ('start': sync for the CPU) or finish ('end': sync for the device)
   * CPU access, as DMA_BUF_IOCTL_SYNC. Optionally only part of the buffer.
   */
  sync(handle: number, opts: { phase: 'start' | 'end'; access: 'read' | 'write' | 'rw'; offset?: number; length?: number }): Promise<ResultOf<'sync'>> {
    return this.request('sync', { handle, ...opts });
  }

  /**
   * Map a buffer into this process: `bytes` are the buffer's, zero copy,
   * shared with every other process mapping it (PROTOCOL §12). Read-only
   * with access 'read' or a handle without 'write'. Only a buffer that owns
   * its pages can be mapped (align: 4096 for small ones).
   */
  map(handle: number, opts: { access?: Access } = {}): Promise<Mapping> {
    return mapBuffer(this, handle, opts.access);
  }

  /** A mapping the daemon tracks but that maps nothing here: read and write it through the daemon with `{mapping}`. */
  mapRemote(handle: number, opts: { cache?: CachePolicyName } = {}): Promise<ResultOf<'map'>> {
    return this.request('map', opts.cache === undefined ? { handle } : { handle, cache: opts.cache });
  }

  /** A real file descriptor in this process for exactly this buffer's bytes (page-rounded); any process can mmap it. Close it with closeFd. */
  exportFd(handle: number, opts: { access?: Access } = {}): Promise<{ fd: number } & ResultOf<'exportFd'>> {
    return exportBufferFd(this, handle, opts.access);
  }

  /** A handle for a buffer fd (from exportFd, here or in another process); rights follow its access mode. */
  importFd(fd: number): Promise<HandleInfo> {
    return importBufferFd(this, fd);
  }

  unmap(mapping: number): Promise<ResultOf<'unmap'>> {
    return this.request('unmap', { mapping });
  }

  /** Flush the write-combine buffer for a buffer. */
  fence(handle: number): Promise<ResultOf<'fence'>> {
    return this.request('fence', { handle });
  }

  /** Recorded coherency violations, newest last, with counts by kind. */
  violations(opts: ParamsOf<'violations'> = {}): Promise<ResultOf<'violations'>> {
    return this.request('violations', opts);
  }

  /**
   * Stream live events to this connection: 'activity' events for the topics
   * asked (default all) and 'snapshot' events every intervalMs (topic
   * "status"). Subscribing again replaces the subscription.
   */
  subscribe(opts: ParamsOf<'subscribe'> = {}): Promise<ResultOf<'subscribe'>> {
    return this.request('subscribe', opts);
  }

  unsubscribe(): Promise<ResultOf<'unsubscribe'>> {
    return this.request('unsubscribe', {});
  }

  /** Reload the daemon's config file (admin); an invalid file is rejected with EINVAL and nothing changes. */
  reload(): Promise<ResultOf<'reload'>> {
    return this.request('reload', {});
  }

  /** Act as a device on registered buffers. */
  readonly device: DeviceApi = new DeviceApi(this);

  /** A new handle number for the same buffer, with the same rights. */
  dup(handle: number): Promise<{ handle: number; rights: RightName[] }> {
    return this.request('dup', { handle });
  }

  /** Close a handle; the buffer is freed when its last reference goes. */
  close(handle: number): Promise<{ handle: number; closed: true }> {
    return this.request('close', { handle });
  }

  /** Describe a handle and its buffer (segments, rights, references). */
  info(handle: number): Promise<HandleInfo> {
    return this.request('info', { handle });
  }

  /** Largest data payload per request, from hello. */
  private get chunk(): number {
    return this.session.limits.maxDataBytes;
  }

  /** Write bytes at an offset, through a handle or `{mapping}`; transfers over the per-request limit are split into pipelined requests. */
  async write(target: number | { mapping: number }, offset: number, data: Uint8Array): Promise<{ written: number }> {
    const via = typeof target === 'number' ? { handle: target } : { mapping: target.mapping };
    return chunkedWrite(this.chunk, data, (done, part) => this.request('write', { ...via, offset: offset + done, data: part }));
  }

  /** Read bytes at an offset, through a handle or `{mapping}`, split into several requests when large; length in bytes or as "64K". */
  async read(target: number | { mapping: number }, offset: number, length: Size): Promise<Buffer> {
    const via = typeof target === 'number' ? { handle: target } : { mapping: target.mapping };
    return chunkedRead(this.chunk, bytes(length, 'read', 'length'), (done, n) => this.request('read', { ...via, offset: offset + done, length: n }));
  }

  /**
   * Say whom this client accepts handles from: "any", "none" (the default
   * until it says otherwise) or a list of client ids and names. Until then
   * nobody can `send` it a handle (tokens it imports itself are not
   * affected). Names bound in the daemon's `auth.names` can only be taken by
   * their principal, so accepting by name is safe for those.
   */
  accept(from: AcceptFrom): Promise<{ accept: AcceptFrom }> {
    return this.request('accept', { from });
  }

  /** Pass a handle to another connected client (id or name) that accepts from this one; it gets a 'handle' event. The sender keeps its handle. */
  send(handle: number, to: number | string, opts: { rights?: RightName[] } = {}): Promise<{ to: number; toName: string | null; rights: RightName[] }> {
    return this.request('send', opts.rights === undefined ? { handle, to } : { handle, to, rights: opts.rights });
  }

  /** A single-use token for a handle (default lifetime 30 s); it holds the buffer until imported or expired. */
  export(handle: number, opts: { rights?: RightName[]; ttlMs?: number } = {}): Promise<{ token: string; expiresInMs: number; rights: RightName[] }> {
    const p: ParamsOf<'export'> = { handle };
    if (opts.rights !== undefined) p.rights = opts.rights;
    if (opts.ttlMs !== undefined) p.ttlMs = opts.ttlMs;
    return this.request('export', p);
  }

  /** Redeem a token for a handle. */
  import(token: string): Promise<HandleInfo> {
    return this.request('import', { token });
  }

  /** Live buffers and who holds them (all for admins, those this client holds otherwise). */
  async buffers(opts: { client?: number; pool?: string } = {}): Promise<{ buffers: BufferListing[] }> {
    // the daemon answers a page at a time (at most 10,000 buffers): gather them all
    const all: BufferListing[] = [];
    for (let after: number | undefined; ; ) {
      const page = await this.request('buffers', { ...opts, ...(after !== undefined ? { after } : {}), limit: 10_000 });
      all.push(...page.buffers);
      if (!page.more || page.buffers.length === 0) return { buffers: all };
      after = page.buffers[page.buffers.length - 1]!.buffer;
    }
  }

  /** Resize a hugepage pool (size in bytes or as a string: 2 MiB, "2M", "1G"). */
  async setHugepages(pageSize: Size, nr: number, overcommit?: number): Promise<HugepagesSetResult> {
    const size = bytes(pageSize, 'hugepages.set', 'size');
    return this.request('hugepages.set', overcommit === undefined ? { size, nr } : { size, nr, overcommit });
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
