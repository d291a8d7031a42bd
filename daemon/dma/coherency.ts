/**
 * Streaming-DMA ownership and the coherency checker.
 *
 * A buffer registered with a non-coherent device belongs either to the CPU
 * (inside a client's sync start…end bracket) or to the device (after
 * registration, after sync end, after a device access). sync start is
 * sync-for-cpu (invalidate for reads, copy bounce slots back); sync end is
 * sync-for-device (clean dirty lines, flush write-combine, copy into bounce
 * slots); register and unregister behave like dma_map and dma_unmap. While
 * the device owns a write-back buffer the CPU may prefetch its lines.
 *
 * Every misuse is a violation (violations.ts): recorded, counted, logged and
 * sent to the buffer's holders (mode `warn`), or refused with ECOHERENCY
 * before any data changes (mode `strict`).
 *
 * Work over a whole buffer (sync, dma_map/unmap, prefetch, device fills) is
 * a generator (`Work`) that yields every CHUNK bytes, so the caller can run
 * it in slices and never hold the event loop for long (slices.ts); `drain`
 * runs one to the end. Pure apart from the callbacks it is given.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { CpuCache } from './cache.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { Registration } from './drivers.js';
import type { PageStore } from '../memory/pagestore.js';
import { chunkedPieces, forEachPiece } from '../memory/segments.js';
import { ViolationLog, type CheckMode, type Violation, type ViolationKind, type Who } from './violations.js';
import { drain, type Work } from '../lib/slices.js';

export { VIOLATION_KINDS, type CheckMode, type Violation, type ViolationKind, type Who } from './violations.js';
export type Access = 'read' | 'write' | 'rw';

/** Bytes of a buffer handled between two yields of a Work. */
export const CHUNK = 256 * 1024;

export interface CoherencyConfig {
  mode: CheckMode;
  prefetch: 'none' | 'always' | 'random';
  prefetchRate: number;
  ringSize: number;
}

interface Ownership {
  /** The device owns the buffer (after map, sync end or a device access, until sync start). */
  device: boolean;
  /** Open CPU brackets by client id. */
  brackets: Map<number, Access>;
}

export interface CoherencyHooks {
  /** Registrations of a buffer (all drivers). */
  registrations(b: SharedBuffer): Registration[];
  /** Checker mode for a buffer (its pool's override, else the global mode). */
  modeFor(b: SharedBuffer): CheckMode;
  /** A violation happened (warn or strict): log it and tell the buffer's holders. */
  report(v: Violation, b: SharedBuffer): void;
  now(): number;
}

export type SyncResult = { cleaned: number; invalidated: number; flushed: number };
/** The device's view of a range: fn(devAddr, physAddr, bounce, offset in the range, bytes). */
export type DeviceView = (fn: (dev: number, phys: number, bounce: boolean, at: number, n: number) => void) => void;

export class Coherency {
  private readonly own = new WeakMap<SharedBuffer, Ownership>();
  /** Buffers on which each client has a bracket open (closed when the client goes). */
  private readonly openBy = new Map<number, Set<SharedBuffer>>();
  private readonly log: ViolationLog;

  constructor(
    readonly cache: CpuCache,
    private readonly mem: PageStore,
    private readonly cfg: CoherencyConfig,
    private readonly hooks: CoherencyHooks,
  ) {
    this.log = new ViolationLog(cfg.ringSize);
  }

  private state(b: SharedBuffer): Ownership {
    let s = this.own.get(b);
    if (s === undefined) {
      s = { device: false, brackets: new Map() };
      this.own.set(b, s);
    }
    return s;
  }

  /** Non-coherent devices the buffer is registered with. */
  private nonCoherent(b: SharedBuffer): Registration[] {
    return this.hooks.registrations(b).filter((r) => r.driver.constraints.coherent !== true);
  }

