/**
 * A device's IOMMU: an IOVA allocator over the device's address space (a
 * buddy allocator over IOVA page frames, lowest address first) and the
 * mappings from IOVA to physical pages. Each piece of a buffer is mapped
 * with the largest supported page size that both its IOVA and physical
 * address are aligned to and that fits what is left, as the kernel's
 * iommu_pgsize() chooses, so a hugepage-backed buffer maps with 2 MiB
 * entries. Pure: no I/O.
 */
import { BufferdError } from '../../protocol/errors.js';
import { formatSize } from '../../protocol/units.js';
import { BuddyAllocator } from '../memory/buddy.js';


/** IOVA → physical run of one mapping (one per physically contiguous piece). */
export interface IovaRun {
  iova: number;
  paddr: number;
  len: number;
}

export interface IommuMapping {
  /** First IOVA of the mapping (page aligned). */
  base: number;
  /** Bytes of IOVA space taken (page multiple). */
  size: number;
  /** Device address of the buffer's first byte. */
  deviceAddress: number;
  runs: IovaRun[];
  /** Page-table entries used, by page size. */
  entries: Map<number, number>;
}

export class Iommu {
  private readonly iova: BuddyAllocator;
  readonly pageSizes: number[];
  readonly space: number;
  /** IOVA is handed out in units of the smallest supported page (the IOMMU granule). */
  readonly granule: number;
  /** Live entries by page size. */
  readonly entries = new Map<number, number>();
  mappings = 0;

  constructor(
    readonly device: string,
    pageSizes: number[],
    iovaSize: number,
    dmaMask = 64,
  ) {
    this.pageSizes = [...pageSizes].sort((a, b) => b - a);
    this.granule = this.pageSizes[this.pageSizes.length - 1]!;
    this.space = Math.min(iovaSize, dmaMask >= 53 ? iovaSize : 2 ** dmaMask);
    // granule 0 is never handed out (a null device address would be ambiguous)
    const granules = Math.floor(this.space / this.granule);
    if (granules < 2) throw new RangeError(`IOVA space of '${device}' holds fewer than two ${this.granule}-byte pages`);
    this.iova = new BuddyAllocator(1, granules - 1);
  }

  /** Bytes of IOVA space in use by mappings. */
  get used(): number {
    return (this.iova.totalPages - this.iova.freePages) * this.granule;
  }

  /** Bytes of IOVA space that can be mapped (all but the first granule, which is never handed out). */
  get total(): number {
    return this.iova.totalPages * this.granule;
  }

  /** Largest supported page size that divides both addresses and fits in `left`. */
  pgsize(iova: number, paddr: number, left: number): number {
    for (const s of this.pageSizes) if (s <= left && iova % s === 0 && paddr % s === 0) return s;
    return this.pageSizes[this.pageSizes.length - 1]!;
  }

  /**
   * Map a buffer's physical segments into one contiguous IOVA range. Pieces
   * are page-granular (a sub-page buffer maps the page it lives in; the
   * device address carries the offset). ENOMEM naming the device when the
   * IOVA space can't fit it.
   */
  map(segments: { addr: number; len: number }[], inject: (() => boolean) | null = null): IommuMapping {
    const g = this.granule;
    // the buffer must be one contiguous IOVA range: only its first start and last end may be off the granule
    segments.forEach((s, i) => {
      if ((i > 0 && s.addr % g !== 0) || (i < segments.length - 1 && (s.addr + s.len) % g !== 0)) {
        throw new BufferdError('EINVAL', `device '${this.device}': segment ${i} at 0x${s.addr.toString(16)}+${s.len} is not aligned to the IOMMU page (${formatSize(g)}) inside the buffer`);
      }
    });
    const pieces = segments.map((s) => {
      const start = Math.floor(s.addr / g) * g;
      const end = Math.ceil((s.addr + s.len) / g) * g;
      return { paddr: start, len: end - start };
    });
    const size = pieces.reduce((a, p) => a + p.len, 0);
    // align the IOVA like the first piece's physical address, up to the largest page size that fits
    let align = g;
    for (const s of this.pageSizes) {
      if (s <= size && pieces[0]!.paddr % s === 0) {
        align = s;
        break;
      }
    }
    // the `iova` fault point: the allocator finds no room, as when the space is exhausted
    const injected = inject !== null && inject();
    const pfn = injected ? -1 : this.iova.allocExact(size / g, align / g);
    if (pfn < 0) {
      throw new BufferdError(
        'ENOMEM',
        `IOVA space of device '${this.device}' exhausted: ${formatSize(size)} needed (aligned to ${formatSize(align)}), ` +
          `${formatSize(this.iova.freePages * g)} of ${formatSize(this.total)} free, largest free block ${formatSize(2 ** Math.max(0, this.iova.largestFreeOrder()) * g)}`,
        { device: this.device, needed: size, free: this.iova.freePages * g, ...(injected ? { injected: true } : {}) },
      );
    }
    const base = pfn * g;
    const runs: IovaRun[] = [];
    const entries = new Map<number, number>();
    let iova = base;
    for (const p of pieces) {
      runs.push({ iova, paddr: p.paddr, len: p.len });
      let off = 0;
      while (off < p.len) {
        const s = this.pgsize(iova + off, p.paddr + off, p.len - off);
        entries.set(s, (entries.get(s) ?? 0) + 1);
        off += s;
      }
      iova += p.len;
    }
    for (const [s, n] of entries) this.entries.set(s, (this.entries.get(s) ?? 0) + n);
    this.mappings++;
    return { base, size, deviceAddress: base + (segments[0]!.addr - pieces[0]!.paddr), runs, entries };
  }

  unmap(m: IommuMapping): void {
    this.iova.freeRange(m.base / this.granule, m.size / this.granule);
    for (const [s, n] of m.entries) {
      const left = (this.entries.get(s) ?? 0) - n;
      if (left === 0) this.entries.delete(s);
      else this.entries.set(s, left);
    }
    this.mappings--;
  }

  /** Translate a device address of a mapping back to a physical address. */
  static translate(m: IommuMapping, iova: number): number {
    for (const r of m.runs) if (iova >= r.iova && iova < r.iova + r.len) return r.paddr + (iova - r.iova);
    throw new RangeError(`IOVA 0x${iova.toString(16)} is not mapped`);
  }

  entriesBySize(): Record<string, number> {
    const o: Record<string, number> = {};
    for (const [s, n] of [...this.entries].sort((a, b) => a[0] - b[0])) o[String(s)] = n;
    return o;
  }
}
