/**
 * A buffer's shared memory: once a process maps a buffer or takes an fd for
 * it, the buffer gets a memfd of its own (its bytes, page-rounded) attached
 * over its page frames, so every mapping, the daemon's reads and writes and
 * devices by physical address see the same bytes. A memfd is never reused:
 * when the buffer is freed the daemon closes its own fd and the frames go
 * back to their region; a process still holding the fd keeps a private,
 * orphaned copy that no other buffer ever shares.
 *
 * Only a buffer that owns its pages can be shared this way (direct and large
 * buffers, and small ones aligned to 4096: their size class is whole
 * pages); a slab region shares its page with other buffers.
 *
 * Coherency with real mappings: a mapping is the CPU's view. While a
 * write-back buffer is registered with a non-coherent device, the CPU view
 * (`cpu`, the memfd processes map) and memory (`mem`, a second memfd the
 * frames then point at: what devices see) are separate copies, and `snap`
 * (a third, private to the daemon) holds the view's clean content: what the
 * CPU last loaded or wrote back. A cache line of the view that differs from
 * `snap` is dirty. sync end writes the dirty lines back to memory (clean:
 * lines that are merely stale are not written back, as on real hardware),
 * sync start gives the view memory's bytes (invalidate). Lines dirtied while
 * the device owns the buffer are CPU writes made through a mapping then.
 * Otherwise the view and memory are one: the mapping is memory.
 */
import { BufferdError } from '../../protocol/errors.js';
import { MemfdBacking, PAGE, type Backing } from '../memory/backing.js';
import type { PageRun, PageStore } from '../memory/pagestore.js';
import type { Native } from '../lib/native.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { PhysBuffer } from '../alloc/pool.js';

/** Fills `out` with the bytes of [off, off + len) of a buffer. */
export type Filler = (off: number, len: number, out: Uint8Array) => void;

const FILL_CHUNK = 1 << 20;

export interface Shm {
  readonly buffer: SharedBuffer;
  /** The CPU's view: the memfd processes map. */
  readonly cpu: MemfdBacking;
  /** Memory as devices see it while split from the CPU view; null when the view is memory. */
  mem: MemfdBacking | null;
  /** While split: the CPU view's clean content (a line of the view that differs is dirty). */
  snap: MemfdBacking | null;
  readonly runs: PageRun[];
  /** Bytes handed out: the buffer's size rounded up to whole pages. */
  readonly bytes: number;
  readonly dev: bigint;
  readonly ino: bigint;
  /** Pages that already held dirty lines when the device took the buffer. */
  readonly unpublished: Set<number>;
  /** CPU writes through a mapping already reported for this device ownership. */
  reported: boolean;
  /** A read-only open file description of `cpu`, once one was handed out (-1 before). */
  readOnlyFd: number;
}

/** The frames of a buffer's first `bytes` bytes, in buffer order. */
export function pageRuns(b: PhysBuffer, bytes: number): PageRun[] {
  const runs: PageRun[] = [];
  let left = bytes;
  for (const s of b.segments) {
    if (left <= 0) break;
    const n = Math.ceil(Math.min(left, s.len) / PAGE);
    const pfn = s.addr / PAGE;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.pfn + last.npages === pfn) last.npages += n;
    else runs.push({ pfn, npages: n });
    left -= n * PAGE;
  }
  return runs;
}

/** Why a buffer cannot be shared page by page, or null when it can. */
export function notOwnPages(b: PhysBuffer): string | null {
  const bytes = Math.ceil(b.size / PAGE) * PAGE;
  if (b.kind === 'direct') return null;
  if (b.addr % PAGE === 0 && bytes <= b.usize) return null;
  return `buffer ${b.id} is a ${b.usize}-byte slab region sharing its page with other buffers: only a buffer that owns its pages can be mapped or handed out as an fd (every dma-buf does); allocate it with align: 4096 (its size then rounds up to whole pages) or at 16 KiB or more`;
}

/** Copy [off, off + len) of a backing into out (holes read as zeros). */
export function readBacking(b: Backing, off: number, len: number, out: Uint8Array, outOff = 0): void {
  for (let done = 0; done < len; ) {
    const i = Math.floor((off + done) / PAGE);
    const at = off + done - i * PAGE;
    const n = Math.min(PAGE - at, len - done);
    const page = b.peek(i);
    if (page === null) out.fill(0, outOff + done, outOff + done + n);
    else out.set(page.subarray(at, at + n), outOff + done);
    done += n;
  }
}

/** Write data at off into a backing. */
export function writeBacking(b: Backing, off: number, data: Uint8Array, dataOff = 0, len = data.length - dataOff): void {
  for (let done = 0; done < len; ) {
    const i = Math.floor((off + done) / PAGE);
    const at = off + done - i * PAGE;
    const n = Math.min(PAGE - at, len - done);
    b.page(i).set(data.subarray(dataOff + done, dataOff + done + n), at);
    done += n;
  }
}

