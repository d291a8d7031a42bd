/**
 * Memory ops: pools, alloc, free, info, hugepages.set.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { BufferInfo, HugepagesSetResult } from '../../protocol/results.js';
import type { PoolStatus } from '../../protocol/status.js';
import { formatSize } from '../../protocol/units.js';
import type { DaemonContext } from '../context.js';
import type { Session } from '../clients.js';
import type { PhysBuffer } from '../pool.js';
import { maxDataBytes } from './session.js';

export function bufferInfo(b: PhysBuffer): BufferInfo {
  return {
    buffer: b.id,
    pool: b.pool.name,
    cache: b.pool.cfg.cache,
    pageSize: b.pool.pageSize,
    region: b.pool.cfg.region,
    size: b.size,
    align: b.align,
    usize: b.usize,
    kind: b.kind,
    segments: b.segments.map((s) => ({ addr: s.addr, len: s.len })),
    contiguous: b.segments.length <= 1,
    populated: b.reservedPages === 0,
    reservedHugepages: b.reservedPages,
    owner: b.owner,
  };
}

/** The buffer with this id, if this session allocated it. */
function owned(ctx: DaemonContext, s: Session, id: number): PhysBuffer {
  const b = ctx.machine.buffer(id);
  if (b === undefined || b.owner !== s.id) throw new BufferdError('ENOENT', `no buffer ${id} allocated by this connection`, { buffer: id });
  return b;
}

export function pools(ctx: DaemonContext): { pools: PoolStatus[] } {
  return { pools: ctx.machine.poolStatus() };
}

export function alloc(ctx: DaemonContext, s: Session, req: RequestOf<'alloc'>): BufferInfo {
  const b = ctx.machine.alloc({ pool: req.pool, size: req.size, align: req.align ?? 1, owner: s.id, populate: req.populate ?? true });
  s.log.debug({ buffer: b.id, pool: req.pool, size: req.size }, 'alloc');
  return bufferInfo(b);
}

export function free(ctx: DaemonContext, s: Session, req: RequestOf<'free'>): { buffer: number; freed: true } {
  const b = owned(ctx, s, req.buffer);
  ctx.machine.free(b);
  return { buffer: req.buffer, freed: true };
}

export function info(ctx: DaemonContext, s: Session, req: RequestOf<'info'>): BufferInfo {
  return bufferInfo(owned(ctx, s, req.buffer));
}

export function hugepagesSet(ctx: DaemonContext, s: Session, req: RequestOf<'hugepages.set'>): HugepagesSetResult {
  const r = ctx.machine.setHugepages(req.size, req.nr, req.overcommit);
  const level = r.reached < r.requested ? 'warn' : 'info';
  s.log[level]({ size: r.size, requested: r.requested, reached: r.reached, overcommit: r.overcommit }, `hugepages ${formatSize(r.size)} resized`);
  return r;
}

/** Offsets and lengths inside the buffer and under the data limit, or EINVAL naming both. */
function checkRange(ctx: DaemonContext, b: PhysBuffer, offset: number, length: number, field: string): void {
  const max = maxDataBytes(ctx.config.server.maxFrameBytes);
  if (length > max) {
    throw new BufferdError('EINVAL', `field '${field}' is ${length} bytes, over the per-request limit maxDataBytes ${max}; split the transfer`, {
      length,
      maxDataBytes: max,
    });
  }
  if (offset + length > b.size) {
    throw new BufferdError(
      'EINVAL',
      `offset ${offset} + ${field} ${length} = ${offset + length} is past the end of buffer ${b.id} (size ${b.size})`,
      { offset, length, size: b.size },
    );
  }
}

export function write(ctx: DaemonContext, s: Session, req: RequestOf<'write'>): { written: number } {
  const b = owned(ctx, s, req.buffer);
  checkRange(ctx, b, req.offset, req.data.length, 'data length');
  ctx.machine.write(b, req.offset, req.data);
  return { written: req.data.length };
}

export function read(ctx: DaemonContext, s: Session, req: RequestOf<'read'>): { data: Uint8Array } {
  const b = owned(ctx, s, req.buffer);
  checkRange(ctx, b, req.offset, req.length, 'length');
  return { data: ctx.machine.read(b, req.offset, req.length) };
}