  /**
   * Record a violation. In strict mode it throws ECOHERENCY (callers check
   * before changing data); in warn mode it is recorded and the op goes on.
   */
  violate(b: SharedBuffer, who: Who, kind: ViolationKind, op: string, offset: number, length: number, driver: string | null, message: string, recordOnly = false): void {
    const mode = this.hooks.modeFor(b);
    if (mode === 'off') return;
    const v = this.log.record({ timeMs: Math.round(this.hooks.now()), kind, client: { ...who }, buffer: b.id, driver, op, range: { offset, length }, mode, message });
    this.hooks.report(v, b);
    // invalid requests (a sync out of range, an unregister of nothing) keep their own error in every mode
    if (mode === 'strict' && !recordOnly) throw new BufferdError('ECOHERENCY', `${kind}: ${message}`, { violation: v });
  }

  violations(filter: { kind?: string; buffer?: number; limit?: number } = {}): Violation[] {
    return this.log.list(filter);
  }

  get total(): number {
    return this.log.total;
  }

  countsByKind(): Record<string, number> {
    return this.log.byKind();
  }

  /** The physical pieces of [off, off + len) of a buffer: fn(addr, at, n). */
  private pieces(b: SharedBuffer, off: number, len: number, fn: (addr: number, at: number, n: number) => void): void {
    forEachPiece(b.phys.segments, off, len, fn);
  }

  /** The same, as Work yielding every CHUNK bytes. */
  private *piecesWork(b: SharedBuffer, off: number, len: number, fn: (addr: number, at: number, n: number) => void): Work<void> {
    for (const [addr, at, n, chunkEnd] of chunkedPieces(b.phys.segments, off, len, CHUNK)) {
      fn(addr, at, n);
      if (chunkEnd) yield;
    }
  }

  private policy(b: SharedBuffer) {
    return b.phys.pool.cfg.cache;
  }

