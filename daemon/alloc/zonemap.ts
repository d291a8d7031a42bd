/**
 * The dashboard's view of physical memory, zone by zone, laid out by
 * address: each zone cut into at most `maxCells` cells of a power-of-two
 * size, each cell saying how much of it is free in the buddy allocator (and
 * the order of the largest free block touching it) and who holds most of
 * the rest — a pool, a hugepage pool's free hugepages, the swiotlb bounce
 * pool. Pure: reads the machine, changes nothing.
 */
import { formatSize } from '../../protocol/units.js';
import { PAGE } from '../memory/physmem.js';
import type { Machine } from './machine.js';

export interface ZoneMap {
  name: string;
  base: number;
  size: number;
  /** Bytes per cell: a power of two, at least a page; the last cell may be shorter. */
  cellBytes: number;
  /** Per cell: free pages, percent (0-100, rounded; 1 when any page is free). */
  free: number[];
  /** Per cell: order of the largest free block with a page in it, −1 when none. */
  order: number[];
  /** Per cell: index in ZoneMaps.owners of the holder of most of its used pages, −1 when all free. */
  owner: number[];
  /** Per cell: that holder's share of the cell, percent. */
  ownerShare: number[];
}

export interface ZoneMaps {
  /** Who holds used memory: "pool huge", "2 MiB hugepages (free)", "swiotlb bounce pool". */
  owners: string[];
  zones: ZoneMap[];
}

interface Span {
  pfn: number;
  npages: number;
  owner: number;
}

/** Call f(cell, pages) for each cell the page run [pfn, pfn+n) overlaps, clipped to the zone. */
function spread(startPfn: number, zonePages: number, cellPages: number, pfn: number, n: number, f: (cell: number, pages: number) => void): void {
  const lo = Math.max(pfn, startPfn) - startPfn;
  const hi = Math.min(pfn + n, startPfn + zonePages) - startPfn;
  for (let p = lo; p < hi; ) {
    const cell = Math.floor(p / cellPages);
    const end = Math.min(hi, (cell + 1) * cellPages);
    f(cell, end - p);
    p = end;
  }
}

export function zoneMaps(m: Machine, maxCells = 512): ZoneMaps {
  const owners: string[] = [];
  const index = new Map<string, number>();
  const ownerOf = (label: string) => {
    let i = index.get(label);
    if (i === undefined) index.set(label, (i = owners.push(label) - 1));
    return i;
  };
  const used: Span[] = [];
  for (const hp of m.hugepages.values()) {
    const per = hp.size / PAGE;
    const o = ownerOf(`${formatSize(hp.size)} hugepages (free)`);
    for (const p of hp.freePages()) used.push({ pfn: p.pfn, npages: per, owner: o });
  }
  for (const b of m.attrs.heldBlocks()) used.push({ pfn: b.pfn, npages: b.npages, owner: ownerOf(`pool ${b.pool}`) });
  if (m.bounce !== null) used.push({ pfn: m.bounce.base / PAGE, npages: m.bounce.size / PAGE, owner: ownerOf('swiotlb bounce pool') });

  const zones: ZoneMap[] = [];
  for (const r of m.mem.regions) {
    for (const z of r.zones) {
      const startPfn = z.base / PAGE;
      const zonePages = z.size / PAGE;
      let cellPages = 1;
      while (Math.ceil(zonePages / cellPages) > maxCells) cellPages *= 2;
      const cells = Math.ceil(zonePages / cellPages);
      const pagesIn = (c: number) => Math.min(cellPages, zonePages - c * cellPages);
      const free = new Array<number>(cells).fill(0);
      const order = new Array<number>(cells).fill(-1);
      for (const b of z.buddy.freeBlocks()) {
        spread(startPfn, zonePages, cellPages, b.pfn, 2 ** b.order, (c, n) => {
          free[c]! += n;
          order[c] = Math.max(order[c]!, b.order);
        });
      }
      const byOwner = new Map<number, number[]>();
      for (const s of used) {
        if (s.pfn + s.npages <= startPfn || s.pfn >= startPfn + zonePages) continue;
        let counts = byOwner.get(s.owner);
        if (counts === undefined) byOwner.set(s.owner, (counts = new Array<number>(cells).fill(0)));
        spread(startPfn, zonePages, cellPages, s.pfn, s.npages, (c, n) => (counts![c]! += n));
      }
      const owner = new Array<number>(cells).fill(-1);
      const ownerShare = new Array<number>(cells).fill(0);
      for (const [o, counts] of byOwner) {
        counts.forEach((n, c) => {
          if (n > 0 && (owner[c] === -1 || n > (ownerShare[c]! * pagesIn(c)) / 100)) {
            owner[c] = o;
            ownerShare[c] = (100 * n) / pagesIn(c);
          }
        });
      }
      zones.push({
        name: z.name,
        base: z.base,
        size: z.size,
        cellBytes: cellPages * PAGE,
        free: free.map((n, c) => (n === 0 ? 0 : Math.max(1, Math.round((100 * n) / pagesIn(c))))),
        order,
        owner,
        ownerShare: ownerShare.map((x) => Math.round(x)),
      });
    }
  }
  return { owners, zones };
}
