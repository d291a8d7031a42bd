/**
 * Memory ops: pools, alloc, info, read, write, hugepages.set.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { HandleInfo, HugepagesSetResult } from '../../protocol/results.js';
import { handleInfo } from './info.js';
import type { PoolStatus } from '../../protocol/status.js';
import { formatSize } from '../../protocol/units.js';
import type { DaemonContext } from '../session/context.js';
import { handlesOf as table, mappingOf, type Session } from '../session/clients.js';
import { R_ALL, R_READ, R_WRITE, type SharedBuffer } from '../buffers/handles.js';
import { ADMIN, requireCapability } from '../session/auth.js';
import { maxDataBytes } from '../../protocol/frame.js';
import { planFor } from './drivers.js';
import { checkPlacementRequest, checkPoolReaches } from '../alloc/placement.js';

export function pools(ctx: DaemonContext): { pools: PoolStatus[] } {
  return { pools: ctx.machine.poolStatus() };
}

export function alloc(ctx: DaemonContext, s: Session, req: RequestOf<'alloc'>): HandleInfo {
  if ((req.pool === undefined) === (req.for === undefined)) {
    throw new BufferdError('EINVAL', "give either 'pool' or 'for' (exactly one) (op 'alloc')");
  }
  const t = table(s);
  t.ensureRoom();
  const minAddress = req.minAddress ?? 0;
  let plan: { candidates: { pool: string; reason: string }[]; align: number; for: string[] | null };
  if (req.for !== undefined) {
    const p = planFor(ctx, s, req.for);
    // a non-coherent device: the buffer gets cache lines of its own (ARCH_DMA_MINALIGN; include/linux/dma-mapping.h dma_get_cache_alignment), or it may share one with another buffer
    const line = p.merged.coherent ? 1 : ctx.coherency.cache.line;
    const candidates = placeable(ctx, p.candidates, p.merged.addressLimit, minAddress, req).map((c) =>
      line > 1 ? { ...c, reason: `${c.reason}; aligned to the ${line}-byte cache line (a non-coherent device: no line shared with another buffer)` } : c,
    );
    plan = { candidates, align: Math.max(req.align ?? 1, p.merged.align, line), for: req.for };
  } else {
    const pool = ctx.machine.pool(req.pool!);
    if (pool.cfg.capability !== null) requireCapability(s.capabilities, pool.cfg.capability, `allocating from pool '${pool.name}'`);
    plan = { candidates: [{ pool: pool.name, reason: 'asked for by name' }], align: req.align ?? 1, for: null };
  }
  let last: unknown;
  for (const c of plan.candidates) {
    const pool = ctx.machine.pool(c.pool);
    try {
      pool.checkRequest(req.size, plan.align);
      checkQuota(s, pool.usizeFor(req.size, plan.align, minAddress > 0));
      const phys = ctx.machine.alloc({ pool: c.pool, size: req.size, align: plan.align, owner: s.id, populate: req.populate ?? true, minAddress });
      const b = ctx.share(phys, s);
      if (plan.for !== null) b.placement = { for: plan.for, pool: c.pool, reason: c.reason };
      const h = t.open(b, R_ALL);
      s.log.debug({ handle: h.fd, buffer: phys.id, pool: c.pool, size: req.size }, 'alloc');
      return handleInfo(ctx, h);
    } catch (e) {
      // with several fitting pools, one that is full is not the end
      if (!(e instanceof BufferdError) || e.code !== 'ENOMEM' || plan.candidates.length === 1) throw e;
      last = e;
    }
  }
  throw last;
}

/**
 * alloc {for, minAddress}: the fitting pools that have memory at or above
 * the address. EINVAL when none has, or when the drivers could never reach
 * a buffer placed there (a DMA mask below it, and no bounce).
 */
function placeable(
  ctx: DaemonContext,
  candidates: { pool: string; reason: string }[],
  addressLimit: number | null,
  minAddress: number,
  req: RequestOf<'alloc'>,
): { pool: string; reason: string }[] {
  if (minAddress === 0) return candidates;
  checkPlacementRequest(minAddress, req.populate ?? true);
  const hex = (a: number) => `0x${a.toString(16)}`;
  if (addressLimit !== null && addressLimit <= minAddress) {
    throw new BufferdError('EINVAL', `minAddress ${hex(minAddress)} is at or above what ${req.for!.join(' + ')} can reach without bouncing (below ${hex(addressLimit)}): such a buffer could never be registered`, { minAddress, addressLimit });
  }
  const why: string[] = [];
  const ok = candidates.filter((c) => {
    try {
      checkPoolReaches(ctx.machine.pool(c.pool).cfg, ctx.machine.mem, minAddress);
      return true;
    } catch (e) {
      if (!(e instanceof BufferdError) || e.code !== 'EINVAL') throw e;
      why.push(e.message);
      return false;
    }
  });
  if (ok.length === 0) throw new BufferdError('EINVAL', `no pool that fits ${req.for!.join(' + ')} can place a buffer at or above ${hex(minAddress)}: ${why.join('; ')}`, { minAddress });
  return ok;
}

