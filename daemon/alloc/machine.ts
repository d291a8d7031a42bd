/**
 * Layer daemon/alloc/: the jemalloc-style sub-allocator and the machine it
 * serves — size classes, slabs, extents, arenas, cache-policy pools, the page
 * sources that feed them (buddy or hugepages), and the machine (this file)
 * that builds memory, hugepages, pools and the bounce reservation from the
 * layout. It may use memory/, lib/ and protocol/; buffers/ and above use it.
 *
 * The simulated machine: physical memory, hugepage pools, cache-policy
 * pools and the buffers allocated from them, built from the machine config.
 * Pure: no I/O; unit tests drive it directly.
 */
import { IntMap } from '../lib/intset.js';
import { BufferdError } from '../../protocol/errors.js';
import { tagInjected, type FaultInjector } from '../lib/faultinject.js';
import { formatSize } from '../../protocol/units.js';
import type { Native } from '../lib/native.js';
import type { HugepageStatus, PoolStatus, RegionStatus, PoolDetail } from '../../protocol/status.js';
import type { CachePolicy, HugepageConfig, RegionConfig } from '../memory/layout.js';
import { PhysicalMemory, PAGE, FOUR_GIB } from '../memory/physmem.js';
import { HugepagePool } from '../memory/hugepages.js';
import { CacheAttrTracker } from '../memory/cacheattr.js';
import { BuddySource, HugeSource, type PageSource } from './pagesource.js';
import { Pool, type PhysBuffer } from './pool.js';
import type { PoolConfig } from './poolconfig.js';
import { earliest } from '../lib/earliest.js';
import type { Segment } from '../memory/segments.js';
import { forEachBacked, unbackedIn } from './hugefault.js';
import { contigMissReason, holderOf } from './contigmiss.js';

/** The swiotlb bounce pool's reservation (the config's `bounce`). */
export interface BounceConfig {
  size: number;
  region: string;
  maxMapping: number;
}

/** What a machine is built from: memory, hugepages, pools and the bounce reservation. */
export interface MachineLayout {
  regions: RegionConfig[];
  hugepages: HugepageConfig[];
  pools: PoolConfig[];
  /** The swiotlb bounce pool, reserved below 4 GiB at start-up, or null. */
  bounce: BounceConfig | null;
}

export interface AllocOptions {
  pool: string;
  size: number;
  align?: number;
  owner: number;
  populate?: boolean;
  /** Every page at or above this physical address (0 or absent: anywhere). */
  minAddress?: number;
}

export interface HugepageResize {
  size: number;
  requested: number;
  reached: number;
  overcommit: number;
  status: HugepageStatus;
  /** Why fewer pages than requested were reached (absent when all were). */
  reason?: string;
}

export class Machine {
  readonly mem: PhysicalMemory;
  readonly attrs = new CacheAttrTracker();
  readonly hugepages = new Map<number, HugepagePool>();
  readonly pools = new Map<string, Pool>();
  readonly warnings: string[] = [];
  /** The memory reserved for the swiotlb bounce pool (dma/ runs it), when configured. */
  readonly bounce: { base: number; size: number; maxMapping: number } | null = null;
  /** Told about pages a buffer takes or gives up (the CPU cache forgets them). */
  onPages: ((segments: Segment[]) => void) | null = null;
  private faults: FaultInjector | null = null;
  /** Live buffers by id (IntMap: ids only grow, and V8's Map pays for every deleted one until it rehashes). */
  private readonly buffers = new IntMap<PhysBuffer>();
  private nextId = 1;

