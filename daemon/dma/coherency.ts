/**
 * The coherency model: what each CPU access, device access and sync does
 * (ownership.ts keeps who owns a buffer and reports violations).
 *
 * A buffer registered with a non-coherent device belongs either to the CPU
 * (inside a client's sync start…end bracket) or to the device (after
 * registration, after sync end, after a device access). sync start is
 * sync-for-cpu (invalidate for reads, copy bounce slots back); sync end is
 * sync-for-device (clean dirty lines, flush write-combine, copy into bounce
 * slots); register and unregister behave like dma_map and dma_unmap. While
 * the device owns a write-back buffer the CPU may prefetch its lines.
 *
 * A buffer that processes map (shared.ts) is modelled page by page instead
 * of line by line: its CPU view is the memfd they map, split from memory
 * while a non-coherent device maps it (write-back); sync end publishes the
 * view to memory, sync start refreshes it, and writes through a mapping
 * while the device owned the buffer are found by comparison.
 *
 * Every misuse is a violation (violations.ts): recorded, counted, logged and
 * sent to the buffer's holders (mode `warn`), or refused with ECOHERENCY
 * before any data changes (mode `strict`).
 *
 * Work over a whole buffer (sync, dma_map/unmap, prefetch, device fills) is
 * a generator (`Work`) that yields every CHUNK bytes, so the caller can run
 * it in slices and never hold the event loop for long (slices.ts); `drain`
 * runs one to the end. Pure apart from the callbacks it is given.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { Registration } from './drivers.js';
import type { Who } from './violations.js';
import { drain, type Work } from '../lib/slices.js';
import { Ownership, CHUNK, type Access } from './ownership.js';
import { readBacking, writeBacking, type Shm } from './shared.js';

export { VIOLATION_KINDS, type CheckMode, type Violation, type ViolationKind, type Who } from './violations.js';
export { CHUNK, type Access, type CoherencyConfig, type CoherencyHooks } from './ownership.js';

export type SyncResult = { cleaned: number; invalidated: number; flushed: number };
/** The device's view of a range: fn(devAddr, physAddr, bounce, offset in the range, bytes). */
export type DeviceView = (fn: (dev: number, phys: number, bounce: boolean, at: number, n: number) => void) => void;

export class Coherency extends Ownership {
  /**
   * Give a buffer its own shared memory (it is being mapped or handed out).
   * The CPU's view starts as what the CPU would read; split from memory when
   * a non-coherent device maps it (write-back), else dirty lines and pending
   * write-combine writes are written back first and the view is memory. The
   * buffer's cache lines are dropped: it is modelled page by page from now on.
   */
  promote(b: SharedBuffer): Shm {
    const split = this.policy(b) === 'writeback' && this.nonCoherent(b).length > 0;
    if (!split) {
      this.pieces(b, 0, b.phys.size, (addr, _at, n) => {
        this.cache.clean(addr, n);
        this.cache.wc.flush(addr, n);
      });
    }
    const size = b.phys.size;
    // the buffer's bytes as `read` gives them, chunk by chunk; past its end (the page-rounded tail), zeros
    const gather = (read: (addr: number, n: number, out: Uint8Array, at: number) => void) => (off: number, len: number, out: Uint8Array) => {
      out.fill(0);
      const n = Math.min(len, size - off);
      if (n > 0) this.pieces(b, off, n, (addr, at, k) => read(addr, k, out, at));
    };
    const view = gather((addr, n, out, at) => this.cache.peek(addr, n, out.subarray(at, at + n)));
    const shm = this.shared.promote(
      b,
      view,
      split
        ? {
            memory: gather((addr, n, out, at) => this.mem.readInto(addr, n, out, at)),
            // the view's clean content: the view, where its dirty lines hold what memory holds
            clean: gather((addr, n, out, at) => {
              this.cache.peek(addr, n, out.subarray(at, at + n));
              for (const [d, k] of this.cache.dirtyIn(addr, n)) this.mem.readInto(addr + d, k, out, at + d);
            }),
          }
        : null,
    );
    for (const s of b.phys.segments) this.cache.forget(s.addr, s.len);
    if (split && this.state(b).device) this.shared.baseline(shm);
    return shm;
  }

