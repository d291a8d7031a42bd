/**
 * The simulated CPU cache and write-combine buffer over physical memory.
 *
 * Write-back memory goes through cache lines (64 B by default). A line is
 * absent, *mirroring* memory (cached, equal to memory, no copy kept), clean
 * (a kept copy: it may have gone stale) or dirty (the CPU's newer data).
 * Whatever writes memory under a mirroring line first copies the old bytes
 * into the line, so the cache really holds the old content afterwards —
 * which is what makes a missing invalidate visible. Write-combine writes
 * wait in a small buffer until flushed; uncached accesses go to memory.
 *
 * Devices: a non-coherent device reads and writes memory directly (it does
 * not see dirty lines; its writes leave cached lines stale). A coherent one
 * snoops: it sees dirty lines and its writes invalidate them.
 * Deterministic for a given config and seed. Pure: no I/O.
 */
import { forEachSpan, PAGE, type PageStore } from '../memory/pagestore.js';
import { rng } from '../lib/rng.js';
import { WcBuffer } from './wcbuffer.js';

import { ABSENT, MIRROR, CLEAN, DIRTY, type CacheConfig, type CacheStats } from './cachestate.js';
export { ABSENT, MIRROR, CLEAN, DIRTY, type CacheConfig, type CacheStats } from './cachestate.js';

interface CPage {
  /** Line states; shared (copy on first change) while `own` is false. */
  state: Uint8Array;
  own: boolean;
  data: Uint8Array | null;
  /** Lines not ABSENT, lines holding a kept copy (CLEAN or DIRTY), DIRTY lines: whole pages are handled in O(1). */
  n: number;
  k: number;
  d: number;
}

export { rng };

export class CpuCache {
  readonly line: number;
  private readonly perPage: number;
  private readonly pages = new Map<number, CPage>();
  /** The write-combine buffer: CPU writes to write-combine memory wait there (the CPU's own reads see them). */
  readonly wc: WcBuffer;
  private cached = 0;
  private dirty = 0;
  private readonly random: () => number;
  /** The line states of a page whose every line mirrors memory, shared by such pages. */
  private readonly allMirror: Uint8Array;
  readonly stats = { cleans: 0, invalidates: 0, prefetches: 0, evictions: 0 };

  constructor(
    private readonly mem: PageStore,
    private readonly cfg: CacheConfig,
  ) {
    this.line = cfg.lineSize;
    this.perPage = PAGE / cfg.lineSize;
    this.allMirror = new Uint8Array(this.perPage).fill(MIRROR);
    this.random = rng(cfg.seed);
    this.wc = new WcBuffer(mem, cfg.lineSize, cfg.wcLines, (a, n) => this.beforeMemoryWrite(a, n));
  }

  private page(pfn: number, create: boolean): CPage | undefined {
    let p = this.pages.get(pfn);
    if (p === undefined && create) {
      p = { state: new Uint8Array(this.perPage), own: true, data: null, n: 0, k: 0, d: 0 };
      this.pages.set(pfn, p);
    }
    return p;
  }

  private setState(p: CPage, i: number, s: number): void {
    const old = p.state[i]!;
    if (old === s) return;
    if (!p.own) {
      p.state = p.state.slice();
      p.own = true;
    }
    // lines cached, kept (CLEAN or DIRTY: >= CLEAN) and dirty, per page and in all
    const dn = (s !== ABSENT ? 1 : 0) - (old !== ABSENT ? 1 : 0);
    const dd = (s === DIRTY ? 1 : 0) - (old === DIRTY ? 1 : 0);
    p.n += dn;
    p.k += (s >= CLEAN ? 1 : 0) - (old >= CLEAN ? 1 : 0);
    p.d += dd;
    this.cached += dn;
    this.dirty += dd;
    p.state[i] = s;
  }

  /** Drop a page's whole record (every line ABSENT at once); returns lines dropped. */
  private dropPage(pfn: number, p: CPage): number {
    this.cached -= p.n;
    this.dirty -= p.d;
    this.pages.delete(pfn);
    return p.n;
  }

