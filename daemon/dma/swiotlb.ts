/**
 * The bounce pool (swiotlb): physically contiguous memory below 4 GiB,
 * reserved at start-up and cut into 2 KiB slots (IO_TLB_SIZE). A device
 * that cannot reach a buffer segment through its DMA mask is given a run of
 * slots instead, and the data is copied between the two. Pure: no I/O.
 *
 * The rules are Linux's (kernel/dma/swiotlb.c, include/linux/swiotlb.h):
 * - the pool is cut into segments of IO_TLB_SEGSIZE (128) slots and a run
 *   never crosses a segment: each slot keeps `list`, the free slots from it
 *   to the end of its segment (struct io_tlb_slot.list, set up by
 *   swiotlb_init_io_tlb_pool, kept by swiotlb_search_pool_area and
 *   swiotlb_release_slots), and a run of n slots may start where list >= n;
 * - so a mapping is at most IO_TLB_SEGSIZE × IO_TLB_SIZE = 256 KiB
 *   (swiotlb_find_slots refuses more; swiotlb_max_mapping_size);
 * - a mapping of a page or more starts on a page (swiotlb_search_pool_area:
 *   alloc_align_mask = PAGE_SIZE - 1 when no alignment is asked for), and
 *   the search then steps over unaligned slots (its `stride`);
 * - a run does not cross a multiple of the device's segment boundary
 *   (swiotlb_search_pool_area: iommu_is_span_boundary with
 *   dma_get_seg_boundary; bufferd's `segmentBoundary` constraint);
 * - the search starts where the last one ended (the area's index) and wraps
 *   to 0 past the end (wrap_area_index). bufferd has one area (nareas 1).
 * A refusal reads as Linux's ("swiotlb buffer is full (sz: …)", from
 * swiotlb_tbl_map_single) followed by the reason.
 */
import { BufferdError } from '../../protocol/errors.js';
import { formatSize } from '../../protocol/units.js';

/** log2 of the slot size (IO_TLB_SHIFT). */
export const IO_TLB_SHIFT = 11;
/** A slot: 2 KiB (IO_TLB_SIZE). */
export const SLOT = 1 << IO_TLB_SHIFT;
/** Slots in a segment: no mapping crosses one (IO_TLB_SEGSIZE). */
export const IO_TLB_SEGSIZE = 128;
/** The largest bounce mapping: one whole segment, 256 KiB. */
export const MAX_MAPPING = IO_TLB_SEGSIZE * SLOT;
const PAGE = 4096;

export class Swiotlb {
  readonly nslots: number;
  /** Free slots from each slot to the end of its segment (0: in use). */
  private readonly list: Uint16Array;
  /** Live runs by first slot: which device, how many slots. */
  private readonly runs = new Map<number, { device: string; n: number }>();
  /** Where the next search starts (the area's index). */
  private cursor = 0;
  usedSlots = 0;
  /** Slots in use per device. */
  readonly byDevice = new Map<string, number>();
  maps = 0;
  /** Fault injection (lib/faultinject.ts): the `bounce` point makes a map find the pool full. */
  faults: { shouldFail(point: 'bounce'): boolean } | null = null;
  full = 0;

  constructor(
    /** Physical address of the pool (page aligned). */
    readonly base: number,
    readonly size: number,
    /** The largest mapping: 256 KiB (Linux's, fixed), or less by config. */
    readonly maxMapping = MAX_MAPPING,
  ) {
    if (maxMapping > MAX_MAPPING) throw new RangeError(`a bounce mapping is at most ${formatSize(MAX_MAPPING)} (IO_TLB_SEGSIZE × IO_TLB_SIZE), not ${formatSize(maxMapping)}`);
    this.nslots = Math.floor(size / SLOT);
    this.list = new Uint16Array(this.nslots);
    // swiotlb_init_io_tlb_pool: list = min(IO_TLB_SEGSIZE - io_tlb_offset(i), nslabs - i)
    for (let i = 0; i < this.nslots; i++) this.list[i] = Math.min(IO_TLB_SEGSIZE - (i % IO_TLB_SEGSIZE), this.nslots - i);
  }

  /** Free slots from `slot` to the end of its segment (the kernel's io_tlb_slot.list). */
  freeRun(slot: number): number {
    return this.list[slot] ?? 0;
  }

  private wrap(index: number): number {
    return index >= this.nslots ? 0 : index;
  }

  private refuse(device: string, len: number, why: string, details: Record<string, unknown>): never {
    throw new BufferdError(
      'ENOMEM',
      `swiotlb buffer is full (sz: ${len} bytes), total ${this.nslots} (slots), used ${this.usedSlots} (slots): ${why}`,
      { device, ...details },
    );
  }