  /** Writes made through a mapping while the device owned the buffer: one report per ownership. */
  private mappedWrites(who: Who, shm: Shm, op: string, off: number, len: number): void {
    const st = this.state(shm.buffer);
    if (!st.device || shm.reported) return;
    const n = this.shared.changed(shm, off, len, false);
    if (n === 0) return;
    shm.reported = true;
    const devs = this.nonCoherent(shm.buffer);
    this.violate(shm.buffer, who, 'cpu-access-while-device-owned', op, off, len, devs[0]?.driver.name ?? null,
      `buffer ${shm.buffer.id}'s CPU view changed in ${n} page(s) through a mapping while device ${devs.map((r) => `'${r.driver.name}'`).join(', ')} owned it: missing sync {phase:'start', access:'write'} before writing`);
  }

  // ---- CPU access ----

  private checkCpu(who: Who, b: SharedBuffer, write: boolean, op: string, off: number, len: number): void {
    const st = this.state(b);
    const devs = st.device && st.brackets.size === 0 ? this.nonCoherent(b) : [];
    if (devs.length > 0) {
      this.violate(b, who, 'cpu-access-while-device-owned', op, off, len, devs[0]!.driver.name,
        `client ${who.id} ${write ? 'wrote' : 'read'} buffer ${b.id} while device ${devs.map((r) => `'${r.driver.name}'`).join(', ')} owns it (after registration, sync end or a device access): missing sync {phase:'start', access:'${write ? 'write' : 'read'}'}`);
    }
    const mine = st.brackets.get(who.id);
    if (write && mine === 'read') {
      this.violate(b, who, 'cpu-write-in-read-bracket', op, off, len, null, `client ${who.id} wrote buffer ${b.id} inside a sync bracket opened for 'read': open it for 'write' or 'rw'`);
    }
  }

  /** A CPU read (at most one request's data: not sliced). */
  cpuRead(who: Who, b: SharedBuffer, off: number, len: number, op = 'read'): Buffer {
    this.checkCpu(who, b, false, op, off, len);
    const out = Buffer.allocUnsafe(len);
    const shm = this.shared.of(b);
    if (shm !== undefined) {
      readBacking(shm.cpu, off, len, out);
      return out;
    }
    const pol = this.policy(b);
    const stale: [number, number][] = [];
    this.pieces(b, off, len, (addr, at, n) => {
      const view = out.subarray(at, at + n);
      if (pol === 'writeback') {
        for (const [s, k] of this.cache.read(addr, n, view).stale) stale.push([at + s, k]);
      } else if (pol === 'writecombine') {
        this.cache.wc.read(addr, n, view);
      } else {
        this.mem.readInto(addr, n, view, 0);
      }
    });
    if (stale.length > 0) {
      const first = stale[0]!;
      this.violate(b, who, 'stale-read', op, off + first[0], stale.reduce((a, x) => a + x[1], 0), this.nonCoherent(b)[0]?.driver.name ?? null,
        `client ${who.id} read stale bytes of buffer ${b.id} (from offset ${off + first[0]}, ${stale.length} cache line(s)): cached lines were not invalidated after the device wrote: missing sync {phase:'start', access:'read'}`);
    }
    return out;
  }

  cpuWrite(who: Who, b: SharedBuffer, off: number, data: Uint8Array, op = 'write'): void {
    this.checkCpu(who, b, true, op, off, data.length);
    const shm = this.shared.of(b);
    if (shm !== undefined) {
      writeBacking(shm.cpu, off, data);
      return;
    }
    const pol = this.policy(b);
    this.pieces(b, off, data.length, (addr, at, n) => {
      if (pol === 'writeback') this.cache.write(addr, data, at, n);
      else if (pol === 'writecombine') this.cache.wc.write(addr, data, at, n);
      else {
        this.cache.memoryWritten(addr, n);
        this.mem.write(addr, data, at, n);
      }
    });
  }

