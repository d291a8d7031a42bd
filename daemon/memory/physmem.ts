/**
 * Layer daemon/memory/: the simulated physical memory — regions and zones
 * with buddy allocators (this file, buddy.ts), the sparse page store of
 * their bytes, hugepage pools (nr / free / reserved / surplus), the cache
 * attribute of every page (no page mapped with two policies), the layout it
 * is built from and the segment walkers. It may use lib/ and protocol/;
 * alloc/ and everything above use it.
 *
 * Simulated physical memory: regions of 4 KiB page frames, each split into
 * zones (at 4 GiB, like ZONE_DMA32, and at every pool's maxAddress) with one
 * buddy allocator per zone, plus the sparse page contents. Pure: no I/O.
 *
 * Allocations without an address limit take the highest zone first and fall
 * back to lower ones (as Linux's zonelist does), keeping low memory for
 * devices with narrow DMA masks.
 */
import { BuddyAllocator } from './buddy.js';
import { PageStore, PAGE, PAGE_SHIFT } from './pagestore.js';
import { MemfdBacking } from './backing.js';
import type { Native } from '../lib/native.js';
import type { RegionConfig, RegionKind } from './layout.js';
import type { RegionStatus } from '../../protocol/status.js';

export { PAGE, PAGE_SHIFT };
export const FOUR_GIB = 2 ** 32;

export interface Zone {
  name: string;
  region: string;
  base: number;
  size: number;
  buddy: BuddyAllocator;
}

export interface Region {
  name: string;
  kind: RegionKind;
  base: number;
  size: number;
  /** Lowest address first. */
  zones: Zone[];
}

/** A physically contiguous run of pages. */
export interface Extent {
  pfn: number;
  npages: number;
}

/** Zone label: DMA32 below 4 GiB, Normal above (as on arm64/x86-64). */
function zoneLabel(end: number): string {
  return end <= FOUR_GIB ? 'DMA32' : 'Normal';
}

export class PhysicalMemory {
  readonly regions: Region[];
  readonly store: PageStore;
  private readonly byName = new Map<string, Region>();

  /**
   * boundaries: extra zone split addresses per region (e.g. pools' maxAddress).
   * sys: when given, each region's bytes live in a memfd (shared memory a
   * buffer's pages can be handed out from); otherwise in JavaScript memory.
   */
  constructor(configs: RegionConfig[], boundaries: Map<string, number[]> = new Map(), sys: Native | null = null) {
    this.store = new PageStore(
      sys === null ? [] : configs.map((c) => ({ pfn: c.base / PAGE, npages: c.size / PAGE, backing: MemfdBacking.create(sys, `bufferd-region-${c.name}`, c.size / PAGE, false) })),
    );
    this.regions = configs.map((c) => {
      const end = c.base + c.size;
      const cuts = new Set<number>([FOUR_GIB, ...(boundaries.get(c.name) ?? [])]);
      const points = [c.base, ...[...cuts].filter((x) => x > c.base && x < end).sort((a, b) => a - b), end];
      const zones: Zone[] = [];
      for (let i = 0; i + 1 < points.length; i++) {
        const base = points[i]!;
        const size = points[i + 1]! - base;
        const label = zoneLabel(base + size);
        const same = zones.filter((z) => z.name.startsWith(`${c.name}/${label}`)).length;
        const name = `${c.name}/${label}${same > 0 ? `.${same}` : ''}`;
        zones.push({ name, region: c.name, base, size, buddy: new BuddyAllocator(base / PAGE, size / PAGE) });
      }
      const r: Region = { name: c.name, kind: c.kind, base: c.base, size: c.size, zones };
      this.byName.set(c.name, r);
      return r;
    });
  }

  region(name: string): Region {
    const r = this.byName.get(name);
    if (r === undefined) throw new RangeError(`no region '${name}'`);
    return r;
  }

  /** Zones of a region usable below maxAddress (exclusive) and reaching above minAddress, highest first. */
  zonesFor(region: string, maxAddress: number | null, minAddress = 0): Zone[] {
    const zs = this.region(region).zones.filter((z) => (maxAddress === null || z.base + z.size <= maxAddress) && z.base + z.size > minAddress);
    return zs.reverse();
  }

  zoneOf(pfn: number): Zone {
    const addr = pfn * PAGE;
    for (const r of this.regions) {
      if (addr < r.base || addr >= r.base + r.size) continue;
      for (const z of r.zones) if (addr >= z.base && addr < z.base + z.size) return z;
    }
    throw new RangeError(`pfn ${pfn} is not in any region`);
  }

  /** Free pages usable by a request (region, maxAddress, minAddress). */
  freePagesFor(region: string, maxAddress: number | null, minAddress = 0): number {
    return this.zonesFor(region, maxAddress, minAddress).reduce((a, z) => a + z.buddy.freePagesFrom(minAddress / PAGE), 0);
  }

