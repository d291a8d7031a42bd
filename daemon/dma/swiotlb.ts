/**
 * The bounce pool (swiotlb): physically contiguous memory below 4 GiB,
 * reserved at start-up and cut into 2 KiB slots (IO_TLB_SIZE). A device
 * that cannot reach a buffer segment through its DMA mask is given a run of
 * slots instead, and the data is copied between the two. A mapping is at
 * most `maxMapping` bytes (Linux: 128 slots = 256 KiB). Pure: no I/O.
 */
import { BufferdError } from '../../protocol/errors.js';
import { formatSize } from '../../protocol/units.js';

export const SLOT = 2048;

export class Swiotlb {
  readonly nslots: number;
  private readonly used: Uint8Array;
  /** Live runs by first slot: which device, how many slots. */
  private readonly runs = new Map<number, { device: string; n: number }>();
  private cursor = 0;
  usedSlots = 0;
  /** Slots in use per device. */
  readonly byDevice = new Map<string, number>();
  maps = 0;
  /** Fault injection (point `bounce`: the search finds no run), or null; lib/faultinject.ts. */
  faults: { shouldFail(point: 'bounce'): boolean } | null = null;
  full = 0;

  constructor(
    /** Physical address of the pool. */
    readonly base: number,
    readonly size: number,
    readonly maxMapping = 256 * 1024,
  ) {
    this.nslots = Math.floor(size / SLOT);
    this.used = new Uint8Array(this.nslots);
  }

  /** A run of slots for len bytes; its physical address. ENOMEM naming the device when full. */
  map(device: string, len: number): number {
    if (len > this.maxMapping) {
      throw new BufferdError(
        'ENOMEM',
        `bounce pool: a ${formatSize(len)} segment for device '${device}' exceeds the largest bounce mapping (${formatSize(this.maxMapping)})`,
        { device, len, maxMapping: this.maxMapping },
      );
    }
    const n = Math.ceil(len / SLOT);
    // the `bounce` fault point: the search finds no run, as when the pool is full
    const injected = this.faults?.shouldFail('bounce') === true;
    // next fit from a rotating cursor, as swiotlb searches from its index
    for (let tried = 0; !injected && tried < this.nslots; tried++) {
      const start = (this.cursor + tried) % this.nslots;
      if (start + n > this.nslots) continue;
      let ok = true;
      for (let i = start; i < start + n; i++) {
        if (this.used[i] !== 0) {
          ok = false;
          tried += i - start;
          break;
        }
      }
      if (!ok) continue;
      this.used.fill(1, start, start + n);
      this.runs.set(start, { device, n });
      this.usedSlots += n;
      this.byDevice.set(device, (this.byDevice.get(device) ?? 0) + n);
      this.cursor = (start + n) % this.nslots;
      this.maps++;
      return this.base + start * SLOT;
    }
    this.full++;
    throw new BufferdError(
      'ENOMEM',
      `bounce pool full: device '${device}' needs ${n} slots (${formatSize(n * SLOT)}), ${this.nslots - this.usedSlots} of ${this.nslots} free and none contiguous enough`,
      { device, slots: n, free: this.nslots - this.usedSlots, total: this.nslots, ...(injected ? { injected: true } : {}) },
    );
  }

  /** Give a run back; checked whole before anything changes. */
  unmap(device: string, addr: number, len: number): void {
    const start = (addr - this.base) / SLOT;
    const n = Math.ceil(len / SLOT);
    const run = this.runs.get(start);
    if (run === undefined) throw new RangeError(`no bounce mapping starts at 0x${addr.toString(16)}`);
    if (run.device !== device) throw new RangeError(`bounce mapping at 0x${addr.toString(16)} belongs to '${run.device}', not '${device}'`);
    if (run.n !== n) throw new RangeError(`bounce mapping at 0x${addr.toString(16)} is ${run.n} slots, not ${n}`);
    this.runs.delete(start);
    this.used.fill(0, start, start + n);
    this.usedSlots -= n;
    const left = (this.byDevice.get(device) ?? 0) - n;
    if (left === 0) this.byDevice.delete(device);
    else this.byDevice.set(device, left);
  }

  contains(addr: number): boolean {
    return addr >= this.base && addr < this.base + this.nslots * SLOT;
  }
}