  /** The device takes the buffer: on the transition, speculative prefetch of write-back lines, per policy. */
  private *toDevice(b: SharedBuffer): Work<void> {
    const st = this.state(b);
    if (st.device || this.nonCoherent(b).length === 0) return;
    st.device = true;
    if (this.policy(b) !== 'writeback' || this.cfg.prefetch === 'none') return;
    const rate = this.cfg.prefetch === 'always' ? 1 : this.cfg.prefetchRate;
    yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => this.cache.prefetch(addr, n, rate));
  }

  // ---- CPU access ----

  private checkCpu(who: Who, b: SharedBuffer, write: boolean, op: string, off: number, len: number): void {
    const st = this.state(b);
    const devs = st.device && st.brackets.size === 0 ? this.nonCoherent(b) : [];
    if (devs.length > 0) {
      this.violate(b, who, 'cpu-access-while-device-owned', op, off, len, devs[0]!.driver.name,
        `client ${who.id} ${write ? 'wrote' : 'read'} buffer ${b.id} while device ${devs.map((r) => `'${r.driver.name}'`).join(', ')} owns it (after registration, sync end or a device access): missing sync {phase:'start', access:'${write ? 'write' : 'read'}'}`);
    }
    const mine = st.brackets.get(who.id);
    if (write && mine === 'read') {
      this.violate(b, who, 'direction-mismatch', op, off, len, null, `client ${who.id} wrote buffer ${b.id} inside a sync bracket opened for 'read': open it for 'write' or 'rw'`);
    }
  }

  /** A CPU read (at most one request's data: not sliced). */
  cpuRead(who: Who, b: SharedBuffer, off: number, len: number, op = 'read'): Buffer {
    this.checkCpu(who, b, false, op, off, len);
    const out = Buffer.allocUnsafe(len);
    const pol = this.policy(b);
    const stale: [number, number][] = [];
    this.pieces(b, off, len, (addr, at, n) => {
      const view = out.subarray(at, at + n);
      if (pol === 'writeback') {
        for (const [s, k] of this.cache.read(addr, n, view).stale) stale.push([at + s, k]);
      } else if (pol === 'writecombine') {
        this.cache.readCombine(addr, n, view);
      } else {
        this.mem.readInto(addr, n, view, 0);
      }
    });
    if (stale.length > 0) {
      const first = stale[0]!;
      this.violate(b, who, 'stale-read', op, off + first[0], stale.reduce((a, x) => a + x[1], 0), this.nonCoherent(b)[0]?.driver.name ?? null,
        `client ${who.id} read stale bytes of buffer ${b.id} (from offset ${off + first[0]}, ${stale.length} cache line(s)): cached lines were not invalidated after the device wrote: missing sync {phase:'start', access:'read'}`);
    }
    return out;
  }

  cpuWrite(who: Who, b: SharedBuffer, off: number, data: Uint8Array, op = 'write'): void {
    this.checkCpu(who, b, true, op, off, data.length);
    const pol = this.policy(b);
    this.pieces(b, off, data.length, (addr, at, n) => {
      if (pol === 'writeback') this.cache.write(addr, data, at, n);
      else if (pol === 'writecombine') this.cache.writeCombine(addr, data, at, n);
      else {
        this.cache.memoryWritten(addr, n);
        this.mem.write(addr, data, at, n);
      }
    });
  }

  /** Flush the write-combine buffer for a buffer (a store fence). */
  fence(b: SharedBuffer): number {
    let n = 0;
    this.pieces(b, 0, b.phys.size, (addr, _at, len) => (n += this.cache.flushWc(addr, len)));
    return n;
  }

  // ---- sync (DMA_BUF_IOCTL_SYNC) ----

  sync(who: Who, b: SharedBuffer, phase: 'start' | 'end', access: Access, off = 0, len = b.phys.size): SyncResult {
    return drain(this.syncWork(who, b, phase, access, off, len));
  }

  /** sync as Work: every check (and a strict refusal) comes before the first change. */
  *syncWork(who: Who, b: SharedBuffer, phase: 'start' | 'end', access: Access, off = 0, len = b.phys.size): Work<SyncResult> {
    const st = this.state(b);
    if (off + len > b.phys.size) {
      this.violate(b, who, 'sync-out-of-range', `sync ${phase}`, off, len, null, `sync of [${off}, ${off + len}) is outside buffer ${b.id} (size ${b.phys.size})`, true);
      throw new BufferdError('EINVAL', `sync range offset ${off} + length ${len} = ${off + len} is past the end of the buffer (size ${b.phys.size})`, { offset: off, length: len, size: b.phys.size });
    }
    const r = { cleaned: 0, invalidated: 0, flushed: 0 };
    const bounced = this.hooks.registrations(b).flatMap((reg) => reg.pieces.filter((p) => p.bounce));
    const clip = (p: { off: number; len: number }) => [Math.max(off, p.off), Math.min(off + len, p.off + p.len)] as const;
    if (phase === 'start') {
      if (st.brackets.has(who.id)) {
        this.violate(b, who, 'start-while-open', 'sync start', off, len, null, `client ${who.id} started CPU access to buffer ${b.id} again without ending the bracket it opened for '${st.brackets.get(who.id)}'`);
      }
      st.brackets.set(who.id, access);
      st.device = false;
      this.opened(who.id, b, true);
      if (access !== 'write') {
        // sync for the CPU: bring back what devices wrote into bounce slots, then drop stale lines
        for (const p of bounced) {
          const [lo, hi] = clip(p);
          if (lo >= hi) continue;
          this.cache.memoryWritten(p.phys + (lo - p.off), hi - lo);
          this.mem.copy(p.phys + (lo - p.off), p.dev + (lo - p.off), hi - lo);
          yield;
        }
        yield* this.piecesWork(b, off, len, (addr, _at, n) => (r.invalidated += this.cache.invalidate(addr, n)));
      }
      return r;
    }
    if (!st.brackets.has(who.id)) {
      this.violate(b, who, 'end-without-start', 'sync end', off, len, null, `client ${who.id} ended CPU access to buffer ${b.id} without starting it: missing sync {phase:'start'}`);
    }
    if (access !== 'read') {
      // sync for the device: dirty lines and pending write-combine writes reach memory, then the bounce slots
      yield* this.piecesWork(b, off, len, (addr, _at, n) => {
        r.cleaned += this.cache.clean(addr, n);
        r.flushed += this.cache.flushWc(addr, n);
      });
      for (const p of bounced) {
        const [lo, hi] = clip(p);
        if (lo < hi) this.mem.copy(p.dev + (lo - p.off), p.phys + (lo - p.off), hi - lo);
        yield;
      }
    }
    st.brackets.delete(who.id);
    this.opened(who.id, b, false);
    if (st.brackets.size === 0) yield* this.toDevice(b);
    return r;
  }

  private opened(client: number, b: SharedBuffer, open: boolean): void {
    let set = this.openBy.get(client);
    if (open) {
      if (set === undefined) this.openBy.set(client, (set = new Set()));
      set.add(b);
    } else if (set !== undefined) {
      set.delete(b);
      if (set.size === 0) this.openBy.delete(client);
    }
  }

  /** A client disconnected: its open brackets close (without syncing), and devices may own those buffers again. */
  *clientGone(client: number): Work<void> {
    const set = this.openBy.get(client);
    if (set === undefined) return;
    this.openBy.delete(client);
    for (const b of set) {
      const st = this.state(b);
      st.brackets.delete(client);
      if (st.brackets.size === 0 && !b.freed) yield* this.toDevice(b);
    }
  }

  // ---- dma_map / dma_unmap ----

  /** After a registration is made: clean for the device, fill bounce slots, the device owns the buffer. */
  *mapped(r: Registration): Work<void> {
    const b = r.buffer;
    yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => {
      this.cache.clean(addr, n);
      this.cache.flushWc(addr, n);
    });
    for (const p of r.pieces) {
      if (!p.bounce) continue;
      this.mem.copy(p.dev, p.phys, p.len);
      yield;
    }
    if (r.driver.constraints.coherent !== true && this.state(b).brackets.size === 0) yield* this.toDevice(b);
  }

  /** Before a registration goes: check it was synced (the scan yields; a strict refusal comes before any change). */
  *checkUnmap(who: Who, r: Registration): Work<void> {
    // a coherent device snoops: nothing has to be synced before it lets go
    if (r.driver.constraints.coherent === true) return;
    const b = r.buffer;
    const st = this.state(b);
    let dirty = 0;
    yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => (dirty += this.cache.dirtyIn(addr, n).length + (this.cache.wcPending(addr, n) ? 1 : 0)));
    if (dirty > 0 || st.brackets.size > 0) {
      this.violate(b, who, 'unsynced-unregister', 'unregister', 0, b.phys.size, r.driver.name,
        `client ${who.id} unregistered buffer ${b.id} from '${r.driver.name}' with ${dirty > 0 ? `${dirty} dirty or pending cache line(s)` : ''}${dirty > 0 && st.brackets.size > 0 ? ' and ' : ''}${st.brackets.size > 0 ? 'a CPU bracket open' : ''}: missing sync {phase:'end'}`);
    }
  }

  /**
   * Just before the view is torn down (dma_unmap): bounce data comes back,
   * stale lines go, and without other non-coherent registrations the CPU
   * owns the buffer again.
   */
  *unmapping(r: Registration): Work<void> {
    const b = r.buffer;
    for (const p of r.pieces) {
      if (!p.bounce) continue;
      this.cache.memoryWritten(p.phys, p.len);
      this.mem.copy(p.phys, p.dev, p.len);
      yield;
    }
    // sync for the CPU after a non-coherent device; a coherent one needs no cache maintenance
    if (r.driver.constraints.coherent !== true) yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => this.cache.invalidate(addr, n));
    if (this.nonCoherent(b).every((x) => x === r)) this.state(b).device = false;
  }

  // ---- device access ----

  /**
   * The checks of a device access of [off, off + len), made once before
   * any data moves (a long access then runs in chunks with `checked`): no
   * CPU bracket may be open, and a read must not miss the CPU's dirty or
   * pending write-combine lines (through bounce slots even a coherent
   * device only sees what sync end copied there).
   */
  *deviceCheck(who: Who, r: Registration, op: string, off: number, len: number, read: boolean, view: (off: number, len: number) => DeviceView): Work<void> {
    const st = this.state(r.buffer);
    if (st.brackets.size > 0) {
      const owners = [...st.brackets.keys()].join(', ');
      this.violate(r.buffer, who, 'device-access-during-cpu-access', op, off, len, r.driver.name,
        `device '${r.driver.name}' accessed buffer ${r.buffer.id} while client(s) ${owners} had CPU access open: missing sync {phase:'end'} first`);
    }
    if (!read) return;
    const coherent = r.driver.constraints.coherent === true;
    let lost = 0;
    for (let o = off; o < off + len; o += CHUNK) {
      view(o, Math.min(CHUNK, off + len - o))((_dev, phys, bounce, _at, n) => {
        if (!coherent || bounce) lost += this.cache.dirtyIn(phys, n).length + (this.cache.wcPending(phys, n) ? 1 : 0);
      });
      yield;
    }
    if (lost > 0) {
      this.violate(r.buffer, who, 'lost-write', op, off, len, r.driver.name,
        `${coherent ? 'device' : 'non-coherent device'} '${r.driver.name}' read buffer ${r.buffer.id}${coherent ? ' through bounce slots' : ''} while the CPU held ${lost} dirty or write-combine line(s) for it: the device saw old data; missing sync {phase:'end', access:'write'}`);
    }
  }

  /** A device reads [off, off + len) (checked already when `checked`); the prefetch on the ownership change yields. */
  *deviceRead(who: Who, r: Registration, off: number, len: number, view: (off: number, len: number) => DeviceView, op = 'device.read', checked = false): Work<Buffer> {
    if (!checked) yield* this.deviceCheck(who, r, op, off, len, true, view);
    const coherent = r.driver.constraints.coherent === true;
    const out = Buffer.allocUnsafe(len);
    for (let o = off; o < off + len; o += CHUNK) {
      view(o, Math.min(CHUNK, off + len - o))((dev, phys, bounce, at, n) => {
        const dst = out.subarray(o - off + at, o - off + at + n);
        if (bounce) this.mem.readInto(dev, n, dst, 0);
        else this.cache.deviceRead(phys, n, coherent, dst);
      });
      yield;
    }
    yield* this.toDevice(r.buffer);
    return out;
  }

  /** A device writes `data` at `off` (checked already when `checked`). */
  *deviceWrite(who: Who, r: Registration, off: number, data: Uint8Array, view: (off: number, len: number) => DeviceView, op = 'device.write', checked = false): Work<void> {
    if (!checked) yield* this.deviceCheck(who, r, op, off, data.length, false, view);
    const coherent = r.driver.constraints.coherent === true;
    for (let o = 0; o < data.length; o += CHUNK) {
      view(off + o, Math.min(CHUNK, data.length - o))((dev, phys, bounce, at, n) => {
        if (bounce) this.mem.write(dev, data, o + at, n);
        else this.cache.deviceWrite(phys, data, coherent, o + at, n);
      });
      yield;
    }
    yield* this.toDevice(r.buffer);
  }

  /** Forget the cache state of pages a buffer no longer (or newly) owns. */
  forget(segments: { addr: number; len: number }[]): void {
    for (const s of segments) this.cache.forget(s.addr, s.len);
  }
}
