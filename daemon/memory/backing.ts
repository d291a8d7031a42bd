/**
 * Where a run of page frames keeps its bytes. A Backing holds pages by index
 * (0 .. npages-1): views of pages that hold host memory, and a way to give
 * pages back (they read as zeros afterwards).
 *
 * - SlabBacking: JavaScript memory, 1 MiB host slabs of 256 page slots (the
 *   garbage collector sees a few large buffers; a slab is dropped with its
 *   last page). Used when there is no shared memory to be had (no native
 *   calls) and by unit tests.
 * - MemfdBacking: a memfd (shared memory another process can map), mapped
 *   into the daemon 1 GiB window at a time as it is used. Sparse: untouched
 *   pages cost nothing; a dropped page's memory is returned
 *   (fallocate(PUNCH_HOLE)). A region's memfd is the daemon's alone and
 *   tracks which pages hold memory; a buffer's memfd is shared with the
 *   processes that map it, which write it behind the daemon's back, so every
 *   page counts as held.
 */
import { MAX_VIEW, type Mapped, type Native } from '../lib/native.js';

export const PAGE = 4096;

export interface Backing {
  readonly npages: number;
  /** A view of page i to read, or null when it holds no host memory (reads as zeros). */
  peek(i: number): Uint8Array | null;
  /** A view of page i to write (host memory is taken). */
  page(i: number): Uint8Array;
  /** Give back pages [i, i + n): they read as zeros. */
  drop(i: number, n: number): void;
  /** Pages holding host memory. */
  readonly resident: number;
}

const SLOTS = 256;

interface Slab {
  mem: Uint8Array;
  used: number;
  free: number[];
}

/** Page contents in JavaScript memory. */
export class SlabBacking implements Backing {
  /** page → slot (slab id * SLOTS + index). */
  private readonly slots = new Map<number, number>();
  private readonly slabs: (Slab | undefined)[] = [];
  private partial: number[] = [];
  private readonly freeIds: number[] = [];

  constructor(readonly npages: number = Number.MAX_SAFE_INTEGER) {}

  get resident(): number {
    return this.slots.size;
  }

  peek(i: number): Uint8Array | null {
    const slot = this.slots.get(i);
    if (slot === undefined) return null;
    const at = (slot % SLOTS) * PAGE;
    return this.slabs[Math.floor(slot / SLOTS)]!.mem.subarray(at, at + PAGE);
  }

  page(i: number): Uint8Array {
    let slot = this.slots.get(i);
    if (slot === undefined) {
      slot = this.newSlot();
      this.slots.set(i, slot);
    }
    const at = (slot % SLOTS) * PAGE;
    return this.slabs[Math.floor(slot / SLOTS)]!.mem.subarray(at, at + PAGE);
  }

  drop(i: number, n: number): void {
    if (this.slots.size === 0) return;
    if (n <= this.slots.size) {
      for (let p = i; p < i + n; p++) this.dropOne(p);
    } else {
      for (const p of [...this.slots.keys()]) if (p >= i && p < i + n) this.dropOne(p);
    }
  }

  private dropOne(i: number): void {
    const slot = this.slots.get(i);
    if (slot === undefined) return;
    this.slots.delete(i);
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

  private newSlot(): number {
    let id = this.partial[this.partial.length - 1];
    if (id === undefined) {
      id = this.freeIds.pop() ?? this.slabs.length;
      const free: number[] = [];
      for (let k = SLOTS - 1; k >= 0; k--) free.push(k);
      this.slabs[id] = { mem: new Uint8Array(SLOTS * PAGE), used: 0, free };
      this.partial.push(id);
    }
    const slab = this.slabs[id]!;
    const idx = slab.free.pop()!;
    slab.used++;
    if (slab.free.length === 0) this.partial.pop();
    return id * SLOTS + idx;
  }
}

const WINDOW_PAGES = MAX_VIEW / PAGE;

/** Page contents in a memfd, mapped a window at a time. */
export class MemfdBacking implements Backing {
  private readonly windows = new Map<number, Mapped>();
  /** For a private memfd: a byte per page of each window, 1 when the page holds memory. */
  private readonly held = new Map<number, Uint8Array>();
  private count = 0;
  private closed = false;

  constructor(
    private readonly sys: Native,
    /** The memfd (owned: closed by close()). */
    readonly fd: number,
    readonly npages: number,
    /** Processes other than the daemon may write it: every page counts as held. */
    readonly shared: boolean,
  ) {}

  /** A new sparse memfd of npages pages. */
  static create(sys: Native, name: string, npages: number, shared: boolean): MemfdBacking {
    const fd = sys.memfd(name, npages * PAGE);
    // nobody else may reopen it through /proc/<pid>/fd (memfds are created 0777)
    sys.chmod(fd, 0o600);
    return new MemfdBacking(sys, fd, npages, shared);
  }

  get resident(): number {
    return this.shared ? this.npages : this.count;
  }

  private window(w: number): Mapped {
    let m = this.windows.get(w);
    if (m === undefined) {
      if (this.closed) throw new Error('memfd backing used after close');
      const first = w * WINDOW_PAGES;
      m = this.sys.map(this.fd, first * PAGE, Math.min(WINDOW_PAGES, this.npages - first) * PAGE, true);
      this.windows.set(w, m);
    }
    return m;
  }

  private view(i: number): Uint8Array {
    const w = Math.floor(i / WINDOW_PAGES);
    const at = (i - w * WINDOW_PAGES) * PAGE;
    return this.window(w).bytes.subarray(at, at + PAGE);
  }

  peek(i: number): Uint8Array | null {
    if (!this.shared) {
      const bits = this.held.get(Math.floor(i / WINDOW_PAGES));
      if (bits === undefined || bits[i % WINDOW_PAGES] === 0) return null;
    }
    return this.view(i);
  }

  page(i: number): Uint8Array {
    if (!this.shared) {
      const w = Math.floor(i / WINDOW_PAGES);
      let bits = this.held.get(w);
      if (bits === undefined) this.held.set(w, (bits = new Uint8Array(Math.min(WINDOW_PAGES, this.npages - w * WINDOW_PAGES))));
      if (bits[i % WINDOW_PAGES] === 0) {
        bits[i % WINDOW_PAGES] = 1;
        this.count++;
      }
    }
    return this.view(i);
  }

  drop(i: number, n: number): void {
    if (n <= 0) return;
    if (!this.shared) {
      // punch only what holds memory, in runs
      let any = false;
      for (let p = i; p < i + n; ) {
        const w = Math.floor(p / WINDOW_PAGES);
        const end = Math.min(i + n, (w + 1) * WINDOW_PAGES);
        const bits = this.held.get(w);
        if (bits !== undefined) {
          for (let q = p; q < end; q++) {
            if (bits[q % WINDOW_PAGES] === 1) {
              bits[q % WINDOW_PAGES] = 0;
              this.count--;
              any = true;
            }
          }
        }
        p = end;
      }
      if (!any) return;
    }
    this.sys.punch(this.fd, i * PAGE, n * PAGE);
  }

  /** Unmap every window and close the memfd (other holders keep the file). No view of it may be used after. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.windows.values()) this.sys.unmap(m);
    this.windows.clear();
    this.held.clear();
    this.sys.close(this.fd);
  }
}