  constructor(
    readonly cfg: MachineLayout,
    /** Monotonic clock in ms (injected for decay tests). */
    readonly now: () => number = () => performance.now(),
    /** System calls for shared memory (memfd); null: memory in JavaScript (tests, no native calls). */
    readonly sys: Native | null = null,
  ) {
    const cuts = new Map<string, number[]>();
    for (const p of cfg.pools) if (p.maxAddress !== null) cuts.set(p.region, [...(cuts.get(p.region) ?? []), p.maxAddress]);
    this.mem = new PhysicalMemory(cfg.regions, cuts, sys);
    // the bounce pool is reserved first, below 4 GiB, as swiotlb is at boot
    if (cfg.bounce !== null) {
      const e = this.mem.allocContig(cfg.bounce.region, cfg.bounce.size / PAGE, 1, FOUR_GIB);
      if (e === null) throw new RangeError(`cannot reserve a ${formatSize(cfg.bounce.size)} bounce pool below 4 GiB in region '${cfg.bounce.region}'`);
      this.bounce = { base: e.pfn * PAGE, size: cfg.bounce.size, maxMapping: cfg.bounce.maxMapping };
    }
    for (const h of cfg.hugepages) {
      const hp = new HugepagePool(this.mem, h, (pfn, n, attr) => this.attrs.dissolve(pfn, n, attr));
      if (hp.persistent < h.nr) {
        this.warnings.push(`only ${hp.persistent} of ${h.nr} ${formatSize(h.size)} hugepages could be reserved in region '${h.region}'`);
      }
      if (hp.isGigantic && h.overcommit > 0) this.warnings.push(`${formatSize(h.size)} hugepages cannot be overcommitted; overcommit ignored`);
      this.hugepages.set(h.size, hp);
    }
    for (const p of cfg.pools) {
      const source: PageSource =
        p.pageSize === PAGE ? new BuddySource(this.mem, p, this.attrs, (pfn) => holderOf(this.attrs, this.hugepages.values(), this.bounce, pfn)) : new HugeSource(this.hugepages.get(p.pageSize)!, p, this.attrs);
      this.pools.set(p.name, new Pool(p, source, this.mem, this.attrs, now));
    }
  }

  /** Arm the pools and hugepage pools with a fault injector (points `alloc`, `hugepage`). */
  injectFaults(f: FaultInjector | null): void {
    this.faults = f;
    for (const p of this.pools.values()) p.faults = f;
    for (const h of this.hugepages.values()) h.faults = f;
  }

  pool(name: string): Pool {
    const p = this.pools.get(name);
    if (p === undefined) {
      throw new BufferdError('ENOENT', `no pool named '${name}'; pools: ${[...this.pools.keys()].join(', ')}`, { pool: name });
    }
    return p;
  }

  alloc(o: AllocOptions): PhysBuffer {
    const pool = this.pool(o.pool);
    // with fault injection: the pool is the site, an error after a point fired inside is marked injected
    const f = this.faults;
    const buf = f === null ? pool.alloc(this.nextId, o.size, o.align ?? 1, o.owner, o.populate ?? true, o.minAddress ?? 0) : this.allocInjecting(f, pool, o);
    this.nextId++;
    this.buffers.set(buf.id, buf);
    this.onPages?.(buf.segments);
    return buf;
  }

  private allocInjecting(f: FaultInjector, pool: Pool, o: AllocOptions): PhysBuffer {
    const run = () => pool.alloc(this.nextId, o.size, o.align ?? 1, o.owner, o.populate ?? true, o.minAddress ?? 0);
    return f.within({ pool: pool.name }, () => tagInjected(f, run));
  }

  buffer(id: number): PhysBuffer | undefined {
    return this.buffers.get(id);
  }

  /** Every live buffer, oldest (lowest id) first. */
  allBuffers(): IterableIterator<PhysBuffer> {
    return [...this.buffers.valuesIter()].sort((a, b) => a.id - b.id).values();
  }

  free(buf: PhysBuffer): void {
    if (this.buffers.get(buf.id) !== buf) throw new BufferdError('ENOENT', `buffer ${buf.id} is not allocated`);
    this.buffers.delete(buf.id);
    this.onPages?.(buf.segments);
    buf.pool.free(buf);
  }

  /** A client went away: its arenas are dropped once empty. */
  ownerGone(owner: number): void {
    for (const p of this.pools.values()) p.ownerGone(owner);
  }

  /** Purge dirty chunks whose decay time has passed; returns pages purged. */
  purgeExpired(): number {
    let n = 0;
    for (const p of this.pools.values()) n += p.purge(false);
    return n;
  }

