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
 * frames then point at: what devices see) are separate copies; sync end
 * copies the CPU view to memory (clean), sync start copies memory to the CPU
 * view (invalidate). Writes made through a mapping while the device owns the
 * buffer are found by comparing the CPU view with what it was when the
 * device took the buffer (memory then, or the page saved before the device
 * first wrote it). Otherwise the two are one: the mapping is memory.
 */
import { BufferdError } from '../../protocol/errors.js';
import { MemfdBacking, PAGE, type Backing } from '../memory/backing.js';
import type { PageRun, PageStore } from '../memory/pagestore.js';
import type { Native } from '../lib/native.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { PhysBuffer } from '../alloc/pool.js';

export interface Shm {
  readonly buffer: SharedBuffer;
  /** The CPU's view: the memfd processes map. */
  readonly cpu: MemfdBacking;
  /** Memory as devices see it while split from the CPU view; null when the view is memory. */
  mem: MemfdBacking | null;
  readonly runs: PageRun[];
  /** Bytes handed out: the buffer's size rounded up to whole pages. */
  readonly bytes: number;
  readonly dev: bigint;
  readonly ino: bigint;
  /** While split and device-owned: pages of memory saved before the device first wrote them. */
  readonly saved: Map<number, Uint8Array>;
  /** Pages where the CPU view already differed from memory when the device took the buffer. */
  readonly unpublished: Set<number>;
  /** CPU writes through a mapping already reported for this device ownership. */
  reported: boolean;
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

  /**
   * Give a buffer its own memfd with `view` as the CPU's view of its bytes
   * and `memory` as what devices see (the same bytes unless `split`).
   */
  promote(b: SharedBuffer, view: (out: Uint8Array) => void, memory: ((out: Uint8Array) => void) | null): Shm {
    const sys = this.sys!;
    const bytes = Math.ceil(b.phys.size / PAGE) * PAGE;
    const runs = pageRuns(b.phys, bytes);
    const cpu = MemfdBacking.create(sys, `bufferd-buffer-${b.id}`, bytes / PAGE, true);
    const fill = (backing: Backing, read: (out: Uint8Array) => void) => {
      const tmp = Buffer.allocUnsafe(bytes);
      read(tmp);
      writeBacking(backing, 0, tmp);
    };
    fill(cpu, view);
    let mem: MemfdBacking | null = null;
    if (memory !== null) {
      mem = MemfdBacking.create(sys, `bufferd-memory-${b.id}`, bytes / PAGE, true);
      fill(mem, memory);
    }
    this.store.attach(runs, mem ?? cpu);
    const st = sys.stat(cpu.fd);
    const shm: Shm = { buffer: b, cpu, mem, runs, bytes, dev: st.dev, ino: st.ino, saved: new Map(), unpublished: new Set(), reported: false };
    this.shms.set(b, shm);
    this.byInode.set(`${st.dev}:${st.ino}`, shm);
    return shm;
  }

  /** A new fd for the buffer's memfd, read-only or read-write (the caller closes it). */
  fd(shm: Shm, readOnly: boolean): number {
    return this.sys!.reopen(shm.cpu.fd, readOnly);
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

  /** Split the CPU view from memory (a non-coherent device maps a write-back buffer): memory starts as the view. */
  split(shm: Shm): void {
    if (shm.mem !== null) return;
    const mem = MemfdBacking.create(this.sys!, `bufferd-memory-${shm.buffer.id}`, shm.bytes / PAGE, true);
    copyPages(shm.cpu, mem, 0, shm.bytes / PAGE);
    shm.mem = mem;
    this.store.attach(shm.runs, mem);
    this.baseline(shm);
  }

  /** The CPU view is memory again (the last non-coherent device let go): the view takes memory's bytes. */
  unsplit(shm: Shm): void {
    if (shm.mem === null) return;
    copyPages(shm.mem, shm.cpu, 0, shm.bytes / PAGE);
    this.store.attach(shm.runs, shm.cpu);
    shm.mem.close();
    shm.mem = null;
    shm.saved.clear();
    shm.unpublished.clear();
  }

  /** Clean: memory takes the CPU view's bytes of [off, off + len) (whole pages). */
  publish(shm: Shm, off: number, len: number): void {
    if (shm.mem === null || len <= 0) return;
    const first = Math.floor(off / PAGE);
    copyPages(shm.cpu, shm.mem, first, Math.ceil((off + len) / PAGE) - first);
  }

  /** Invalidate: the CPU view takes memory's bytes of [off, off + len) (whole pages). */
  refresh(shm: Shm, off: number, len: number): void {
    if (shm.mem === null || len <= 0) return;
    const first = Math.floor(off / PAGE);
    copyPages(shm.mem, shm.cpu, first, Math.ceil((off + len) / PAGE) - first);
  }

  /** The device takes the buffer: from now on, a change of the CPU view is a write made while it owned it. */
  baseline(shm: Shm): void {
    shm.saved.clear();
    shm.unpublished.clear();
    shm.reported = false;
    if (shm.mem === null) return;
    for (let i = 0; i < shm.bytes / PAGE; i++) if (!samePage(shm.cpu.peek(i), shm.mem.peek(i))) shm.unpublished.add(i);
  }

  /** Before the device writes memory in [off, off + len): keep the pages as they were when it took the buffer. */
  beforeDeviceWrite(shm: Shm, off: number, len: number): void {
    if (shm.mem === null || len <= 0) return;
    for (let i = Math.floor(off / PAGE); i < Math.ceil((off + len) / PAGE); i++) {
      if (shm.saved.has(i)) continue;
      const p = shm.mem.peek(i);
      shm.saved.set(i, p === null ? new Uint8Array(PAGE) : Uint8Array.from(p));
    }
  }

  /**
   * Pages of [off, off + len) where the CPU view differs from what the
   * device was given: `all` counts unpublished ones too (what a device read
   * misses), otherwise only pages written after the device took the buffer.
   */
  changed(shm: Shm, off: number, len: number, all: boolean): number {
    if (shm.mem === null || len <= 0) return 0;
    let n = 0;
    for (let i = Math.floor(off / PAGE); i < Math.ceil((off + len) / PAGE); i++) {
      if (!all && shm.unpublished.has(i)) continue;
      const expected = shm.saved.get(i) ?? shm.mem.peek(i);
      if (!samePage(shm.cpu.peek(i), expected)) n++;
    }
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
    shm.cpu.close();
  }
}

function samePage(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) {
    const x = a ?? b;
    return x === null || x.every((v) => v === 0);
  }
  return Buffer.compare(a, b) === 0;
}
