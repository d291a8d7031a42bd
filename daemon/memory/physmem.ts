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
import { BuddyAllocator, MAX_PAGE_ORDER, floorLog2 } from './buddy.js';
import { allocContigRange, findContigRange, type ContigMiss } from './contig.js';
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
  /** zonesFor(region, maxAddress) without placement, by region and limit. */
  private readonly zoneLists = new Map<Region, Map<number | null, Zone[]>>();

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
        zones.push({ name, region: c.name, base, size, buddy: new BuddyAllocator(base / PAGE, size / PAGE, MAX_PAGE_ORDER) });
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

  /** Zones of a region usable below maxAddress (exclusive) and reaching above minAddress, highest first (shared: not to be changed). */
  zonesFor(region: string, maxAddress: number | null, minAddress = 0): readonly Zone[] {
    const r = this.region(region);
    // the common question (no placement) is answered once per address limit: every page source asks it at each allocation
    if (minAddress === 0) {
      let zs = this.zoneLists.get(r)?.get(maxAddress);
      if (zs === undefined) {
        zs = this.selectZones(r, maxAddress, 0);
        const byLimit = this.zoneLists.get(r) ?? new Map<number | null, Zone[]>();
        byLimit.set(maxAddress, zs);
        this.zoneLists.set(r, byLimit);
      }
      return zs;
    }
    return this.selectZones(r, maxAddress, minAddress);
  }

  private selectZones(r: Region, maxAddress: number | null, minAddress: number): Zone[] {
    return r.zones.filter((z) => (maxAddress === null || z.base + z.size <= maxAddress) && z.base + z.size > minAddress).reverse();
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

  /**
   * One contiguous run of npages aligned to alignPages (at or above
   * minAddress), or null. Up to MAX_PAGE_ORDER from the buddy
   * (alloc_pages_exact); beyond it from free ranges, as alloc_contig_pages
   * (contig.ts), which fails where no free range is long enough even when a
   * buddy with larger orders would have found a block.
   */
  allocContig(region: string, npages: number, alignPages: number, maxAddress: number | null, minAddress = 0): Extent | null {
    const big = npages > 2 ** MAX_PAGE_ORDER || alignPages > 2 ** MAX_PAGE_ORDER;
    for (const z of this.zonesFor(region, maxAddress, minAddress)) {
      const pfn = big ? contigPfn(allocContigRange(z.buddy, npages, alignPages, minAddress / PAGE)) : z.buddy.allocExact(npages, alignPages, minAddress / PAGE);
      if (pfn >= 0) return { pfn, npages };
    }
    return null;
  }

  /**
   * Why allocContig(same arguments) finds nothing above MAX_PAGE_ORDER: the
   * longest free run in reach and the busy page that ends it (null for
   * requests the buddy serves).
   */
  contigMiss(region: string, npages: number, alignPages: number, maxAddress: number | null, minAddress = 0): ContigMiss | null {
    if (npages <= 2 ** MAX_PAGE_ORDER && alignPages <= 2 ** MAX_PAGE_ORDER) return null;
    let best: ContigMiss = { longest: null, busyPfn: -1 };
    for (const z of this.zonesFor(region, maxAddress, minAddress)) {
      const r = findContigRange(z.buddy, npages, alignPages, minAddress / PAGE);
      if ('pfn' in r) return null;
      if (r.longest !== null && (best.longest === null || r.longest.npages > best.longest.npages)) best = r;
    }
    return best;
  }

  /**
   * One naturally aligned block of 2^order pages (hugepages, at or above
   * minAddress), or -1. Orders above MAX_PAGE_ORDER (1 GiB pages) take the
   * alloc_contig_pages path, as mm/hugetlb.c alloc_gigantic_folio does.
   */
  allocBlock(region: string, order: number, maxAddress: number | null, minAddress = 0): number {
    if (order > MAX_PAGE_ORDER) return this.allocContig(region, 2 ** order, 2 ** order, maxAddress, minAddress)?.pfn ?? -1;
    for (const z of this.zonesFor(region, maxAddress, minAddress)) {
      const pfn = z.buddy.alloc(order, minAddress / PAGE);
      if (pfn >= 0) return pfn;
    }
    return -1;
  }

  /**
   * npages as a scatter-gather list, largest blocks first and kept in that
   * order, at or above minAddress — drivers/dma-buf/heaps/system_heap.c
   * (system_heap_allocate → alloc_largest_available): each step takes the
   * largest order that fits what is left and is no larger than the last one
   * taken, trying every zone (highest first, the zonelist) before dropping
   * an order. system_heap limits itself to orders 8, 4, 0; the buddy here
   * gives every order up to MAX_PAGE_ORDER at no cost, and a block of order
   * k is aligned to 2^k pages, so with blocks in non-increasing order every
   * block's offset in the buffer is a multiple of its size: an IOMMU mapping
   * the buffer at an IOVA aligned to the first block maps each block with
   * its largest page sizes (2 MiB, 64 KiB) — fewest entries and fewest
   * segments. firstOrder: the first block must be at least that order
   * (the buffer's alignment; when npages is smaller, one allocExact run).
   * Adjacent blocks that follow each other in the list are joined. All or
   * nothing: null (nothing changed) when not enough is free.
   */
  allocScatter(region: string, npages: number, maxAddress: number | null, maxSegOrder = MAX_PAGE_ORDER, minAddress = 0, firstOrder = 0): Extent[] | null {
    const zones = this.zonesFor(region, maxAddress, minAddress);
    const minPfn = minAddress / PAGE;
    if (npages === 0) return [];
    if (zones.reduce((a, z) => a + z.buddy.freePagesFrom(minPfn), 0) < npages) return null;
    const out: Extent[] = [];
    if (firstOrder > 0 && npages < 2 ** firstOrder) {
      const e = this.allocContig(region, npages, 2 ** firstOrder, maxAddress, minAddress);
      return e === null ? null : [e];
    }
    let left = npages;
    let o = Math.min(floorLog2(npages), maxSegOrder, MAX_PAGE_ORDER);
    // (orders stop at MAX_PAGE_ORDER: sizes are small integers, `1 << o` rather than `2 ** o`, a library call on doubles)
    let last: Extent | null = null;
    while (left > 0) {
      while (1 << o > left) o--;
      if (last === null && o < firstOrder) return null;
      let pfn = -1;
      for (const z of zones) if ((pfn = z.buddy.alloc(o, minPfn)) >= 0) break;
      if (pfn < 0) {
        o--;
        continue;
      }
      const size = 1 << o;
      if (last !== null && last.pfn + last.npages === pfn) last.npages += size;
      else {
        last = { pfn, npages: size };
        out.push(last);
      }
      left -= size;
    }
    return out;
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
    if (order > MAX_PAGE_ORDER) return this.freeExtent({ pfn, npages: 2 ** order });
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
      // every zone has MAX_PAGE_ORDER + 1 orders: 11 columns, as /proc/buddyinfo
      for (let o = 0; o <= MAX_PAGE_ORDER; o++) orders[o] ??= 0;
      return {
        name: r.name,
        kind: r.kind,
        base: r.base,
        size: r.size,
        free,
        largestFree: largest,
        freeByOrder: orders,
        zones: r.zones.map((z) => ({ name: z.name, base: z.base, size: z.size, free: z.buddy.freePages * PAGE, freeByOrder: z.buddy.freeByOrder() })),
      };
    });
  }
}

const contigPfn = (r: { pfn: number } | ContigMiss): number => ('pfn' in r ? r.pfn : -1);