  /** When the next dirty chunk becomes due, or null. */
  nextDecayDeadline(): number | null {
    return earliest(this.pools.values(), (p) => p.nextDeadline());
  }

  /** One pool's arenas and bins. */
  poolDetail(name: string): PoolDetail {
    const p = this.pool(name);
    return { name, directThreshold: p.directThreshold, arenas: p.arenaStats(), bins: p.binStats() };
  }

  /**
   * Fault in the reserved hugepages that bytes [off, off + len) of a
   * populate: false buffer lie in, one per hugepage touched (mm/hugetlb.c,
   * hugetlb_no_page; alloc/hugefault.ts); the whole buffer by default (as
   * pinning it for DMA does: mm/gup.c, __get_user_pages faults in every page
   * of the range). Returns the hugepages backed now.
   */
  touch(buf: PhysBuffer, off = 0, len = buf.size): number {
    const idx = unbackedIn(buf, off, len);
    if (idx.length === 0) return 0;
    // (faulted first: onPages?.(…) would skip evaluating its argument without a listener)
    const fresh = buf.pool.fault(buf, idx);
    this.onPages?.(fresh);
    return idx.length;
  }

  /** Visit the physical pieces of [off, off + len) of a buffer, faulting in the hugepages they lie in. */
  forEachPhys(buf: PhysBuffer, off: number, len: number, fn: (addr: number, bufOff: number, n: number) => void): void {
    this.touch(buf, off, len);
    forEachBacked(buf, off, len, fn);
  }

  read(buf: PhysBuffer, off: number, len: number): Buffer {
    // every byte is written below (unwritten pages read as zeros)
    const out = Buffer.allocUnsafe(len);
    this.forEachPhys(buf, off, len, (addr, o, n) => this.mem.store.readInto(addr, n, out, o));
    return out;
  }

  write(buf: PhysBuffer, off: number, data: Uint8Array): void {
    this.forEachPhys(buf, off, data.length, (addr, o, n) => this.mem.store.write(addr, data, o, n));
  }

  fill(buf: PhysBuffer, off: number, len: number, value: number): void {
    this.forEachPhys(buf, off, len, (addr, _o, n) => this.mem.store.fill(addr, n, value));
  }

  /** hugepages.set: resize like writing nr_hugepages (and optionally nr_overcommit_hugepages). */
  setHugepages(size: number, nr: number, overcommit?: number): HugepageResize {
    const hp = this.hugepages.get(size);
    if (hp === undefined) {
      const sizes = [...this.hugepages.keys()].map(formatSize).join(', ');
      throw new BufferdError('ENOENT', `no hugepage pool of ${formatSize(size)}; configured sizes: ${sizes || 'none'}`);
    }
    if (overcommit !== undefined && !hp.setOvercommit(overcommit)) {
      throw new BufferdError('EINVAL', `field 'overcommit': ${formatSize(size)} (gigantic) hugepages cannot be overcommitted, as in Linux`);
    }
    const reached = hp.setNr(nr);
    const r: HugepageResize = { size, requested: nr, reached, overcommit: hp.overcommit, status: hp.status() };
    if (reached < nr) r.reason = this.hugepageShortfall(hp);
    return r;
  }

  /**
   * Why no fresh hugepage could be had: 2 MiB pages are buddy blocks of
   * order 9; 1 GiB pages come from free ranges (alloc_contig_pages, as
   * mm/hugetlb.c alloc_gigantic_folio), which fail on a fragmented region.
   */
  private hugepageShortfall(hp: HugepagePool): string {
    const npages = hp.size / PAGE;
    const miss = contigMissReason(this.mem, (pfn) => holderOf(this.attrs, this.hugepages.values(), this.bounce, pfn), { region: hp.region, npages, alignPages: npages, maxAddress: null, minAddress: 0 });
    if (miss !== null) return `region '${hp.region}': ${miss.text}`;
    return `region '${hp.region}' has no free ${formatSize(hp.size)} block (buddy order ${hp.order}); largest free block ${formatSize(this.mem.largestFreeFor(hp.region, null) * PAGE)}`;
  }