  /** Copy memory's current bytes of the mirroring lines in [i0, i1] into the cache (they become kept clean copies), one read per run. */
  private materialize(pfn: number, p: CPage, i0: number, i1: number): void {
    if (p.n === p.k) return; // no mirroring line in the page
    for (let i = i0; i <= i1; ) {
      if (p.state[i] !== MIRROR) {
        i++;
        continue;
      }
      let j = i;
      while (j <= i1 && p.state[j] === MIRROR) this.setState(p, j++, CLEAN);
      p.data ??= new Uint8Array(PAGE);
      this.mem.readInto(pfn * PAGE + i * this.line, (j - i) * this.line, p.data, i * this.line);
      i = j;
    }
  }

  /** Drop a page's record when nothing in it is cached, its data when no line keeps a copy. O(1). */
  private tidy(pfn: number, p: CPage): void {
    if (p.n === 0) this.pages.delete(pfn);
    else if (p.k === 0) p.data = null;
  }

  /** Visit [addr, addr + len) page by page: fn(pfn, record, start and end byte in the page, offset in the range). */
  private eachPage(addr: number, len: number, create: boolean, fn: (pfn: number, p: CPage | undefined, s: number, e: number, at: number) => void): void {
    forEachSpan(addr, len, PAGE, (pfn, s, n, at) => fn(pfn, this.page(pfn, create), s, s + n, at));
  }

  private first(s: number): number {
    return Math.floor(s / this.line);
  }

  private last(e: number): number {
    return Math.floor((e - 1) / this.line);
  }

  /** Anything about to write memory under cached lines keeps the old bytes in those lines first. */
  private beforeMemoryWrite(addr: number, len: number): void {
    if (this.pages.size === 0) return;
    this.eachPage(addr, len, false, (pfn, p, s, e) => {
      if (p !== undefined) this.materialize(pfn, p, this.first(s), this.last(e));
    });
  }

  private evictIfNeeded(): void {
    if (this.cfg.eviction !== 'random') return;
    if (this.cached <= this.cfg.capacityLines) return;
    // nothing below adds pages: one key list, kept in the map's order, serves every victim
    const keys = [...this.pages.keys()];
    while (this.cached > this.cfg.capacityLines && keys.length > 0) {
      const pfn = keys.splice(Math.floor(this.random() * keys.length), 1)[0]!;
      const p = this.pages.get(pfn)!;
      for (let i = 0; i < this.perPage; i++) {
        if (p.state[i] === DIRTY) this.mem.write(pfn * PAGE + i * this.line, p.data!, i * this.line, this.line);
        if (p.state[i] !== ABSENT) {
          this.setState(p, i, ABSENT);
          this.stats.evictions++;
        }
      }
      this.pages.delete(pfn);
    }
  }

  // ---- CPU access ----

  /**
   * A CPU read of write-back memory. Cached lines answer (kept copies may be
   * stale); others are read from memory and start mirroring it. `stale`
   * lists the byte ranges where a clean line differed from memory.
   */
  read(addr: number, len: number, out: Uint8Array): { stale: [number, number][] } {
    const stale: [number, number][] = [];
    // memory as it is, once; cached lines then answer instead where they hold a copy
    this.mem.readInto(addr, len, out, 0);
    this.eachPage(addr, len, true, (_pfn, p, s, e, at) => {
      const st = p!.state;
      for (let i = this.first(s); i <= this.last(e); i++) {
        const x = st[i]!;
        if (x === ABSENT) {
          this.setState(p!, i, MIRROR);
          continue;
        }
        if (x === MIRROR) continue;
        const lo = Math.max(s, i * this.line);
        const hi = Math.min(e, (i + 1) * this.line);
        const o = at + (lo - s);
        if (x === CLEAN) {
          for (let k = lo; k < hi; k++) {
            if (p!.data![k] !== out[o + (k - lo)]) {
              stale.push([o, hi - lo]);
              break;
            }
          }
        }
        out.set(p!.data!.subarray(lo, hi), o);
      }
    });
    this.evictIfNeeded();
    return { stale };
  }

