/**
 * Layer daemon/dma/: the DMA layer — drivers, constraints checked at
 * registration and the device's view of a buffer (this file), the IOMMU and
 * its IOVA space, the swiotlb bounce pool, the CPU cache and write-combine
 * buffer, streaming-DMA ownership and the coherency checker with its
 * violation log, DMA directions (direction.ts) and the cache lines of live
 * registrations (cachelines.ts). It may use buffers/, alloc/, memory/, lib/ and protocol/;
 * config/ and above use it.
 *
 * Drivers and registrations. A driver is a built-in simulated device (from
 * config) or a client acting as one; it states constraints and only ever
 * registers buffers others allocated. Registration checks the buffer's real
 * attributes against the constraints (refusing with every mismatch), then
 * gives the device its view: physical segments, an IOVA range through the
 * device's IOMMU, or swiotlb bounce slots for segments its DMA mask can't
 * reach. A registration holds a buffer reference until unregistered; when a
 * driver detaches or the registering client goes, its registrations are
 * dropped and reported as leaks (as dma-debug reports pending mappings).
 */
import { BufferdError } from '../../protocol/errors.js';
import { checkBuffer, deviceSegments, mergeConstraints, poolMisfits, maskLimit, type Constraints, type PoolFacts } from '../../protocol/attributes.js';
import type { DriverStatus } from '../../protocol/status.js';
import { Iommu, type IommuMapping } from './iommu.js';
import type { FaultInjector } from '../lib/faultinject.js';
import { Swiotlb } from './swiotlb.js';
import type { Machine } from '../alloc/machine.js';
import type { SharedBuffer, Handle } from '../buffers/handles.js';
import type { DmaDirection } from './direction.js';
import { ActiveCachelines } from './cachelines.js';


/** One piece of a registered buffer as the device reaches it. */
export interface ViewPiece {
  /** Offset in the buffer. */
  off: number;
  len: number;
  /** Device address of the piece. */
  dev: number;
  /** Physical address of the buffer's bytes. */
  phys: number;
  /** The device addresses bounce memory, not the buffer. */
  bounce: boolean;
}

/** A built-in device as configured (the config's `drivers[]`). */
export interface DriverConfig {
  name: string;
  description: string;
  constraints: Constraints;
}

export interface Registration {
  readonly driver: Driver;
  readonly buffer: SharedBuffer;
  /** Client that registered it. */
  readonly registrant: number;
  readonly deviceAddress: number;
  readonly segments: { addr: number; len: number }[];
  readonly pieces: ViewPiece[];
  readonly iommu: IommuMapping | null;
  /** How it was mapped (dma_map's direction): what the device may do. */
  readonly direction: DmaDirection;
  /** Handle opened in a client driver's table for this registration (compared by identity). */
  driverHandle: Handle | null;
  /** Being torn down (dma_unmap in progress): no new device access, no second unregister. */
  dying: boolean;
}

export class Driver {
  readonly registrations = new Map<number, Registration>();
  readonly iommu: Iommu | null;
  registered = 0;
  refused = 0;
  leaks = 0;
  bytes = 0;

  constructor(
    readonly name: string,
    readonly kind: 'builtin' | 'client',
    readonly description: string,
    readonly constraints: Constraints,
    /** Client id of a client driver. */
    readonly owner: number | null,
  ) {
    const io = constraints.iommu;
    this.iommu = io !== undefined && io !== null ? new Iommu(name, io.pageSizes, io.iovaSize, constraints.dmaMask ?? 64) : null;
  }

  status(bounceUsed: number, bounceTotal: number): DriverStatus {
    return {
      name: this.name,
      kind: this.kind,
      owner: this.owner,
      description: this.description,
      coherent: this.constraints.coherent === true,
      iommu: this.iommu !== null,
      registrations: this.registrations.size,
      bytes: this.bytes,
      iovaUsed: this.iommu?.used ?? 0,
      iovaTotal: this.iommu?.total ?? 0,
      iommuEntries: this.iommu?.entriesBySize() ?? {},
      bounceSlots: { used: bounceUsed, total: bounceTotal },
      registered: this.registered,
      refused: this.refused,
      leaks: this.leaks,
    };
  }
}