  /** Flush the write-combine buffer for a buffer (a store fence). */
  fence(b: SharedBuffer): number {
    // a mapped write-combine buffer's stores go to memory as they are made
    if (this.shared.of(b) !== undefined) return 0;
    let n = 0;
    this.pieces(b, 0, b.phys.size, (addr, _at, len) => (n += this.cache.wc.flush(addr, len)));
    return n;
  }

  // ---- sync (DMA_BUF_IOCTL_SYNC) ----

  sync(who: Who, b: SharedBuffer, phase: 'start' | 'end', access: Access, off = 0, len = b.phys.size): SyncResult {
    return drain(this.syncWork(who, b, phase, access, off, len));
  }

  /** sync as Work: every check (and a strict refusal) comes before the first change. */
  *syncWork(who: Who, b: SharedBuffer, phase: 'start' | 'end', access: Access, off = 0, len = b.phys.size): Work<SyncResult> {
    const st = this.state(b);
    if (off + len > b.phys.size) {
      this.violate(b, who, 'sync-out-of-range', `sync ${phase}`, off, len, null, `sync of [${off}, ${off + len}) is outside buffer ${b.id} (size ${b.phys.size})`, true);
      throw new BufferdError('EINVAL', `sync range offset ${off} + length ${len} = ${off + len} is past the end of the buffer (size ${b.phys.size})`, { offset: off, length: len, size: b.phys.size });
    }
    this.checkSyncDirections(who, b, phase, access, off, len);
    const r = { cleaned: 0, invalidated: 0, flushed: 0 };
    const bounced = this.hooks.registrations(b).flatMap((reg) => reg.pieces.filter((p) => p.bounce));
    const clip = (p: { off: number; len: number }) => [Math.max(off, p.off), Math.min(off + len, p.off + p.len)] as const;
    const shm = this.shared.of(b);
    /** Clean the dirty lines of a mapped buffer's CPU view, or invalidate its lines, in chunks: lines done. */
    const copyShm = function* (self: Coherency, to: 'memory' | 'view'): Work<number> {
      if (shm === undefined || shm.mem === null) return 0;
      let lines = 0;
      for (let o = off; o < off + len; o += CHUNK) {
        const n = Math.min(CHUNK, off + len - o);
        lines += to === 'memory' ? self.shared.publish(shm, o, n) : self.shared.refresh(shm, o, n);
        yield;
      }
      return lines;
    };
    if (phase === 'start') {
      if (st.brackets.has(who.id)) {
        this.violate(b, who, 'start-while-open', 'sync start', off, len, null, `client ${who.id} started CPU access to buffer ${b.id} again without ending the bracket it opened for '${st.brackets.get(who.id)}'`);
      }
      // writes made through a mapping while the device owned it (before the CPU takes it back)
      if (shm !== undefined) this.mappedWrites(who, shm, 'sync start', off, len);
      st.brackets.set(who.id, access);
      st.device = false;
      this.opened(who.id, b, true);
      if (access !== 'write') {
        // sync for the CPU: bring back what devices wrote into bounce slots, then drop stale lines
        for (const p of bounced) {
          const [lo, hi] = clip(p);
          if (lo >= hi) continue;
          this.cache.memoryWritten(p.phys + (lo - p.off), hi - lo);
          this.mem.copy(p.phys + (lo - p.off), p.dev + (lo - p.off), hi - lo);
          yield;
        }
        if (shm !== undefined) r.invalidated = yield* copyShm(this, 'view');
        else yield* this.piecesWork(b, off, len, (addr, _at, n) => (r.invalidated += this.cache.invalidate(addr, n)));
      }
      return r;
    }
    if (!st.brackets.has(who.id)) {
      this.violate(b, who, 'end-without-start', 'sync end', off, len, null, `client ${who.id} ended CPU access to buffer ${b.id} without starting it: missing sync {phase:'start'}`);
    }
    if (access !== 'read') {
      // sync for the device: dirty lines and pending write-combine writes reach memory, then the bounce slots
      if (shm !== undefined) {
        r.cleaned = yield* copyShm(this, 'memory');
      } else {
        yield* this.piecesWork(b, off, len, (addr, _at, n) => {
          r.cleaned += this.cache.clean(addr, n);
          r.flushed += this.cache.wc.flush(addr, n);
        });
      }
      for (const p of bounced) {
        const [lo, hi] = clip(p);
        if (lo < hi) this.mem.copy(p.dev + (lo - p.off), p.phys + (lo - p.off), hi - lo);
        yield;
      }
    }
    st.brackets.delete(who.id);
    this.opened(who.id, b, false);
    if (st.brackets.size === 0) yield* this.toDevice(b);
    return r;
  }

