/**
 * Who owns a buffer in streaming DMA, and the reports when that is broken.
 * A buffer registered with a non-coherent device belongs either to the CPU
 * (inside a client's sync start…end bracket) or to the device (after
 * registration, after sync end, after a device access). This base keeps
 * that state per buffer and per client, the violation log (violations.ts),
 * and the transition to device ownership (speculative prefetch, or a mapped
 * buffer's baseline); coherency.ts is what each access and sync does.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { CpuCache } from './cache.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { Registration } from './drivers.js';
import type { PageStore } from '../memory/pagestore.js';
import type { SharedMemory } from './shared.js';
import { chunkedBacked, forEachBacked } from '../alloc/hugefault.js';
import { ViolationLog, type CheckMode, type Violation, type ViolationKind, type Who } from './violations.js';
import type { Work } from '../lib/slices.js';
import { checkDeviceAccess, checkSync, syncDirection } from './direction.js';

export type Access = 'read' | 'write' | 'rw';

/** Bytes of a buffer handled between two yields of a Work. */
export const CHUNK = 256 * 1024;

export interface CoherencyConfig {
  mode: CheckMode;
  prefetch: 'none' | 'always' | 'random';
  prefetchRate: number;
  ringSize: number;
}

interface BufferOwnership {
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

export class Ownership {
  private readonly own = new WeakMap<SharedBuffer, BufferOwnership>();
  /** Buffers on which each client has a bracket open (closed when the client goes). */
  private readonly openBy = new Map<number, Set<SharedBuffer>>();
  private readonly log: ViolationLog;

  constructor(
    readonly cache: CpuCache,
    protected readonly mem: PageStore,
    protected readonly cfg: CoherencyConfig,
    protected readonly hooks: CoherencyHooks,
    /** Buffers with their own shared memory (mapped by processes). */
    readonly shared: SharedMemory,
  ) {
    this.log = new ViolationLog(cfg.ringSize);
  }

  protected state(b: SharedBuffer): BufferOwnership {
    let s = this.own.get(b);
    if (s === undefined) {
      s = { device: false, brackets: new Map() };
      this.own.set(b, s);
    }
    return s;
  }

  /** Non-coherent devices the buffer is registered with. */
  protected nonCoherent(b: SharedBuffer): Registration[] {
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

  /** dma-debug's check_sync for every registration of the buffer (direction.ts); strict refuses before any change. */
  protected checkSyncDirections(who: Who, b: SharedBuffer, phase: 'start' | 'end', access: Access, off: number, len: number): void {
    const synced = syncDirection(access);
    for (const r of this.hooks.registrations(b)) {
      for (const x of checkSync(r.direction, synced, phase === 'start')) {
        this.violate(b, who, x.kind, `sync ${phase}`, off, len, r.driver.name,
          `client ${who.id}'s sync {phase:'${phase}', access:'${access}'} of buffer ${b.id}, registered with '${r.driver.name}' as ${r.direction}: ${x.message}`);
      }
    }
  }

  /** A device access against its registration's direction (direction.ts). */
  protected checkDeviceDirection(who: Who, r: Registration, op: string, off: number, len: number, read: boolean): void {
    const x = checkDeviceAccess(r.direction, !read);
    if (x !== null) {
      this.violate(r.buffer, who, x.kind, op, off, len, r.driver.name,
        `device '${r.driver.name}' ${read ? 'read' : 'wrote'} buffer ${r.buffer.id}, registered as ${r.direction}: ${x.message}; register it 'bidirectional' or '${read ? 'to-device' : 'from-device'}'`);
    }
  }

  /**
   * A registration about to take effect shares cache lines with live
   * registrations of other buffers (cachelines.ts): one violation, as
   * debug.c's add_dma_entry reports EEXIST; strict refuses the registration.
   */
  checkOverlap(who: Who, r: Registration, overlaps: [number, Registration][]): void {
    if (overlaps.length === 0) return;
    const [addr, o] = overlaps[0]!;
    const hex = (a: number) => `0x${a.toString(16)}`;
    const others = [...new Set(overlaps.map(([, x]) => `buffer ${x.buffer.id} (registered with '${x.driver.name}' as ${x.direction})`))].join(', ');
    const seg = r.buffer.phys.segments.find((s) => s.addr < addr + this.cache.line && s.addr + s.len > addr) ?? r.buffer.phys.segments[0]!;
    this.violate(r.buffer, who, 'overlapping-cacheline', 'register', 0, r.buffer.phys.size, r.driver.name,
      `buffer ${r.buffer.id} (at ${hex(seg.addr)}), registered with '${r.driver.name}' as ${r.direction}, shares the ${this.cache.line}-byte cache line at ${hex(addr)} with ${others}: ` +
        `cacheline tracking EEXIST, overlapping mappings aren't supported (kernel/dma/debug.c) — a device write to one buffer is lost when the CPU cleans the other's line; ` +
        `allocate each buffer aligned to the cache line: alloc {align: ${this.cache.line}}, or alloc {for: ['${r.driver.name}'${o.driver !== r.driver ? `, '${o.driver.name}'` : ''}]}, which aligns to the line for a non-coherent device`);
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

  /** The physical pieces of [off, off + len) of a buffer: fn(addr, at, n); hugepages not faulted in yet have none. */
  protected pieces(b: SharedBuffer, off: number, len: number, fn: (addr: number, at: number, n: number) => void): void {
    forEachBacked(b.phys, off, len, fn);
  }

  /** The same, as Work yielding every CHUNK bytes. */
  protected *piecesWork(b: SharedBuffer, off: number, len: number, fn: (addr: number, at: number, n: number) => void): Work<void> {
    for (const [addr, at, n, chunkEnd] of chunkedBacked(b.phys, off, len, CHUNK)) {
      fn(addr, at, n);
      if (chunkEnd) yield;
    }
  }

  protected policy(b: SharedBuffer) {
    return b.phys.pool.cfg.cache;
  }

  /**
   * The device takes the buffer: on the transition, speculative prefetch of
   * write-back lines, per policy; for a mapped buffer, the CPU view it is
   * given becomes the baseline its later changes are found against.
   */
  protected *toDevice(b: SharedBuffer): Work<void> {
    const st = this.state(b);
    if (st.device || this.nonCoherent(b).length === 0) return;
    st.device = true;
    const shm = this.shared.of(b);
    if (shm !== undefined) {
      this.shared.baseline(shm);
      return;
    }
    if (this.policy(b) !== 'writeback' || this.cfg.prefetch === 'none') return;
    const rate = this.cfg.prefetch === 'always' ? 1 : this.cfg.prefetchRate;
    yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => this.cache.prefetch(addr, n, rate));
  }

  protected opened(client: number, b: SharedBuffer, open: boolean): void {
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
}