export interface Leak {
  driver: string;
  buffer: number;
  registrant: number;
  reason: string;
}

export class DriverRegistry {
  private readonly drivers = new Map<string, Driver>();
  totalLeaks = 0;
  /** Fault injection (points `register`, `iova`; `bounce` is the swiotlb's own), or null. */
  faults: FaultInjector | null = null;
  /** The bounce pool over the memory the machine reserved for it, when configured. */
  readonly swiotlb: Swiotlb | null;
  /** Cache lines of live registrations (dma-debug's active cachelines). */
  readonly cachelines: ActiveCachelines<Registration>;

  constructor(
    private readonly machine: Machine,
    configs: DriverConfig[],
    lineSize = 64,
  ) {
    this.cachelines = new ActiveCachelines<Registration>(lineSize);
    for (const c of configs) this.drivers.set(c.name, new Driver(c.name, 'builtin', c.description, c.constraints, null));
    const b = machine.bounce;
    this.swiotlb = b === null ? null : new Swiotlb(b.base, b.size, b.maxMapping);
  }

  get(name: string): Driver {
    const d = this.drivers.get(name);
    if (d === undefined) throw new BufferdError('ENOENT', `no driver named '${name}'; drivers: ${[...this.drivers.keys()].join(', ') || 'none'}`, { driver: name });
    return d;
  }

  list(): Driver[] {
    return [...this.drivers.values()];
  }

  /** A client attaches as a driver with its own constraints. */
  attach(owner: number, name: string, constraints: Constraints): Driver {
    const holder = this.drivers.get(name);
    if (holder !== undefined) throw new BufferdError('EEXIST', `a driver named '${name}' already exists (${holder.kind}${holder.owner !== null ? ` of client ${holder.owner}` : ''})`);
    const d = new Driver(name, 'client', `client driver of client ${owner}`, constraints, owner);
    this.drivers.set(name, d);
    return d;
  }

  /** Pool facts for merge and alloc-for. */
  poolFacts(): PoolFacts[] {
    return [...this.machine.pools.values()].map((p) => {
      const reg = this.machine.mem.region(p.cfg.region);
      return {
        name: p.name,
        cache: p.cfg.cache,
        region: p.cfg.region,
        contiguous: p.cfg.contiguous,
        pageSize: p.pageSize,
        end: p.cfg.maxAddress ?? reg.base + reg.size,
        maxAlign: p.maxAlign,
      };
    });
  }

  /** A pool that would satisfy one driver, for refusal hints. */
  hintFor(d: Driver): string | null {
    const { merged, conflicts } = mergeConstraints([{ driver: d.name, constraints: d.constraints }]);
    if (conflicts.length > 0) return null;
    return this.poolFacts().find((p) => poolMisfits(merged, p).length === 0)?.name ?? null;
  }