  /** What the CPU would read of [addr, addr + len), without touching any line (memory overlaid with kept lines). */
  peek(addr: number, len: number, out: Uint8Array): void {
    this.mem.readInto(addr, len, out, 0);
    if (this.pages.size === 0) return;
    this.eachPage(addr, len, false, (_pfn, p, s, e, at) => {
      if (p === undefined || p.k === 0) return;
      for (let i = this.first(s); i <= this.last(e); i++) {
        if (p.state[i] !== CLEAN && p.state[i] !== DIRTY) continue;
        const lo = Math.max(s, i * this.line);
        const hi = Math.min(e, (i + 1) * this.line);
        out.set(p.data!.subarray(lo, hi), at + (lo - s));
      }
    });
  }

  /** A CPU write to write-back memory: write-allocate, the lines become dirty. */
  write(addr: number, data: Uint8Array, off = 0, len = data.length - off): void {
    this.eachPage(addr, len, true, (pfn, p, s, e, at) => {
      const i0 = this.first(s);
      const i1 = this.last(e);
      // partly written lines keep the rest of their bytes: fetch them first
      for (const i of i0 === i1 ? [i0] : [i0, i1]) {
        const x = p!.state[i]!;
        const whole = s <= i * this.line && e >= (i + 1) * this.line;
        if (whole || x === CLEAN || x === DIRTY) continue;
        if (x === ABSENT) this.setState(p!, i, MIRROR);
        this.materialize(pfn, p!, i, i);
      }
      p!.data ??= new Uint8Array(PAGE);
      p!.data.set(data.subarray(off + at, off + at + (e - s)), s);
      for (let i = i0; i <= i1; i++) this.setState(p!, i, DIRTY);
    });
    this.evictIfNeeded();
  }

  // ---- maintenance ----

  /** Write dirty lines of a range back to memory (sync for the device); returns lines cleaned. */
  clean(addr: number, len: number): number {
    if (this.dirty === 0) return 0;
    let n = 0;
    this.eachPage(addr, len, false, (pfn, p, s, e) => {
      if (p === undefined || p.d === 0) return;
      const i1 = this.last(e);
      for (let i = this.first(s); i <= i1; ) {
        if (p.state[i] !== DIRTY) {
          i++;
          continue;
        }
        // one write for each run of dirty lines
        let j = i;
        while (j <= i1 && p.state[j] === DIRTY) {
          this.setState(p, j, MIRROR);
          j++;
        }
        this.mem.write(pfn * PAGE + i * this.line, p.data!, i * this.line, (j - i) * this.line);
        n += j - i;
        i = j;
      }
      this.tidy(pfn, p);
    });
    this.stats.cleans += n;
    return n;
  }

  /** Drop the lines of a range, dirty data included (sync for the CPU); returns lines invalidated. */
  invalidate(addr: number, len: number): number {
    if (this.cached === 0) return 0;
    let n = 0;
    this.eachPage(addr, len, false, (pfn, p, s, e) => {
      if (p === undefined) return;
      if (s === 0 && e === PAGE) {
        n += this.dropPage(pfn, p);
        return;
      }
      for (let i = this.first(s); i <= this.last(e); i++) {
        if (p.state[i] === ABSENT) continue;
        this.setState(p, i, ABSENT);
        n++;
      }
      this.tidy(pfn, p);
    });
    this.stats.invalidates += n;
    return n;
  }

