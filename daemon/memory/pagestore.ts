/**
 * The contents of simulated physical memory, by physical address. Every
 * page frame belongs to a backing (backing.ts): its region's (a private
 * memfd when shared memory is available, JavaScript slabs otherwise), or —
 * once a buffer is mapped by clients — the buffer's own memfd, attached over
 * the buffer's frames, so that devices (by physical address), bounce copies,
 * CPU reads and writes and every process's mapping see the same bytes.
 *
 * Sparse: only pages written with non-zero data hold host memory;
 * everything else reads as zeros, so a 64 GiB machine starts small, and a
 * page zeroed is given back. Pure apart from the backings it is given.
 */
import { SlabBacking, PAGE, type Backing } from './backing.js';

export { PAGE } from './backing.js';
export const PAGE_SHIFT = 12;

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

/** A run of page frames. */
export interface PageRun {
  pfn: number;
  npages: number;
}

interface Span {
  pfn: number;
  end: number;
  backing: Backing;
}

export class PageStore {
  /** Default backings by frame range, sorted; frames outside them use `rest`. */
  private readonly spans: Span[] = [];
  private readonly rest = new SlabBacking();
  /** Frames whose bytes live elsewhere (a mapped buffer's memfd): pfn → backing and page index. */
  private readonly attached = new Map<number, { b: Backing; i: number }>();
  private last: Span | null = null;

  /** Frame ranges and their default backings (none: everything in JavaScript slabs). */
  constructor(spans: { pfn: number; npages: number; backing: Backing }[] = []) {
    for (const s of [...spans].sort((a, b) => a.pfn - b.pfn)) this.spans.push({ pfn: s.pfn, end: s.pfn + s.npages, backing: s.backing });
  }

  /** Pages holding host memory. */
  get residentPages(): number {
    let n = this.rest.resident;
    for (const s of this.spans) n += s.backing.resident;
    return n;
  }

  get residentBytes(): number {
    return this.residentPages * PAGE;
  }

  /** The default backing of a frame and its index there. */
  private home(pfn: number): { b: Backing; i: number } {
    let s = this.last;
    if (s === null || pfn < s.pfn || pfn >= s.end) {
      s = null;
      let lo = 0;
      let hi = this.spans.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const m = this.spans[mid]!;
        if (pfn < m.pfn) hi = mid - 1;
        else if (pfn >= m.end) lo = mid + 1;
        else {
          s = m;
          break;
        }
      }
      if (s === null) return { b: this.rest, i: pfn };
      this.last = s;
    }
    return { b: s.backing, i: pfn - s.pfn };
  }

  private locate(pfn: number): { b: Backing; i: number } {
    if (this.attached.size > 0) {
      const a = this.attached.get(pfn);
      if (a !== undefined) return a;
    }
    return this.home(pfn);
  }

  /**
   * Put `b`'s pages (in order, from page 0) over these frames: their bytes
   * are b's from now on. The frames' own pages are given back.
   */
  attach(runs: PageRun[], b: Backing): void {
    let i = 0;
    for (const r of runs) {
      for (let k = 0; k < r.npages; k++) {
        const h = this.home(r.pfn + k);
        h.b.drop(h.i, 1);
        this.attached.set(r.pfn + k, { b, i: i++ });
      }
    }
  }

  /** The frames' bytes are their own again (zero, until written). */
  detach(runs: PageRun[]): void {
    for (const r of runs) for (let k = 0; k < r.npages; k++) this.attached.delete(r.pfn + k);
  }

  /** Copy len bytes at physical address addr into dst[dstOff...]. */
  readInto(addr: number, len: number, dst: Uint8Array, dstOff = 0): void {
    forEachSpan(addr, len, PAGE, (pfn, inPage, n, done) => {
      const { b, i } = this.locate(pfn);
      const page = b.peek(i);
      if (page === null) dst.fill(0, dstOff + done, dstOff + done + n);
      else dst.set(page.subarray(inPage, inPage + n), dstOff + done);
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
      const { b, i } = this.locate(pfn);
      if (b.peek(i) === null && allZero(data, off, off + n)) return;
      b.page(i).set(data.subarray(off, off + n), inPage);
    });
  }

  /** Fill a physical range with one byte value. */
  fill(addr: number, len: number, value: number): void {
    if ((value & 0xff) === 0) {
      this.zeroBytes(addr, len);
      return;
    }
    forEachSpan(addr, len, PAGE, (pfn, inPage, n) => {
      const { b, i } = this.locate(pfn);
      b.page(i).fill(value, inPage, inPage + n);
    });
  }

  /** Zero whole pages [pfn, pfn + npages): give back their host memory. */
  zeroPages(pfn: number, npages: number): void {
    // nothing anywhere holds bytes (JavaScript memory, nothing written yet): already zeros
    if (this.spans.length === 0 && this.attached.size === 0 && this.rest.resident === 0) return;
    for (let p = pfn; p < pfn + npages; ) {
      const a = this.attached.size > 0 ? this.attached.get(p) : undefined;
      if (a !== undefined) {
        a.b.peek(a.i)?.fill(0);
        p++;
        continue;
      }
      // a run of frames in one default backing, given back at once
      const { b, i } = this.home(p);
      const span = this.last !== null && p >= this.last.pfn && p < this.last.end ? this.last.end : pfn + npages;
      const n = Math.min(pfn + npages, span, this.nextAttached(p, pfn + npages)) - p;
      b.drop(i, n);
      p += n;
    }
  }

  /** The first attached frame in [from, to), or `to`. */
  private nextAttached(from: number, to: number): number {
    if (this.attached.size === 0) return to;
    for (let p = from; p < to; p++) if (this.attached.has(p)) return p;
    return to;
  }

  /** Zero an arbitrary byte range. */
  zeroBytes(addr: number, len: number): void {
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
      const { b, i } = this.locate(pfn);
      const page = b.peek(i);
      if (page === null) return;
      page.fill(0, inPage, inPage + n);
      if (allZero(page, 0, PAGE) && !this.attached.has(pfn)) b.drop(i, 1);
    });
  }

  /** Copy len bytes between physical addresses (ranges may overlap). */
  copy(dst: number, src: number, len: number): void {
    const tmp = this.read(src, len);
    this.write(dst, tmp);
  }
}
