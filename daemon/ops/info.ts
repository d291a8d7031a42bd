/**
 * What alloc, info and import answer: a buffer's description and a
 * handle's, with its references, holders and registrations.
 */
import type { BufferInfo, HandleInfo } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import type { PhysBuffer } from '../alloc/pool.js';
import { rightsList, type Handle } from '../buffers/handles.js';

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

export function handleInfo(ctx: DaemonContext, h: Handle): HandleInfo {
  const b = h.buffer;
  return {
    ...bufferInfo(b.phys),
    handle: h.fd,
    rights: rightsList(h.rights),
    refs: { ...b.refs },
    holders: b.holders.size,
    creator: b.creator,
    placement: b.placement,
    registrations: ctx.drivers.registrationsOf(b).map((r) => r.driver.name),
  };
}

