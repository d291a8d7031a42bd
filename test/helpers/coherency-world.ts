/**
 * The coherency model of daemon/dma/coherency.ts over a page store and a
 * CPU cache, with fake registrations (a device's view of a buffer), for
 * the unit tests of the checker.
 */
import { CpuCache } from '../../daemon/dma/cache.js';
import { Coherency, type CheckMode, type Violation, type Who } from '../../daemon/dma/coherency.js';
import { SharedBuffer } from '../../daemon/buffers/handles.js';
import { PageStore } from '../../daemon/memory/pagestore.js';
import type { Registration } from '../../daemon/dma/drivers.js';
import type { DmaDirection } from '../../daemon/dma/direction.js';
import { drain } from '../../daemon/lib/slices.js';
import { SharedMemory } from '../../daemon/dma/shared.js';

export const PAGE = 4096;
export const A = 0x10000;
export const BOUNCE = 0x80000;
export const C1: Who = { id: 1, name: 'app' };
export const C2: Who = { id: 2, name: null };
export const DEV: Who = { id: 9, name: 'drv' };
type Policy = 'writeback' | 'writecombine' | 'uncached';
type Seg = { addr: number; len: number };

export function world(o: { mode?: CheckMode; prefetch?: 'none' | 'always' | 'random'; ringSize?: number } = {}) {
  const store = new PageStore();
  const cache = new CpuCache(store, { lineSize: 64, capacityLines: 1 << 20, eviction: 'none', wcLines: 8, seed: 1 });
  const regs: Registration[] = [];
  const reported: Violation[] = [];
  const w = { mode: o.mode ?? ('warn' as CheckMode), clock: 1000 };
  const coh = new Coherency(cache, store, { mode: w.mode, prefetch: o.prefetch ?? 'always', prefetchRate: 0.5, ringSize: o.ringSize ?? 1024 }, {
    registrations: (b) => regs.filter((r) => r.buffer === b),
    modeFor: () => w.mode,
    report: (v) => reported.push(v),
    now: () => w.clock,
  }, new SharedMemory(null, store));
  let nextId = 1;
  const buffer = (segments: Seg[] = [{ addr: A, len: 256 }], policy: Policy = 'writeback') =>
    new SharedBuffer({ id: nextId++, size: segments.reduce((a, s) => a + s.len, 0), segments, pool: { cfg: { cache: policy } } } as never, 1, () => {});
  /** Register (dma_map) with a device; bounced views address slots at bounceAt. */
  const register = (b: SharedBuffer, name: string, coherent: boolean, bounceAt?: number, direction: DmaDirection = 'bidirectional') => {
    const pieces: { off: number; len: number; dev: number; phys: number; bounce: boolean }[] = [];
    let off = 0;
    for (const s of b.phys.segments) {
      pieces.push({ off, len: s.len, dev: bounceAt === undefined ? s.addr : bounceAt + off, phys: s.addr, bounce: bounceAt !== undefined });
      off += s.len;
    }
    const r = { driver: { name, constraints: { coherent } }, buffer: b, pieces, direction } as never as Registration;
    regs.push(r);
    drain(coh.mapped(r));
    return r;
  };
  const unregister = (who: Who, r: Registration) => {
    drain(coh.checkUnmap(who, r));
    drain(coh.unmapping(r));
    regs.splice(regs.indexOf(r), 1);
  };
  const view = (r: Registration) => (off: number, len: number) => (fn: (dev: number, phys: number, bounce: boolean, at: number, n: number) => void) => {
    for (const p of r.pieces) {
      const lo = Math.max(off, p.off);
      const hi = Math.min(off + len, p.off + p.len);
      if (lo < hi) fn(p.dev + (lo - p.off), p.phys + (lo - p.off), p.bounce, lo - off, hi - lo);
    }
  };
  const devRead = (r: Registration, off: number, len: number) => drain(coh.deviceRead(DEV, r, off, len, view(r)));
  const devWrite = (r: Registration, off: number, data: Uint8Array) => drain(coh.deviceWrite(DEV, r, off, data, view(r)));
  const kinds = () => coh.violations().map((v) => v.kind);
  return { store, cache, coh, w, reported, buffer, register, unregister, devRead, devWrite, kinds };
}

