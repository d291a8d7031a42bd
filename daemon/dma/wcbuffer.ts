/**
 * The CPU's write-combine buffer: writes to write-combine memory wait here,
 * per cache line, until a flush (sync end, a fence) or until the buffer is
 * full and its oldest line is pushed out. The CPU's own reads see pending
 * bytes; devices see only memory. Pure: no I/O.
 */
import { forEachSpan, type PageStore } from '../memory/pagestore.js';

export class WcBuffer {
  /** Pending bytes by line index, oldest first. */
  private readonly lines = new Map<number, { data: Uint8Array; mask: Uint8Array }>();
  flushes = 0;

  constructor(
    private readonly mem: PageStore,
    private readonly line: number,
    private readonly capacity: number,
    /** Called before a flush writes memory (the cache keeps what it mirrored). */
    private readonly beforeMemoryWrite: (addr: number, len: number) => void,
  ) {}

  get pendingLines(): number {
    return this.lines.size;
  }

  private keysIn(addr: number, len: number): number[] {
    if (this.lines.size === 0) return [];
    const first = Math.floor(addr / this.line);
    const last = Math.floor((addr + len - 1) / this.line);
    return [...this.lines.keys()].filter((k) => k >= first && k <= last);
  }

  write(addr: number, data: Uint8Array, off = 0, len = data.length - off): void {
    forEachSpan(addr, len, this.line, (key, inLine, n, at) => {
      let e = this.lines.get(key);
      if (e === undefined) {
        e = { data: new Uint8Array(this.line), mask: new Uint8Array(this.line) };
        this.lines.set(key, e);
      }
      e.data.set(data.subarray(off + at, off + at + n), inLine);
      e.mask.fill(1, inLine, inLine + n);
      while (this.lines.size > this.capacity) this.flushLine(this.lines.keys().next().value!);
    });
  }

  /** Memory with the CPU's pending bytes laid over it. */
  read(addr: number, len: number, out: Uint8Array): void {
    this.mem.readInto(addr, len, out, 0);
    for (const key of this.keysIn(addr, len)) {
      const e = this.lines.get(key)!;
      const base = key * this.line;
      for (let k = 0; k < this.line; k++) {
        const x = base + k;
        if (x >= addr && x < addr + len && e.mask[k] === 1) out[x - addr] = e.data[k]!;
      }
    }
  }

  private flushLine(key: number): void {
    const e = this.lines.get(key)!;
    this.lines.delete(key);
    const base = key * this.line;
    this.beforeMemoryWrite(base, this.line);
    for (let k = 0; k < this.line; ) {
      if (e.mask[k] !== 1) {
        k++;
        continue;
      }
      let j = k;
      while (j < this.line && e.mask[j] === 1) j++;
      this.mem.write(base + k, e.data, k, j - k);
      k = j;
    }
    this.flushes++;
  }

  /** Push pending lines of a range to memory; returns how many. */
  flush(addr: number, len: number): number {
    const keys = this.keysIn(addr, len);
    for (const k of keys) this.flushLine(k);
    return keys.length;
  }

  pending(addr: number, len: number): boolean {
    return this.keysIn(addr, len).length > 0;
  }

  /** Drop a range's pending bytes without writing them (its bytes change hands). */
  forget(addr: number, len: number): void {
    for (const key of this.keysIn(addr, len)) {
      const base = key * this.line;
      if (base >= addr && base + this.line <= addr + len) {
        this.lines.delete(key);
        continue;
      }
      const e = this.lines.get(key)!;
      for (let k = 0; k < this.line; k++) if (base + k >= addr && base + k < addr + len) e.mask[k] = 0;
      if (!e.mask.includes(1)) this.lines.delete(key);
    }
  }
}