/** Copy whole pages [first, first + n) from one backing to another. */
function copyPages(from: Backing, to: Backing, first: number, n: number): void {
  for (let i = first; i < first + n; i++) {
    const src = from.peek(i);
    if (src === null) to.peek(i)?.fill(0);
    else to.page(i).set(src);
  }
}

export class SharedMemory {
  private readonly shms = new Map<SharedBuffer, Shm>();
  private readonly byInode = new Map<string, Shm>();

  constructor(
    private readonly sys: Native | null,
    private readonly store: PageStore,
    /** Why there is no shared memory (for ENOTSUP), when sys is null. */
    private readonly reason = 'native system calls are not available',
    /** The CPU cache line: what sync end writes back when any byte of it is dirty. */
    private readonly line = 64,
  ) {}

  get available(): boolean {
    return this.sys !== null;
  }

  /** ENOTSUP, naming why, when the daemon has no shared memory. */
  need(what: string): void {
    if (this.sys === null) throw new BufferdError('ENOTSUP', `${what} needs shared memory, which this daemon does not have: ${this.reason}`, { reason: this.reason });
  }

  get count(): number {
    return this.shms.size;
  }

  of(b: SharedBuffer): Shm | undefined {
    return this.shms.get(b);
  }

  /** The buffer whose memfd this is (by device and inode), if it is still a live buffer's. */
  find(dev: bigint, ino: bigint): Shm | undefined {
    return this.byInode.get(`${dev}:${ino}`);
  }

  /** A new sparse memfd filled by `read(off, len, out)`, chunk by chunk (pages of zeros stay holes). */
  private filled(name: string, bytes: number, read: Filler): MemfdBacking {
    const m = MemfdBacking.create(this.sys!, name, bytes / PAGE, true);
    const tmp = Buffer.allocUnsafe(Math.min(bytes, FILL_CHUNK));
    for (let off = 0; off < bytes; off += FILL_CHUNK) {
      const n = Math.min(FILL_CHUNK, bytes - off);
      const out = tmp.subarray(0, n);
      read(off, n, out);
      for (let at = 0; at < n; at += PAGE) {
        const pg = out.subarray(at, at + PAGE);
        if (!isZero(pg)) m.page((off + at) / PAGE).set(pg);
      }
    }
    return m;
  }

  /**
   * Give a buffer its own memfd with `view` as the CPU's view of its bytes.
   * Split (`memory` given): `memory` is what devices see and `clean` the
   * view's clean content (the view where its dirty lines are memory).
   */
  promote(b: SharedBuffer, view: Filler, split: { memory: Filler; clean: Filler } | null): Shm {
    const sys = this.sys!;
    const bytes = Math.ceil(b.phys.size / PAGE) * PAGE;
    const runs = pageRuns(b.phys, bytes);
    const cpu = this.filled(`bufferd-buffer-${b.id}`, bytes, view);
    const mem = split === null ? null : this.filled(`bufferd-memory-${b.id}`, bytes, split.memory);
    const snap = split === null ? null : this.filled(`bufferd-clean-${b.id}`, bytes, split.clean);
    this.store.attach(runs, mem ?? cpu);
    const st = sys.stat(cpu.fd);
    const shm: Shm = { buffer: b, cpu, mem, snap, runs, bytes, dev: st.dev, ino: st.ino, unpublished: new Set(), reported: false, readOnlyFd: -1 };
    this.shms.set(b, shm);
    this.byInode.set(`${st.dev}:${st.ino}`, shm);
    return shm;
  }

  /**
   * A descriptor for the buffer's memfd to send, read-write (the daemon's
   * own: it is sealed against resizing, so a holder can only write it) or
   * read-only (one open file description, made on first use). Owned by the
   * buffer: do not close it.
   */
  fd(shm: Shm, readOnly: boolean): number {
    if (!readOnly) return shm.cpu.fd;
    if (shm.readOnlyFd < 0) shm.readOnlyFd = this.sys!.reopen(shm.cpu.fd, true);
    return shm.readOnlyFd;
  }

  close(fd: number): void {
    this.sys?.close(fd);
  }

  stat(fd: number): { dev: bigint; ino: bigint } {
    return this.sys!.stat(fd);
  }

  accessMode(fd: number): 'read' | 'write' | 'readwrite' {
    return this.sys!.accessMode(fd);
  }

  /** Split the CPU view from memory (a non-coherent device maps a write-back buffer): memory starts as the view, all clean. */
  split(shm: Shm): void {
    if (shm.mem !== null) return;
    const n = shm.bytes / PAGE;
    const mem = MemfdBacking.create(this.sys!, `bufferd-memory-${shm.buffer.id}`, n, true);
    const snap = MemfdBacking.create(this.sys!, `bufferd-clean-${shm.buffer.id}`, n, true);
    copyPages(shm.cpu, mem, 0, n);
    copyPages(shm.cpu, snap, 0, n);
    shm.mem = mem;
    shm.snap = snap;
    this.store.attach(shm.runs, mem);
    this.baseline(shm);
  }