  /** Speculative prefetch: lines of the range start mirroring memory (all, or each with probability `rate`). */
  prefetch(addr: number, len: number, rate = 1): number {
    let n = 0;
    this.eachPage(addr, len, false, (pfn, p, s, e) => {
      if (p === undefined && rate >= 1 && s === 0 && e === PAGE) {
        // a whole page not cached yet: every line mirrors memory (the state array is shared until a line changes)
        this.pages.set(pfn, { state: this.allMirror, own: false, data: null, n: this.perPage, k: 0, d: 0 });
        this.cached += this.perPage;
        n += this.perPage;
        return;
      }
      p ??= this.page(pfn, true)!;
      for (let i = this.first(s); i <= this.last(e); i++) {
        if (p.state[i] !== ABSENT) continue;
        if (rate < 1 && this.random() >= rate) continue;
        this.setState(p, i, MIRROR);
        n++;
      }
      this.tidy(pfn, p);
    });
    this.stats.prefetches += n;
    this.evictIfNeeded();
    return n;
  }

  /** Visit the dirty lines of a range: fn(page record, first and end byte in the page, offset in the range). */
  private eachDirty(addr: number, len: number, fn: (p: CPage, lo: number, hi: number, at: number) => void): void {
    if (this.dirty === 0) return;
    this.eachPage(addr, len, false, (_pfn, p, s, e, at) => {
      if (p === undefined || p.d === 0) return;
      for (let i = this.first(s); i <= this.last(e); i++) {
        if (p.state[i] !== DIRTY) continue;
        const lo = Math.max(s, i * this.line);
        fn(p, lo, Math.min(e, (i + 1) * this.line), at + (lo - s));
      }
    });
  }

  /** Byte ranges (relative to addr) of dirty lines in a range. */
  dirtyIn(addr: number, len: number): [number, number][] {
    const out: [number, number][] = [];
    this.eachDirty(addr, len, (_p, lo, hi, at) => out.push([at, hi - lo]));
    return out;
  }

  /**
   * Forget a range whose bytes change hands (a buffer freed or allocated):
   * lines wholly inside it are dropped without write-back; lines it shares
   * with a neighbour keep the neighbour's bytes, and the range's own bytes
   * in them read as zeros (as the zeroing CPU writes would leave them).
   */
  forget(addr: number, len: number): void {
    if (this.cached > 0) {
      this.eachPage(addr, len, false, (pfn, p, s, e) => {
        if (p === undefined) return;
        if (s === 0 && e === PAGE) {
          this.dropPage(pfn, p);
          return;
        }
        for (let i = this.first(s); i <= this.last(e); i++) {
          const x = p.state[i]!;
          if (x === ABSENT) continue;
          const lo = Math.max(s, i * this.line);
          const hi = Math.min(e, (i + 1) * this.line);
          if (lo === i * this.line && hi === (i + 1) * this.line) this.setState(p, i, ABSENT);
          else if (x === CLEAN || x === DIRTY) p.data!.fill(0, lo, hi);
        }
        this.tidy(pfn, p);
      });
    }
    this.wc.forget(addr, len);
  }

  // ---- device access ----

  /** A device reads memory; a coherent one snoops dirty lines. */
  deviceRead(addr: number, len: number, coherent: boolean, out: Uint8Array): void {
    this.mem.readInto(addr, len, out, 0);
    if (coherent) this.eachDirty(addr, len, (p, lo, hi, at) => out.set(p.data!.subarray(lo, hi), at));
  }

  /** A device writes memory; a coherent one invalidates the lines, a non-coherent one leaves them stale. */
  deviceWrite(addr: number, data: Uint8Array, coherent: boolean, off = 0, len = data.length - off): void {
    if (coherent) {
      // snoop: dirty data of the range is written back first, then the lines are dropped
      this.clean(addr, len);
      this.invalidate(addr, len);
    } else {
      this.beforeMemoryWrite(addr, len);
    }
    this.mem.write(addr, data, off, len);
  }

  /** Note that something other than the CPU or a device (a bounce copy, zeroing) writes memory. */
  memoryWritten(addr: number, len: number): void {
    this.beforeMemoryWrite(addr, len);
  }

  snapshot(): CacheStats {
    return { lineSize: this.line, cachedLines: this.cached, dirtyLines: this.dirty, ...this.stats, wcFlushes: this.wc.flushes, wcPendingLines: this.wc.pendingLines };
  }
}