  // ---- dma_map / dma_unmap ----

  /** After a registration is made: clean for the device, fill bounce slots, the device owns the buffer. */
  *mapped(r: Registration): Work<void> {
    const b = r.buffer;
    const shm = this.shared.of(b);
    if (shm === undefined) {
      yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => {
        this.cache.clean(addr, n);
        this.cache.wc.flush(addr, n);
      });
    } else if (this.policy(b) === 'writeback' && r.driver.constraints.coherent !== true) {
      // a non-coherent device and write-back pages: memory is split from the CPU view, starting equal (the clean)
      if (shm.mem === null) this.shared.split(shm);
      else this.shared.publish(shm, 0, shm.bytes);
    }
    for (const p of r.pieces) {
      if (!p.bounce) continue;
      this.mem.copy(p.dev, p.phys, p.len);
      yield;
    }
    if (r.driver.constraints.coherent !== true && this.state(b).brackets.size === 0) yield* this.toDevice(b);
  }

  /** Before a registration goes: check it was synced (the scan yields; a strict refusal comes before any change). */
  *checkUnmap(who: Who, r: Registration): Work<void> {
    // a coherent device snoops: nothing has to be synced before it lets go
    if (r.driver.constraints.coherent === true) return;
    const b = r.buffer;
    const st = this.state(b);
    let dirty = 0;
    const shm = this.shared.of(b);
    if (shm !== undefined) dirty = this.shared.changed(shm, 0, shm.bytes, true);
    else yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => (dirty += this.cache.dirtyIn(addr, n).length + (this.cache.wc.pending(addr, n) ? 1 : 0)));
    if (dirty > 0 || st.brackets.size > 0) {
      this.violate(b, who, 'unsynced-unregister', 'unregister', 0, b.phys.size, r.driver.name,
        `client ${who.id} unregistered buffer ${b.id} from '${r.driver.name}' with ${dirty > 0 ? `${dirty} ${shm !== undefined ? 'page(s) of the CPU view not published to memory' : 'dirty or pending cache line(s)'}` : ''}${dirty > 0 && st.brackets.size > 0 ? ' and ' : ''}${st.brackets.size > 0 ? 'a CPU bracket open' : ''}: missing sync {phase:'end'}`);
    }
  }

  /**
   * Just before the view is torn down (dma_unmap): bounce data comes back,
   * stale lines go, and without other non-coherent registrations the CPU
   * owns the buffer again.
   */
  *unmapping(r: Registration): Work<void> {
    const b = r.buffer;
    // swiotlb_tbl_unmap_single copies back only for DMA_FROM_DEVICE and DMA_BIDIRECTIONAL
    for (const p of r.pieces) {
      if (!p.bounce || r.direction === 'to-device') continue;
      this.cache.memoryWritten(p.phys, p.len);
      this.mem.copy(p.phys, p.dev, p.len);
      yield;
    }
    // sync for the CPU after a non-coherent device; a coherent one needs no cache maintenance
    const last = this.nonCoherent(b).every((x) => x === r);
    const shm = this.shared.of(b);
    if (shm !== undefined) {
      // the view takes memory's bytes; the last non-coherent device gone, they are one again
      if (r.driver.constraints.coherent !== true) {
        if (last) this.shared.unsplit(shm);
        else this.shared.refresh(shm, 0, shm.bytes);
      }
    } else if (r.driver.constraints.coherent !== true) {
      yield* this.piecesWork(b, 0, b.phys.size, (addr, _at, n) => this.cache.invalidate(addr, n));
    }
    if (last) this.state(b).device = false;
  }

  // ---- device access ----

  /**
   * The checks of a device access of [off, off + len), made once before
   * any data moves (a long access then runs in chunks with `checked`): no
   * CPU bracket may be open, and a read must not miss the CPU's dirty or
   * pending write-combine lines (through bounce slots even a coherent
   * device only sees what sync end copied there).
   */
  *deviceCheck(who: Who, r: Registration, op: string, off: number, len: number, read: boolean, view: (off: number, len: number) => DeviceView): Work<void> {
    this.checkDeviceDirection(who, r, op, off, len, read);
    const st = this.state(r.buffer);
    if (st.brackets.size > 0) {
      const owners = [...st.brackets.keys()].join(', ');
      this.violate(r.buffer, who, 'device-access-during-cpu-access', op, off, len, r.driver.name,
        `device '${r.driver.name}' accessed buffer ${r.buffer.id} while client(s) ${owners} had CPU access open: missing sync {phase:'end'} first`);
    }
    const shm = this.shared.of(r.buffer);
    if (shm !== undefined) {
      this.mappedWrites(who, shm, op, off, len);
      const lost = read ? this.shared.changed(shm, off, len, true) : 0;
      if (lost > 0) {
        this.violate(r.buffer, who, 'lost-write', op, off, len, r.driver.name,
          `device '${r.driver.name}' read buffer ${r.buffer.id} while ${lost} page(s) of the CPU view (a mapping) were not published to memory: the device saw old data; missing sync {phase:'end', access:'write'}`);
      }
      return;
    }
    if (!read) return;
    const coherent = r.driver.constraints.coherent === true;
    let lost = 0;
    for (let o = off; o < off + len; o += CHUNK) {
      view(o, Math.min(CHUNK, off + len - o))((_dev, phys, bounce, _at, n) => {
        if (!coherent || bounce) lost += this.cache.dirtyIn(phys, n).length + (this.cache.wc.pending(phys, n) ? 1 : 0);
      });
      yield;
    }
    if (lost > 0) {
      this.violate(r.buffer, who, 'lost-write', op, off, len, r.driver.name,
        `${coherent ? 'device' : 'non-coherent device'} '${r.driver.name}' read buffer ${r.buffer.id}${coherent ? ' through bounce slots' : ''} while the CPU held ${lost} dirty or write-combine line(s) for it: the device saw old data; missing sync {phase:'end', access:'write'}`);
    }
  }

  /** A device reads [off, off + len) (checked already when `checked`); the prefetch on the ownership change yields. */
  *deviceRead(who: Who, r: Registration, off: number, len: number, view: (off: number, len: number) => DeviceView, op = 'device.read', checked = false): Work<Buffer> {
    if (!checked) yield* this.deviceCheck(who, r, op, off, len, true, view);
    const coherent = r.driver.constraints.coherent === true;
    const out = Buffer.allocUnsafe(len);
    for (let o = off; o < off + len; o += CHUNK) {
      view(o, Math.min(CHUNK, off + len - o))((dev, phys, bounce, at, n) => {
        const dst = out.subarray(o - off + at, o - off + at + n);
        if (bounce) this.mem.readInto(dev, n, dst, 0);
        else this.cache.deviceRead(phys, n, coherent, dst);
      });
      yield;
    }
    yield* this.toDevice(r.buffer);
    return out;
  }

  /** A device writes `data` at `off` (checked already when `checked`). */
  *deviceWrite(who: Who, r: Registration, off: number, data: Uint8Array, view: (off: number, len: number) => DeviceView, op = 'device.write', checked = false): Work<void> {
    if (!checked) yield* this.deviceCheck(who, r, op, off, data.length, false, view);
    const coherent = r.driver.constraints.coherent === true;
    for (let o = 0; o < data.length; o += CHUNK) {
      view(off + o, Math.min(CHUNK, data.length - o))((dev, phys, bounce, at, n) => {
        if (bounce) this.mem.write(dev, data, o + at, n);
        else this.cache.deviceWrite(phys, data, coherent, o + at, n);
      });
      yield;
    }
    yield* this.toDevice(r.buffer);
  }

  /** Forget the cache state of pages a buffer no longer (or newly) owns. */
  forget(segments: { addr: number; len: number }[]): void {
    for (const s of segments) this.cache.forget(s.addr, s.len);
  }
}