  /** The CPU view is memory again (the last non-coherent device let go): the view takes memory's bytes. */
  unsplit(shm: Shm): void {
    if (shm.mem === null) return;
    copyPages(shm.mem, shm.cpu, 0, shm.bytes / PAGE);
    this.store.attach(shm.runs, shm.cpu);
    shm.mem.close();
    shm.snap?.close();
    shm.mem = null;
    shm.snap = null;
    shm.unpublished.clear();
  }

  /** Lines of page i in [lo, hi) (byte offsets within the page) where the view differs from its clean content. */
  private eachDirtyLine(shm: Shm, i: number, lo: number, hi: number, fn: (from: number, to: number, cpu: Uint8Array | null, snap: Uint8Array | null) => void): void {
    const cpu = shm.cpu.peek(i);
    const snap = shm.snap!.peek(i);
    if (samePage(cpu, snap)) return;
    const L = this.line;
    for (let a = Math.floor(lo / L) * L; a < hi; a += L) {
      const b = Math.min(a + L, PAGE);
      if (!sameRange(cpu, snap, a, b)) fn(a, b, cpu, snap);
    }
  }

  /** Pages [first, end) touched by [off, off + len), with each one's byte range. */
  private pages(off: number, len: number, fn: (i: number, lo: number, hi: number) => void): void {
    for (let i = Math.floor(off / PAGE); i < Math.ceil((off + len) / PAGE); i++) {
      fn(i, Math.max(off - i * PAGE, 0), Math.min(off + len - i * PAGE, PAGE));
    }
  }

  /** Clean: the dirty lines of [off, off + len) are written back to memory and are clean again. Returns the lines written. */
  publish(shm: Shm, off: number, len: number): number {
    if (shm.mem === null || len <= 0) return 0;
    let lines = 0;
    this.pages(off, len, (i, lo, hi) =>
      this.eachDirtyLine(shm, i, lo, hi, (a, b, cpu) => {
        const src = cpu === null ? new Uint8Array(b - a) : cpu.subarray(a, b);
        shm.mem!.page(i).set(src, a);
        shm.snap!.page(i).set(src, a);
        lines++;
      }),
    );
    return lines;
  }

  /** Invalidate: the view of the lines of [off, off + len) takes memory's bytes (dirty ones are dropped). Returns the lines. */
  refresh(shm: Shm, off: number, len: number): number {
    if (shm.mem === null || len <= 0) return 0;
    const L = this.line;
    const lo = Math.floor(off / L) * L;
    const hi = Math.min(Math.ceil((off + len) / L) * L, shm.bytes);
    this.pages(lo, hi - lo, (i, a, b) => {
      const m = shm.mem!.peek(i);
      const src = m === null ? new Uint8Array(b - a) : m.subarray(a, b);
      for (const to of [shm.cpu, shm.snap!]) {
        const p = to.peek(i);
        if (p !== null || m !== null) to.page(i).set(src, a);
      }
    });
    return (hi - lo) / L;
  }

  /** The device takes the buffer: lines dirtied from now on are CPU writes made while it owned it. */
  baseline(shm: Shm): void {
    shm.unpublished.clear();
    shm.reported = false;
    if (shm.mem === null) return;
    for (let i = 0; i < shm.bytes / PAGE; i++) if (!samePage(shm.cpu.peek(i), shm.snap!.peek(i))) shm.unpublished.add(i);
  }

  /**
   * Pages of [off, off + len) holding dirty lines: `all` counts those that
   * were dirty when the device took the buffer too (what a device read
   * misses), otherwise only pages written after.
   */
  changed(shm: Shm, off: number, len: number, all: boolean): number {
    if (shm.mem === null || len <= 0) return 0;
    let n = 0;
    this.pages(off, len, (i, lo, hi) => {
      if (!all && shm.unpublished.has(i)) return;
      let dirty = false;
      this.eachDirtyLine(shm, i, lo, hi, () => (dirty = true));
      if (dirty) n++;
    });
    return n;
  }

  /** The buffer is freed: its frames are the region's again, the daemon's fds close (holders keep their copy). */
  release(b: SharedBuffer): void {
    const shm = this.shms.get(b);
    if (shm === undefined) return;
    this.shms.delete(b);
    this.byInode.delete(`${shm.dev}:${shm.ino}`);
    this.store.detach(shm.runs);
    shm.mem?.close();
    shm.snap?.close();
    if (shm.readOnlyFd >= 0) this.sys!.close(shm.readOnlyFd);
    shm.cpu.close();
  }
}

const ZERO = new Uint8Array(PAGE);

function isZero(p: Uint8Array): boolean {
  return Buffer.compare(p, ZERO.subarray(0, p.length)) === 0;
}

function samePage(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) {
    const x = a ?? b;
    return x === null || isZero(x);
  }
  return Buffer.compare(a, b) === 0;
}

/** Bytes [lo, hi) of two pages (null: zeros) are equal. */
function sameRange(a: Uint8Array | null, b: Uint8Array | null, lo: number, hi: number): boolean {
  return samePage(a === null ? null : a.subarray(lo, hi), b === null ? null : b.subarray(lo, hi));
}