  /**
   * Register a buffer with a driver: EATTR with every mismatch, or the
   * device's view. `admit` sees the registration before it takes effect and
   * may refuse it (a strict-mode violation): its view is then given back.
   */
  register(d: Driver, buffer: SharedBuffer, registrant: number, direction: DmaDirection = 'bidirectional', admit?: (r: Registration) => void): Registration {
    const prev = d.registrations.get(buffer.id);
    if (prev !== undefined) throw new BufferdError('EBUSY', `buffer ${buffer.id} is already registered with driver '${d.name}' (by client ${prev.registrant})`);
    const phys = buffer.phys;
    // pinning for DMA faults in every page of the buffer (mm/gup.c, __get_user_pages → faultin_page →
    // handle_mm_fault → hugetlb_no_page), before any check: even a refused registration has backed it
    this.machine.touch(phys);
    const mismatches = checkBuffer(d.constraints, { cache: phys.pool.cfg.cache, region: phys.pool.cfg.region, size: phys.size, segments: phys.segments });
    const pool = { pool: phys.pool.name };
    // the `register` fault point: the device refuses a buffer that fits, on the refusal path, naming 'injected'
    const injected = mismatches.length === 0 && this.faults?.shouldFail('register', pool) === true;
    if (injected) mismatches.push({ attribute: 'injected', required: 'a device that accepts the buffer', actual: 'the device refused it (fault injection)' });
    if (mismatches.length > 0) {
      d.refused++;
      const hint = this.hintFor(d);
      throw new BufferdError(
        'EATTR',
        `buffer ${buffer.id} does not fit driver '${d.name}': ${mismatches.map((m) => `${m.attribute} (required ${JSON.stringify(m.required)}, actual ${JSON.stringify(m.actual)})`).join('; ')}` +
          (hint !== null ? `; pool '${hint}' would satisfy '${d.name}'` : ''),
        { driver: d.name, buffer: buffer.id, mismatches, hint, ...(injected ? { injected: true } : {}) },
      );
    }
    let view;
    try {
      const f = this.faults;
      // the buffer's pool is the injection site of `iova` and `bounce`
      if (d.iommu !== null) view = this.viewIommu(d, phys.segments, phys.size, f === null ? null : () => f.shouldFail('iova', pool));
      else view = f === null ? this.viewDirect(d, phys.segments) : f.within(pool, () => this.viewDirect(d, phys.segments));
    } catch (e) {
      d.refused++;
      throw e;
    }
    const reg: Registration = { driver: d, buffer, registrant, ...view, direction, driverHandle: null, dying: false };
    try {
      admit?.(reg);
    } catch (e) {
      d.refused++;
      this.releaseView(reg);
      throw e;
    }
    buffer.ref('registrations');
    this.cachelines.insert(reg);
    d.registrations.set(buffer.id, reg);
    d.registered++;
    d.bytes += phys.size;
    return reg;
  }

  private viewIommu(d: Driver, segments: { addr: number; len: number }[], size: number, inject: (() => boolean) | null) {
    const m = d.iommu!.map(segments, inject);
    const pieces: ViewPiece[] = [];
    const start = m.deviceAddress;
    for (const r of m.runs) {
      const lo = Math.max(r.iova, start);
      const hi = Math.min(r.iova + r.len, start + size);
      if (lo < hi) pieces.push({ off: lo - start, len: hi - lo, dev: lo, phys: r.paddr + (lo - r.iova), bounce: false });
    }
    return { deviceAddress: start, segments: [{ addr: start, len: size }], pieces, iommu: m };
  }

  private viewDirect(d: Driver, segments: { addr: number; len: number }[]) {
    const limit = maskLimit(d.constraints.dmaMask);
    const pieces: ViewPiece[] = [];
    const tlb = this.swiotlb;
    let off = 0;
    try {
      for (const s of deviceSegments(d.constraints, segments)) {
        if (s.addr + s.len > limit) {
          // checkBuffer let it through: the device may bounce
          if (tlb === null) throw new BufferdError('ENOMEM', `driver '${d.name}' needs a bounce pool and none is configured`);
          pieces.push({ off, len: s.len, dev: tlb.map(d.name, s.len, d.constraints.segmentBoundary), phys: s.addr, bounce: true });
        } else {
          pieces.push({ off, len: s.len, dev: s.addr, phys: s.addr, bounce: false });
        }
        off += s.len;
      }
    } catch (e) {
      for (const p of pieces) if (p.bounce) tlb!.unmap(d.name, p.dev, p.len);
      throw e;
    }
    // the device's scatterlist: one entry per piece (already split at its segment limits)
    const segs = pieces.map((p) => ({ addr: p.dev, len: p.len }));
    return { deviceAddress: segs[0]!.addr, segments: segs, pieces, iommu: null };
  }

