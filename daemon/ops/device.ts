/**
 * Device-side access: a device acting on a buffer registered with it,
 * through its device addresses (IOVA translated back through its IOMMU
 * mapping, bounce slots copied to and from the buffer). Built-in devices
 * are driven by any client holding a handle on the buffer (with the right
 * for the direction); a client driver's device only by the client that
 * attached it.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { DaemonContext } from '../context.js';
import type { Session } from '../clients.js';
import type { Registration } from '../drivers.js';
import type { Right } from '../handles.js';
import { handlesOf as table } from '../clients.js';
import { maxDataBytes } from '../../protocol/frame.js';

/** The registration a device op acts on, checking who may drive the device. */
function target(ctx: DaemonContext, s: Session, driver: string, handle: number, right: Right): Registration {
  const d = ctx.drivers.get(driver);
  if (d.owner !== null && d.owner !== s.id) {
    throw new BufferdError('EPERM', `driver '${d.name}' is a client driver: only its client (${d.owner}) can act as the device`, { driver: d.name });
  }
  const h = table(s).need(handle, right);
  return ctx.drivers.registration(d, h.buffer);
}

function checkRange(ctx: DaemonContext, r: Registration, offset: number, length: number, limitData: boolean): void {
  const size = r.buffer.phys.size;
  if (limitData && length > maxDataBytes(ctx.config.server.maxFrameBytes)) {
    throw new BufferdError('EINVAL', `field 'length' is ${length} bytes, over the per-request limit maxDataBytes ${maxDataBytes(ctx.config.server.maxFrameBytes)}`);
  }
  if (offset + length > size) {
    throw new BufferdError('EINVAL', `offset ${offset} + length ${length} = ${offset + length} is past the end of the buffer (size ${size})`, { offset, length, size });
  }
}

/** The device writes bytes at buffer offset `off`. */
export function deviceWriteBytes(ctx: DaemonContext, r: Registration, off: number, data: Uint8Array): void {
  const store = ctx.machine.mem.store;
  ctx.drivers.forEachPiece(r, off, data.length, (dev, phys, bounce, at, n) => {
    if (bounce) {
      // the device writes the bounce slots; no cache model yet, so they are copied back at once
      store.write(dev, data, at, n);
      store.copy(phys, dev, n);
    } else {
      store.write(phys, data, at, n);
    }
  });
}

/** The device reads bytes at buffer offset `off`. */
export function deviceReadBytes(ctx: DaemonContext, r: Registration, off: number, len: number): Buffer {
  const store = ctx.machine.mem.store;
  const out = Buffer.allocUnsafe(len);
  ctx.drivers.forEachPiece(r, off, len, (dev, phys, bounce, at, n) => {
    if (bounce) {
      store.copy(dev, phys, n);
      store.readInto(dev, n, out, at);
    } else {
      store.readInto(phys, n, out, at);
    }
  });
  return out;
}

export function write(ctx: DaemonContext, s: Session, req: RequestOf<'device.write'>): { written: number } {
  const r = target(ctx, s, req.driver, req.handle, 'write');
  checkRange(ctx, r, req.offset, req.data.length, true);
  deviceWriteBytes(ctx, r, req.offset, req.data);
  return { written: req.data.length };
}

export function read(ctx: DaemonContext, s: Session, req: RequestOf<'device.read'>): { data: Uint8Array } {
  const r = target(ctx, s, req.driver, req.handle, 'read');
  checkRange(ctx, r, req.offset, req.length, true);
  return { data: deviceReadBytes(ctx, r, req.offset, req.length) };
}

export function fill(ctx: DaemonContext, s: Session, req: RequestOf<'device.fill'>): { filled: number } {
  const r = target(ctx, s, req.driver, req.handle, 'write');
  checkRange(ctx, r, req.offset, req.length, false);
  const store = ctx.machine.mem.store;
  ctx.drivers.forEachPiece(r, req.offset, req.length, (dev, phys, bounce, _at, n) => {
    store.fill(bounce ? dev : phys, n, req.value);
    if (bounce) store.copy(phys, dev, n);
  });
  return { filled: req.length };
}

export function copy(ctx: DaemonContext, s: Session, req: RequestOf<'device.copy'>): { copied: number } {
  const src = target(ctx, s, req.driver, req.src, 'read');
  const dst = target(ctx, s, req.driver, req.dst, 'write');
  const n = Math.min(src.buffer.phys.size, dst.buffer.phys.size);
  const step = 4 * 1024 * 1024;
  for (let off = 0; off < n; off += step) {
    const len = Math.min(step, n - off);
    deviceWriteBytes(ctx, dst, off, deviceReadBytes(ctx, src, off, len));
  }
  return { copied: n };
}