  regionStatus(): RegionStatus[] {
    return this.mem.regionStatus();
  }

  hugepageStatus(): HugepageStatus[] {
    return [...this.hugepages.values()].sort((a, b) => a.size - b.size).map((h) => h.status());
  }

  poolStatus(): PoolStatus[] {
    return [...this.pools.values()].map((p) => p.status());
  }

  /**
   * Check every invariant of the model; returns the broken ones (empty when
   * all hold). Used by property tests after every step.
   */
  checkInvariants(): string[] {
    const bad: string[] = [];
    const spans: { start: number; end: number; attr: CachePolicy; what: string }[] = [];
    for (const r of this.mem.regions) {
      for (const z of r.zones) {
        for (const b of z.buddy.freeBlocks()) spans.push({ start: b.pfn, end: b.pfn + 2 ** b.order, attr: 'writeback', what: `buddy ${z.name}` });
      }
    }
    for (const hp of this.hugepages.values()) {
      const per = hp.size / PAGE;
      for (const p of hp.freePages()) spans.push({ start: p.pfn, end: p.pfn + per, attr: p.attr, what: `free ${formatSize(hp.size)} hugepage` });
    }
    if (this.bounce !== null) {
      const b = this.bounce;
      spans.push({ start: b.base / PAGE, end: (b.base + b.size) / PAGE, attr: 'writeback', what: 'swiotlb bounce pool' });
    }
    const held = [...this.attrs.heldBlocks()].sort((x, y) => x.pfn - y.pfn);
    for (const b of held) {
      spans.push({ start: b.pfn, end: b.pfn + b.npages, attr: b.attr, what: `pool ${b.pool}` });
      const pool = this.pools.get(b.pool);
      if (pool !== undefined && b.attr !== pool.cfg.cache) bad.push(`block at pfn ${b.pfn} held by '${b.pool}' carries ${b.attr}, pool policy ${pool.cfg.cache}`);
    }
    spans.sort((a, b) => a.start - b.start);
    let pages = 0;
    for (let i = 0; i < spans.length; i++) {
      const s = spans[i]!;
      pages += s.end - s.start;
      const prev = spans[i - 1];
      if (prev !== undefined && s.start < prev.end) {
        bad.push(`pages ${s.start}..${Math.min(s.end, prev.end)} owned twice: ${prev.what} (${prev.attr}) and ${s.what} (${s.attr})`);
      }
    }
    const total = this.mem.totalBytes() / PAGE;
    if (pages !== total) bad.push(`page accounting: ${pages} pages accounted, machine has ${total}`);
    // every buffer lies in blocks held by its pool; block user counts match; buffers never overlap
    const blockOf = (addr: number) => {
      const pfn = Math.floor(addr / PAGE);
      let lo = 0;
      let hi = held.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const b = held[mid]!;
        if (pfn < b.pfn) hi = mid - 1;
        else if (pfn >= b.pfn + b.npages) lo = mid + 1;
        else return b;
      }
      return undefined;
    };
    const users = new Map<object, number>();
    const segs: { addr: number; end: number; id: number }[] = [];
    const perPool = new Map<string, { requested: number; buffers: number }>();
    for (const buf of this.buffers.valuesIter()) {
      const seg = buf.segments.reduce((a: number, s: Segment) => a + s.len, 0);
      if (buf.reservedPages === 0 && seg !== buf.size) bad.push(`buffer ${buf.id}: segments cover ${seg} bytes of ${buf.size}`);
      const slots = buf.slots;
      if (slots !== undefined) {
        // a partly backed buffer: its segments cover exactly its backed hugepages, the rest stays reserved
        const ps = buf.pool.pageSize;
        const backed = slots.reduce((a: number, b, i) => a + (b === null ? 0 : Math.min(ps, buf.size - i * ps)), 0);
        const n = slots.filter((b) => b !== null).length;
        if (seg !== backed || buf.reservedPages !== slots.length - n || buf.blocks.length !== n || buf.reservedPages === 0) {
          bad.push(`buffer ${buf.id}: ${buf.blocks.length} blocks, ${buf.reservedPages} reserved, segments ${seg} bytes, for ${slots.length} slots with ${backed} bytes backed`);
        }
      }
      const seen = new Set<object>();
      for (const s of buf.segments) {
        segs.push({ addr: s.addr, end: s.addr + s.len, id: buf.id });
        const b = blockOf(s.addr);
        const e = blockOf(s.addr + s.len - 1);
        if (b === undefined || e === undefined) {
          bad.push(`buffer ${buf.id} segment at 0x${s.addr.toString(16)} is not in a held block`);
          continue;
        }
        if (b.pool !== buf.pool.name) bad.push(`buffer ${buf.id} of pool '${buf.pool.name}' lies in a block of '${b.pool}'`);
        if (buf.kind !== 'direct' && b !== e) bad.push(`buffer ${buf.id} crosses a chunk boundary`);
        for (const x of buf.kind === 'direct' ? buf.blocks : [b]) {
          if (!seen.has(x)) users.set(x, (users.get(x) ?? 0) + 1);
          seen.add(x);
        }
      }
      if (buf.kind !== 'direct' && buf.addr % Math.min(buf.align, PAGE * 512) !== 0) bad.push(`buffer ${buf.id} at 0x${buf.addr.toString(16)} is not aligned to ${buf.align}`);
      const acc = perPool.get(buf.pool.name) ?? { requested: 0, buffers: 0 };
      acc.requested += buf.size;
      acc.buffers++;
      perPool.set(buf.pool.name, acc);
    }
    for (const b of held) if (b.users !== (users.get(b) ?? 0)) bad.push(`block at pfn ${b.pfn}: users ${b.users}, buffers in it ${users.get(b) ?? 0}`);
    segs.sort((x, y) => x.addr - y.addr);
    for (let i = 1; i < segs.length; i++) {
      if (segs[i]!.addr < segs[i - 1]!.end) bad.push(`buffers ${segs[i - 1]!.id} and ${segs[i]!.id} overlap at 0x${segs[i]!.addr.toString(16)}`);
    }
    for (const p of this.pools.values()) {
      const st = p.status();
      const acc = perPool.get(p.name) ?? { requested: 0, buffers: 0 };
      if (st.requested !== acc.requested || st.buffers !== acc.buffers) {
        bad.push(`pool '${p.name}' counters ${st.requested}/${st.buffers} vs buffers ${acc.requested}/${acc.buffers}`);
      }
      if (!(st.requested <= st.allocated && st.allocated <= st.active && st.active <= st.mapped)) {
        bad.push(`pool '${p.name}': requested ${st.requested} ≤ allocated ${st.allocated} ≤ active ${st.active} ≤ mapped ${st.mapped} does not hold`);
      }
      if (st.dirty + st.retained + st.active !== st.mapped) bad.push(`pool '${p.name}': active + dirty + retained ≠ mapped`);
      let heldBytes = 0;
      for (const b of held) if (b.pool === p.name) heldBytes += b.npages * PAGE;
      let reserved = 0;
      for (const buf of this.buffers.valuesIter()) if (buf.pool === p) reserved += buf.reservedPages * p.pageSize;
      if (heldBytes !== st.resident || st.mapped - st.resident !== reserved) {
        bad.push(`pool '${p.name}': mapped ${st.mapped}, resident ${st.resident}, but holds ${heldBytes} bytes of blocks and ${reserved} bytes of reserved hugepages`);
      }
    }
    for (const hp of this.hugepages.values()) {
      const s = hp.status();
      if (s.reserved > s.free) bad.push(`${formatSize(hp.size)} hugepages: reserved ${s.reserved} > free ${s.free}`);
      if (s.surplus > s.total) bad.push(`${formatSize(hp.size)} hugepages: surplus ${s.surplus} > total ${s.total}`);
      let held = 0;
      for (const b of this.attrs.heldBlocks()) if (b.hugeSize === hp.size) held++;
      if (s.total !== s.free + held) bad.push(`${formatSize(hp.size)} hugepages: total ${s.total} ≠ free ${s.free} + in use ${held}`);
    }
    return bad;
  }
}
