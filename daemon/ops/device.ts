/**
 * Device-side access: a device acting on a buffer registered with it,
 * through its device addresses (IOVA translated back through its IOMMU
 * mapping, bounce slots copied to and from the buffer). Built-in devices
 * are driven by any client holding a handle on the buffer (with the right
 * for the direction); a client driver's device only by the client that
 * attached it. Every access goes through the coherency model (cache lines,
 * bounce slots, ownership checks).
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import type { Registration } from '../dma/drivers.js';
import type { Right } from '../buffers/handles.js';
import { handlesOf as table } from '../session/clients.js';
import { checkRange } from './memory.js';
import { sliced, type Work } from '../lib/slices.js';
import { whileConnected } from './coherency.js';

/** The registration a device op acts on, checking who may drive the device. */
function target(ctx: DaemonContext, s: Session, driver: string, handle: number, right: Right): Registration {
  const d = ctx.drivers.get(driver);
  if (d.owner !== null && d.owner !== s.id) {
    throw new BufferdError('EPERM', `driver '${d.name}' is a client driver: only its client (${d.owner}) can act as the device`, { driver: d.name });
  }
  const h = table(s).need(handle, right);
  return ctx.drivers.registration(d, h.buffer);
}

const who = (s: Session) => ({ id: s.id, name: s.name });

/** A registration's device view of [off, off + len) (IOVA translated back, bounce slots). */
const viewOf = (ctx: DaemonContext, r: Registration) => (off: number, len: number) => (fn: (dev: number, phys: number, bounce: boolean, at: number, n: number) => void) =>
  ctx.drivers.forEachPiece(r, off, len, fn);

/** Abandon device work when its client left or a registration it uses was dropped meanwhile. */
function stillValid(ctx: DaemonContext, s: Session, regs: Registration[]): () => void {
  const connected = whileConnected(s);
  return () => {
    connected();
    for (const r of regs) {
      if (!ctx.drivers.live(r)) throw new BufferdError('ENOENT', `buffer ${r.buffer.id} was unregistered from driver '${r.driver.name}' during the operation`, { driver: r.driver.name, buffer: r.buffer.id });
    }
  };
}

export function write(ctx: DaemonContext, s: Session, req: RequestOf<'device.write'>): { written: number } | Promise<{ written: number }> {
  const r = target(ctx, s, req.driver, req.handle, 'write');
  checkRange(ctx, r.buffer.phys.size, req.offset, req.data.length, 'length', 'plain');
  const work = function* () {
    yield* ctx.coherency.deviceWrite(who(s), r, req.offset, req.data, viewOf(ctx, r));
    return { written: req.data.length };
  };
  return sliced(work(), stillValid(ctx, s, [r]));
}

export function read(ctx: DaemonContext, s: Session, req: RequestOf<'device.read'>): { data: Uint8Array } | Promise<{ data: Uint8Array }> {
  const r = target(ctx, s, req.driver, req.handle, 'read');
  checkRange(ctx, r.buffer.phys.size, req.offset, req.length, 'length', 'plain');
  const work = function* () {
    return { data: yield* ctx.coherency.deviceRead(who(s), r, req.offset, req.length, viewOf(ctx, r)) };
  };
  return sliced(work(), stillValid(ctx, s, [r]));
}

/** Bytes a fill or copy moves per step (each step checked already, sliced inside). */
const STEP = 4 * 1024 * 1024;

export function fill(ctx: DaemonContext, s: Session, req: RequestOf<'device.fill'>): { filled: number } | Promise<{ filled: number }> {
  const r = target(ctx, s, req.driver, req.handle, 'write');
  checkRange(ctx, r.buffer.phys.size, req.offset, req.length, 'length', 'none');
  const chunk = Buffer.alloc(Math.min(STEP, req.length), req.value);
  const view = viewOf(ctx, r);
  const work = function* (): Work<{ filled: number }> {
    // one check (and one violation) for the whole fill, before any byte moves
    yield* ctx.coherency.deviceCheck(who(s), r, 'device.fill', req.offset, req.length, false, view);
    for (let off = 0; off < req.length; off += STEP) {
      const n = Math.min(STEP, req.length - off);
      yield* ctx.coherency.deviceWrite(who(s), r, req.offset + off, chunk.subarray(0, n), view, 'device.fill', true);
    }
    return { filled: req.length };
  };
  return sliced(work(), stillValid(ctx, s, [r]));
}

export function copy(ctx: DaemonContext, s: Session, req: RequestOf<'device.copy'>): { copied: number } | Promise<{ copied: number }> {
  const src = target(ctx, s, req.driver, req.src, 'read');
  const dst = target(ctx, s, req.driver, req.dst, 'write');
  const n = Math.min(src.buffer.phys.size, dst.buffer.phys.size);
  const [vs, vd] = [viewOf(ctx, src), viewOf(ctx, dst)];
  const work = function* (): Work<{ copied: number }> {
    yield* ctx.coherency.deviceCheck(who(s), src, 'device.copy', 0, n, true, vs);
    yield* ctx.coherency.deviceCheck(who(s), dst, 'device.copy', 0, n, false, vd);
    for (let off = 0; off < n; off += STEP) {
      const len = Math.min(STEP, n - off);
      const data = yield* ctx.coherency.deviceRead(who(s), src, off, len, vs, 'device.copy', true);
      yield* ctx.coherency.deviceWrite(who(s), dst, off, data, vd, 'device.copy', true);
    }
    return { copied: n };
  };
  return sliced(work(), stillValid(ctx, s, [src, dst]));
}