  /**
   * A run of slots for len bytes; its physical address. ENOMEM naming the
   * device and the reason otherwise. `boundary` (a power of two of at
   * least a page): the device's segment boundary, which the run may not cross.
   */
  map(device: string, len: number, boundary?: number): number {
    if (len > this.maxMapping) {
      this.refuse(
        device,
        len,
        this.maxMapping === MAX_MAPPING
          ? `device '${device}' needs a ${formatSize(len)} bounce mapping; a mapping may not cross a ${IO_TLB_SEGSIZE}-slot segment, so it is at most ${formatSize(MAX_MAPPING)} (IO_TLB_SEGSIZE × IO_TLB_SIZE)`
          : `device '${device}' needs a ${formatSize(len)} bounce mapping; the largest bounce mapping is ${formatSize(this.maxMapping)} (bounce.maxMapping)`,
        { len, maxMapping: this.maxMapping },
      );
    }
    const n = Math.max(1, Math.ceil(len / SLOT));
    const injected = this.faults?.shouldFail('bounce') === true;
    // swiotlb_search_pool_area: a page or more starts on a page; the search steps over unaligned slots
    const alignMask = (len >= PAGE ? PAGE - 1 : 0) | (SLOT - 1);
    const stride = (alignMask >> IO_TLB_SHIFT) + 1;
    // iommu_is_span_boundary(slot_index, nslots, nr_slots(tbl_dma_addr), max_slots), in slots
    const maxSlots = boundary === undefined ? 0 : boundary / SLOT;
    const shift = Math.floor(this.base / SLOT);
    const spans = (index: number) => maxSlots > 0 && ((shift + index) % maxSlots) + n > maxSlots;
    let found = -1;
    if (!injected && n <= this.nslots - this.usedSlots) {
      let index = this.cursor;
      for (let checked = 0; checked < this.nslots; ) {
        if ((this.base + index * SLOT) & alignMask) {
          index = this.wrap(index + 1);
          checked++;
          continue;
        }
        if (!spans(index) && this.list[index]! >= n) {
          found = index;
          break;
        }
        index = this.wrap(index + stride);
        checked += stride;
      }
    }
    if (found < 0) {
      this.full++;
      this.refuse(
        device,
        len,
        `device '${device}' needs ${n} contiguous slots (${formatSize(n * SLOT)})${len >= PAGE ? ' starting on a page' : ''} inside one ${IO_TLB_SEGSIZE}-slot segment${maxSlots > 0 ? `, not crossing a multiple of its ${formatSize(boundary!)} segment boundary` : ''}; ${this.nslots - this.usedSlots} of ${this.nslots} free and no such run`,
        { slots: n, free: this.nslots - this.usedSlots, total: this.nslots, ...(injected ? { injected: true } : {}) },
      );
    }
    this.list.fill(0, found, found + n);
    // the free slots before the run, in its segment, now end at the run
    let count = 0;
    for (let i = found - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && this.list[i] !== 0; i--) this.list[i] = ++count;
    this.runs.set(found, { device, n });
    this.usedSlots += n;
    this.byDevice.set(device, (this.byDevice.get(device) ?? 0) + n);
    this.cursor = this.wrap(found + n);
    this.maps++;
    return this.base + found * SLOT;
  }

  /** Give a run back (swiotlb_release_slots); checked whole before anything changes. */
  unmap(device: string, addr: number, len: number): void {
    const start = (addr - this.base) / SLOT;
    const n = Math.max(1, Math.ceil(len / SLOT));
    const run = this.runs.get(start);
    if (run === undefined) throw new RangeError(`no bounce mapping starts at 0x${addr.toString(16)}`);
    if (run.device !== device) throw new RangeError(`bounce mapping at 0x${addr.toString(16)} belongs to '${run.device}', not '${device}'`);
    if (run.n !== n) throw new RangeError(`bounce mapping at 0x${addr.toString(16)} is ${run.n} slots, not ${n}`);
    this.runs.delete(start);
    // merge with the free slots after the run (up to its segment's end), then with those before it
    const segEnd = Math.min((Math.floor(start / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE, this.nslots);
    let count = start + n < segEnd ? this.list[start + n]! : 0;
    for (let i = start + n - 1; i >= start; i--) this.list[i] = ++count;
    for (let i = start - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && this.list[i] !== 0; i--) this.list[i] = ++count;
    this.usedSlots -= n;
    const left = (this.byDevice.get(device) ?? 0) - n;
    if (left === 0) this.byDevice.delete(device);
    else this.byDevice.set(device, left);
  }

  contains(addr: number): boolean {
    return addr >= this.base && addr < this.base + this.nslots * SLOT;
  }
}