  /** Largest free block usable by a request, in pages. */
  largestFreeFor(region: string, maxAddress: number | null, minAddress = 0): number {
    let best = 0;
    for (const z of this.zonesFor(region, maxAddress, minAddress)) {
      if (minAddress > z.base) {
        best = Math.max(best, z.buddy.largestFreeFrom(minAddress / PAGE));
        continue;
      }
      const o = z.buddy.largestFreeOrder();
      if (o >= 0) best = Math.max(best, 2 ** o);
    }
    return best;
  }

  /** One contiguous run of npages aligned to alignPages (at or above minAddress), or null. */
  allocContig(region: string, npages: number, alignPages: number, maxAddress: number | null, minAddress = 0): Extent | null {
    for (const z of this.zonesFor(region, maxAddress, minAddress)) {
      const pfn = z.buddy.allocExact(npages, alignPages, minAddress / PAGE);
      if (pfn >= 0) return { pfn, npages };
    }
    return null;
  }

  /** One naturally aligned block of 2^order pages (hugepages, at or above minAddress), or -1. */
  allocBlock(region: string, order: number, maxAddress: number | null, minAddress = 0): number {
    for (const z of this.zonesFor(region, maxAddress, minAddress)) {
      const pfn = z.buddy.alloc(order, minAddress / PAGE);
      if (pfn >= 0) return pfn;
    }
    return -1;
  }

  /**
   * npages as a scatter-gather list, largest blocks first, highest zone
   * first, at or above minAddress. All or nothing: null (nothing changed)
   * when not enough is free.
   */
  allocScatter(region: string, npages: number, maxAddress: number | null, maxSegOrder?: number, minAddress = 0): Extent[] | null {
    const zones = this.zonesFor(region, maxAddress, minAddress);
    const minPfn = minAddress / PAGE;
    if (zones.reduce((a, z) => a + z.buddy.freePagesFrom(minPfn), 0) < npages) return null;
    const out: Extent[] = [];
    let left = npages;
    for (const z of zones) {
      if (left === 0) break;
      const take = Math.min(left, z.buddy.freePagesFrom(minPfn));
      if (take === 0) continue;
      const blocks = z.buddy.allocScatter(take, maxSegOrder, minPfn)!;
      for (const b of blocks) out.push({ pfn: b.pfn, npages: 2 ** b.order });
      left -= take;
    }
    return mergeExtents(out);
  }

  /** Give pages back to their zones' buddy allocators. */
  freeExtent(e: Extent): void {
    let pfn = e.pfn;
    let left = e.npages;
    while (left > 0) {
      const z = this.zoneOf(pfn);
      const zoneEnd = (z.base + z.size) / PAGE;
      const n = Math.min(left, zoneEnd - pfn);
      z.buddy.freeRange(pfn, n);
      pfn += n;
      left -= n;
    }
  }

  freeBlockOrder(pfn: number, order: number): void {
    this.zoneOf(pfn).buddy.free(pfn, order);
  }

  totalBytes(): number {
    return this.regions.reduce((a, r) => a + r.size, 0);
  }

  freeBytes(): number {
    return this.regions.reduce((a, r) => a + r.zones.reduce((b, z) => b + z.buddy.freePages, 0) * PAGE, 0);
  }

  regionStatus(): RegionStatus[] {
    return this.regions.map((r) => {
      const orders: number[] = [];
      let free = 0;
      let largest = 0;
      for (const z of r.zones) {
        free += z.buddy.freePages * PAGE;
        z.buddy.freeByOrder().forEach((n, o) => (orders[o] = (orders[o] ?? 0) + n));
        const lo = z.buddy.largestFreeOrder();
        if (lo >= 0) largest = Math.max(largest, 2 ** lo * PAGE);
      }
      for (let o = 0; o < orders.length; o++) orders[o] ??= 0;
      trimOrders(orders);
      return {
        name: r.name,
        kind: r.kind,
        base: r.base,
        size: r.size,
        free,
        largestFree: largest,
        freeByOrder: orders,
        zones: r.zones.map((z) => ({ name: z.name, base: z.base, size: z.size, free: z.buddy.freePages * PAGE, freeByOrder: trimOrders(z.buddy.freeByOrder()) })),
      };
    });
  }
}

/** Drop the trailing empty orders (keeping order 0). */
function trimOrders(orders: number[]): number[] {
  while (orders.length > 1 && orders[orders.length - 1] === 0) orders.pop();
  return orders;
}

/** Sort extents by address and join physically adjacent ones. */
export function mergeExtents(list: Extent[]): Extent[] {
  const s = [...list].sort((a, b) => a.pfn - b.pfn);
  const out: Extent[] = [];
  for (const e of s) {
    const last = out[out.length - 1];
    if (last !== undefined && last.pfn + last.npages === e.pfn) last.npages += e.npages;
    else out.push({ ...e });
  }
  return out;
}
