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
import type { DaemonContext } from '../context.js';
import type { Session } from '../clients.js';
import type { Registration } from '../drivers.js';
import type { Right } from '../handles.js';
import { handlesOf as table } from '../clients.js';
import { checkRange } from './memory.js';

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

/** Visit a registration's device view of [off, off + len). */
const view = (ctx: DaemonContext, r: Registration, off: number, len: number) => (fn: (dev: number, phys: number, bounce: boolean, at: number, n: number) => void) =>
  ctx.drivers.forEachPiece(r, off, len, fn);

export function write(ctx: DaemonContext, s: Session, req: RequestOf<'device.write'>): { written: number } {
  const r = target(ctx, s, req.driver, req.handle, 'write');
  checkRange(ctx, r.buffer.phys.size, req.offset, req.data.length, 'length', 'plain');
  ctx.coherency.deviceWrite(who(s), r, req.offset, req.data, view(ctx, r, req.offset, req.data.length));
  return { written: req.data.length };
}

export function read(ctx: DaemonContext, s: Session, req: RequestOf<'device.read'>): { data: Uint8Array } {
  const r = target(ctx, s, req.driver, req.handle, 'read');
  checkRange(ctx, r.buffer.phys.size, req.offset, req.length, 'length', 'plain');
  return { data: ctx.coherency.deviceRead(who(s), r, req.offset, req.length, view(ctx, r, req.offset, req.length)) };
}

export function fill(ctx: DaemonContext, s: Session, req: RequestOf<'device.fill'>): { filled: number } {
  const r = target(ctx, s, req.driver, req.handle, 'write');
  checkRange(ctx, r.buffer.phys.size, req.offset, req.length, 'length', 'none');
  const step = 4 * 1024 * 1024;
  const chunk = Buffer.alloc(Math.min(step, req.length), req.value);
  for (let off = 0; off < req.length; off += step) {
    const n = Math.min(step, req.length - off);
    ctx.coherency.deviceWrite(who(s), r, req.offset + off, chunk.subarray(0, n), view(ctx, r, req.offset + off, n), 'device.fill');
  }
  return { filled: req.length };
}

export function copy(ctx: DaemonContext, s: Session, req: RequestOf<'device.copy'>): { copied: number } {
  const src = target(ctx, s, req.driver, req.src, 'read');
  const dst = target(ctx, s, req.driver, req.dst, 'write');
  const n = Math.min(src.buffer.phys.size, dst.buffer.phys.size);
  const step = 4 * 1024 * 1024;
  for (let off = 0; off < n; off += step) {
    const len = Math.min(step, n - off);
    const data = ctx.coherency.deviceRead(who(s), src, off, len, view(ctx, src, off, len));
    ctx.coherency.deviceWrite(who(s), dst, off, data, view(ctx, dst, off, len), 'device.copy');
  }
  return { copied: n };
}