  /** The buffer's registrations, one per driver it is registered with (in driver order). */
  registrationsOf(buffer: SharedBuffer): Registration[] {
    // each registration holds one of these references: none, nothing to look for
    if (buffer.refs.registrations === 0) return [];
    const out: Registration[] = [];
    for (const d of this.drivers.values()) {
      const r = d.registrations.get(buffer.id);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  /** The registration of a buffer with a driver, or ENOENT (also while it is being torn down). */
  registration(d: Driver, buffer: SharedBuffer): Registration {
    const r = d.registrations.get(buffer.id);
    if (r === undefined || r.dying) throw new BufferdError('ENOENT', `buffer ${buffer.id} is not registered with driver '${d.name}'`, { driver: d.name, buffer: buffer.id });
    return r;
  }

  /** Is this registration still in force (not torn down, its driver still attached)? */
  live(r: Registration): boolean {
    return !r.dying && r.driver.registrations.get(r.buffer.id) === r && this.drivers.get(r.driver.name) === r.driver;
  }

  /** Give back a registration's IOVA range and bounce slots. */
  private releaseView(r: Registration): void {
    const d = r.driver;
    if (r.iommu !== null) d.iommu!.unmap(r.iommu);
    for (const p of r.pieces) {
      if (!p.bounce) continue;
      // the coherency model copied the bounce data back (dma_unmap) before this; clear the slots for the next mapping
      this.machine.mem.store.zeroBytes(p.dev, p.len);
      this.swiotlb!.unmap(d.name, p.dev, p.len);
    }
  }

  /** Tear a registration down (dma_unmap); drops its buffer reference. */
  unregister(r: Registration): void {
    const d = r.driver;
    this.releaseView(r);
    this.cachelines.remove(r);
    d.registrations.delete(r.buffer.id);
    d.bytes -= r.buffer.phys.size;
    r.buffer.unref('registrations');
  }

  /** Registrations in force: every one of a driver, or every one a client made (or both: a client's with that driver). */
  inForce(which: { driver?: Driver; registrant?: number }): Registration[] {
    const out: Registration[] = [];
    const drivers = which.driver !== undefined ? [which.driver] : this.list();
    for (const d of drivers) {
      for (const r of d.registrations.values()) {
        if (r.dying || (which.registrant !== undefined && r.registrant !== which.registrant)) continue;
        out.push(r);
      }
    }
    return out;
  }

  /** Count registrations as leaks: every one of a detaching driver, or every one a departed client made. */
  dropLeaks(which: { driver?: Driver; registrant?: number }, reason: string): { reg: Registration; leak: Leak }[] {
    return this.inForce(which).map((r) => {
      r.driver.leaks++;
      this.totalLeaks++;
      return { reg: r, leak: { driver: r.driver.name, buffer: r.buffer.id, registrant: r.registrant, reason } };
    });
  }

  detach(d: Driver): void {
    this.drivers.delete(d.name);
  }

  /** A built-in driver from config (added or redefined by a reload). */
  setBuiltin(c: DriverConfig): Driver {
    const d = new Driver(c.name, 'builtin', c.description, c.constraints, null);
    this.drivers.set(c.name, d);
    return d;
  }

  bounceUse(d: Driver): number {
    return this.swiotlb?.byDevice.get(d.name) ?? 0;
  }

  status(d: Driver): DriverStatus {
    return d.status(this.bounceUse(d), this.swiotlb?.nslots ?? 0);
  }

  /**
   * Visit the device's view of [off, off + len): fn(devAddr, physAddr,
   * bounce, bufferOffset - off, n). The device's memory access lands on the
   * bounce slots at devAddr when bounced, else on physAddr (IOVA translated
   * back through the IOMMU mapping, or the physical address itself).
   */
  forEachPiece(r: Registration, off: number, len: number, fn: (dev: number, phys: number, bounce: boolean, at: number, n: number) => void): void {
    for (const p of r.pieces) {
      const lo = Math.max(off, p.off);
      const hi = Math.min(off + len, p.off + p.len);
      if (lo < hi) fn(p.dev + (lo - p.off), p.phys + (lo - p.off), p.bounce, lo - off, hi - lo);
    }
  }
}


