/**
 * BufferClient: the typed client of bufferd.
 *
 *   const c = await connect({ name: 'app' });
 *   const st = await c.status();
 *   c.on('shutdown', (ev) => ...);
 *   await c.disconnect();
 *
 * Every method returns a promise; requests are pipelined on one connection
 * and answered in order (connection.ts). A daemon error rejects with
 * BufferdError; losing the connection rejects every pending call with code
 * ECONNRESET.
 */
import type { ParamsOf } from '../protocol/requests.js';
import type { AcceptFrom, PingResult, ResultOf, HandleInfo, HugepagesSetResult, RightName, BufferListing, MergeResult, RegistrationInfo } from '../protocol/results.js';
import { Connection, type BufferClientEvents } from './connection.js';
import type { Status, PoolStatus, DriverStatus } from '../protocol/status.js';
import type { Constraints, CachePolicyName } from '../protocol/attributes.js';
import { DeviceApi } from './device.js';
import { FaultsApi } from './inject.js';
import { exportBufferFd, importBufferFd, mapBuffer, type Access, type Mapping } from './mapping.js';
import { chunkedRead, chunkedWrite } from './chunked.js';
import { allocParams, bytes, type AllocOptions, type Size } from './sizes.js';
import type { HistoryResult, GraphResult } from '../protocol/ops/history.js';

export type { BufferClientEvents };

export class BufferClient extends Connection {
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

  /** Register a buffer with a driver (direction: default 'bidirectional'); rejects with code EATTR and details.mismatches when it doesn't fit. */
  register(handle: number, driver: string, opts: { direction?: 'bidirectional' | 'to-device' | 'from-device' } = {}): Promise<RegistrationInfo> {
    return this.request('register', opts.direction !== undefined ? { handle, driver, direction: opts.direction } : { handle, driver });
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

  /** Start, stop or inspect the daemon's journal (admin; `bufferd replay FILE` re-runs it). */
  record(action: 'start' | 'stop' | 'status', opts: Omit<ParamsOf<'record'>, 'action'> = {}): Promise<ResultOf<'record'>> {
    return this.request('record', { action, ...opts });
  }

  /** Act as a device on registered buffers. */
  readonly device: DeviceApi = new DeviceApi(this);

  /** Fault injection (admin only): client/inject.ts. */
  readonly faults: FaultsApi = new FaultsApi(this);

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

  /** One buffer's life, event by event (for clients that held it, and admins); `limit`: the newest N. */
  history(buffer: number, opts: { limit?: number } = {}): Promise<HistoryResult> {
    return this.request('history', opts.limit === undefined ? { buffer } : { buffer, limit: opts.limit });
  }

  /** The ownership graph: clients, buffers, drivers and who holds, passed, registered, maps and exported what. */
  graph(opts: ParamsOf<'graph'> = {}): Promise<GraphResult> {
    return this.request('graph', opts);
  }

  /** Resize a hugepage pool (size in bytes or as a string: 2 MiB, "2M", "1G"). */
  async setHugepages(pageSize: Size, nr: number, overcommit?: number): Promise<HugepagesSetResult> {
    const size = bytes(pageSize, 'hugepages.set', 'size');
    return this.request('hugepages.set', overcommit === undefined ? { size, nr } : { size, nr, overcommit });
  }
}
