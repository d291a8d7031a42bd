/**
 * Sparse contents of simulated physical memory. Only pages that were
 * written with non-zero data hold host memory; everything else reads as
 * zeros, so a 64 GiB machine starts small. Pure: no I/O.
 *
 * Page contents live in 1 MiB host slabs of 256 page slots (a map from page
 * frame to slot number), not one host object per page: the garbage
 * collector sees a few large buffers, and a slab is dropped as soon as its
 * last page is zeroed.
 */
export const PAGE_SHIFT = 12;
export const PAGE = 1 << PAGE_SHIFT;
const SLOTS = 256;

/**
 * Visit [addr, addr + len) cut at multiples of `unit` (pages, cache lines):
 * fn(unit index, offset in the unit, bytes, offset in the range).
 */
export function forEachSpan(addr: number, len: number, unit: number, fn: (idx: number, inUnit: number, n: number, done: number) => void): void {
  let a = addr;
  let done = 0;
  while (done < len) {
    const idx = Math.floor(a / unit);
    const inUnit = a - idx * unit;
    const n = Math.min(unit - inUnit, len - done);
    fn(idx, inUnit, n, done);
    a += n;
    done += n;
  }
}

function allZero(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

interface Slab {
  mem: Uint8Array;
  used: number;
  free: number[];
}

export class PageStore {
  /** pfn → slot (slab id * SLOTS + index). */
  private readonly slots = new Map<number, number>();
  private readonly slabs: (Slab | undefined)[] = [];
  /** Slab ids with free slots. */
  private partial: number[] = [];
  /** Ids of dropped slabs, reused first. */
  private readonly freeIds: number[] = [];

  /** Pages holding host memory. */
  get residentPages(): number {
    return this.slots.size;
  }

  get residentBytes(): number {
    return this.slots.size * PAGE;
  }

  private newSlot(): number {
    let id = this.partial[this.partial.length - 1];
    if (id === undefined) {
      id = this.freeIds.pop() ?? this.slabs.length;
      const free: number[] = [];
      for (let i = SLOTS - 1; i >= 0; i--) free.push(i);
      this.slabs[id] = { mem: new Uint8Array(SLOTS * PAGE), used: 0, free };
      this.partial.push(id);
    }
    const slab = this.slabs[id]!;
    const idx = slab.free.pop()!;
    slab.used++;
    if (slab.free.length === 0) this.partial.pop();
    return id * SLOTS + idx;
  }

  private dropSlot(slot: number): void {
    const id = Math.floor(slot / SLOTS);
    const slab = this.slabs[id]!;
    const idx = slot - id * SLOTS;
    slab.mem.fill(0, idx * PAGE, (idx + 1) * PAGE);
    slab.used--;
    if (slab.free.length === 0) this.partial.push(id);
    slab.free.push(idx);
    if (slab.used === 0) {
      this.slabs[id] = undefined;
      this.freeIds.push(id);
      this.partial = this.partial.filter((x) => x !== id);
    }
  }

  private mem(slot: number): Uint8Array {
    return this.slabs[Math.floor(slot / SLOTS)]!.mem;
  }

  private static at(slot: number): number {
    return (slot % SLOTS) * PAGE;
  }

  /** Copy len bytes at physical address addr into dst[dstOff...]. */
  readInto(addr: number, len: number, dst: Uint8Array, dstOff = 0): void {
    forEachSpan(addr, len, PAGE, (pfn, inPage, n, done) => {
      const slot = this.slots.get(pfn);
      if (slot === undefined) {
        dst.fill(0, dstOff + done, dstOff + done + n);
      } else {
        const at = PageStore.at(slot) + inPage;
        dst.set(this.mem(slot).subarray(at, at + n), dstOff + done);
      }
    });
  }

  read(addr: number, len: number): Buffer {
    const out = Buffer.allocUnsafe(len);
    this.readInto(addr, len, out, 0);
    return out;
  }

  /** Write bytes at a physical address. Zero data on untouched pages costs nothing. */
  write(addr: number, data: Uint8Array, srcOff = 0, len = data.length - srcOff): void {
    forEachSpan(addr, len, PAGE, (pfn, inPage, n, done) => {
      const off = srcOff + done;
      let slot = this.slots.get(pfn);
      if (slot === undefined) {
        if (allZero(data, off, off + n)) return;
        slot = this.newSlot();
        this.slots.set(pfn, slot);
      }
      this.mem(slot).set(data.subarray(off, off + n), PageStore.at(slot) + inPage);
    });
  }

  /** Fill a physical range with one byte value. */
  fill(addr: number, len: number, value: number): void {
    if ((value & 0xff) === 0) {
      this.zeroBytes(addr, len);
      return;
    }
    const chunk = Buffer.alloc(Math.min(len, PAGE), value);
    forEachSpan(addr, len, PAGE, (pfn, inPage, n) => this.write(pfn * PAGE + inPage, chunk, 0, n));
  }

  /** Zero whole pages [pfn, pfn + npages): drop their host memory. */
  zeroPages(pfn: number, npages: number): void {
    if (this.slots.size === 0) return;
    if (npages <= this.slots.size) {
      for (let p = pfn; p < pfn + npages; p++) this.dropPage(p);
    } else {
      for (const p of [...this.slots.keys()]) if (p >= pfn && p < pfn + npages) this.dropPage(p);
    }
  }

  private dropPage(pfn: number): void {
    const slot = this.slots.get(pfn);
    if (slot === undefined) return;
    this.slots.delete(pfn);
    this.dropSlot(slot);
  }

  /** Zero an arbitrary byte range. */
  zeroBytes(addr: number, len: number): void {
    if (this.slots.size === 0) return;
    const end = addr + len;
    const firstFull = Math.ceil(addr / PAGE);
    const lastFull = Math.floor(end / PAGE);
    if (firstFull >= lastFull) {
      this.clearPartial(addr, len);
      return;
    }
    if (addr < firstFull * PAGE) this.clearPartial(addr, firstFull * PAGE - addr);
    this.zeroPages(firstFull, lastFull - firstFull);
    if (end > lastFull * PAGE) this.clearPartial(lastFull * PAGE, end - lastFull * PAGE);
  }

  private clearPartial(addr: number, len: number): void {
    forEachSpan(addr, len, PAGE, (pfn, inPage, n) => {
      const slot = this.slots.get(pfn);
      if (slot === undefined) return;
      const mem = this.mem(slot);
      const at = PageStore.at(slot);
      mem.fill(0, at + inPage, at + inPage + n);
      if (allZero(mem, at, at + PAGE)) this.dropPage(pfn);
    });
  }

  /** Copy len bytes between physical addresses (ranges may overlap). */
  copy(dst: number, src: number, len: number): void {
    const tmp = this.read(src, len);
    this.write(dst, tmp);
  }
}