function checkQuota(s: Session, usize: number): void {
  const quota = s.principal!.maxBytes;
  if (quota === null) return;
  const used = s.principal!.usage.bytes;
  if (used + usize > quota) {
    throw new BufferdError(
      'EDQUOT',
      `quota exceeded: ${formatSize(usize)} more would make ${formatSize(used + usize)} of the ${formatSize(quota)} allowed to '${s.principal!.name}' (maxBytes); ${formatSize(used)} in use. The quota is the principal's, shared by all its connections, and counts every live buffer its clients allocated, whatever keeps it alive (handles anywhere, tokens in flight, mappings, registrations)`,
      { quota, used, requested: usize, principal: s.principal!.name },
    );
  }
}

export function info(ctx: DaemonContext, s: Session, req: RequestOf<'info'>): HandleInfo {
  return handleInfo(ctx, table(s).get(req.handle));
}

/**
 * Offsets and lengths inside a buffer of `size` bytes and, unless `limit` is
 * 'none', under the per-request data limit; EINVAL naming both. CPU ops
 * ('split') advise splitting the transfer; device ops ('plain') do not.
 */
export function checkRange(ctx: DaemonContext, size: number, offset: number, length: number, field: string, limit: 'split' | 'plain' | 'none'): void {
  const max = maxDataBytes(ctx.config.server.maxFrameBytes);
  if (limit !== 'none' && length > max) {
    const text = `field '${field}' is ${length} bytes, over the per-request limit maxDataBytes ${max}`;
    if (limit === 'plain') throw new BufferdError('EINVAL', text);
    throw new BufferdError('EINVAL', `${text}; split the transfer`, { length, maxDataBytes: max });
  }
  if (offset + length > size) {
    throw new BufferdError('EINVAL', `offset ${offset} + ${field} ${length} = ${offset + length} is past the end of the buffer (size ${size})`, { offset, length, size });
  }
}

/** The buffer a CPU access names (a handle or a mapping), checking the right it needs. */
export function cpuTarget(s: Session, req: { handle?: number; mapping?: number }, right: 'read' | 'write', op: string): SharedBuffer {
  if ((req.handle === undefined) === (req.mapping === undefined)) {
    throw new BufferdError('EINVAL', `give either 'handle' or 'mapping' (exactly one) (op '${op}')`);
  }
  if (req.handle !== undefined) return table(s).need(req.handle, right).buffer;
  const m = mappingOf(s, req.mapping!);
  if ((m.rights & (right === 'read' ? R_READ : R_WRITE)) === 0) {
    throw new BufferdError('EPERM', `mapping ${m.id} lacks the '${right}' right`, { mapping: m.id, missing: right });
  }
  return m.buffer;
}

export function write(ctx: DaemonContext, s: Session, req: RequestOf<'write'>): { written: number } {
  const b = cpuTarget(s, req, 'write', 'write');
  checkRange(ctx, b.phys.size, req.offset, req.data.length, 'data length', 'split');
  // only the hugepages the access touches are faulted in (hugetlb_no_page), and only once the range is valid
  ctx.machine.touch(b.phys, req.offset, req.data.length);
  ctx.coherency.cpuWrite({ id: s.id, name: s.name }, b, req.offset, req.data);
  return { written: req.data.length };
}

export function read(ctx: DaemonContext, s: Session, req: RequestOf<'read'>): { data: Uint8Array } {
  const b = cpuTarget(s, req, 'read', 'read');
  checkRange(ctx, b.phys.size, req.offset, req.length, 'length', 'split');
  // a read faults its hugepages in too: hugetlbfs has no zero page
  ctx.machine.touch(b.phys, req.offset, req.length);
  return { data: ctx.coherency.cpuRead({ id: s.id, name: s.name }, b, req.offset, req.length) };
}

export function hugepagesSet(ctx: DaemonContext, s: Session, req: RequestOf<'hugepages.set'>): HugepagesSetResult {
  requireCapability(s.capabilities, ADMIN, 'hugepages.set');
  const r = ctx.machine.setHugepages(req.size, req.nr, req.overcommit);
  ctx.bus.publish('hugepages', 'resize', { size: r.size, requested: r.requested, reached: r.reached, overcommit: r.overcommit, client: s.id });
  const level = r.reached < r.requested ? 'warn' : 'info';
  s.log[level]({ size: r.size, requested: r.requested, reached: r.reached, overcommit: r.overcommit, ...(r.reason !== undefined ? { reason: r.reason } : {}) }, `hugepages ${formatSize(r.size)} resized`);
  return r;
}
