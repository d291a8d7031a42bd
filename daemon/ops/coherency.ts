/**
 * Coherency ops: sync, map, unmap, fence, violations.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import { handlesOf as table, mappingOf, type Session } from '../session/clients.js';
import { rightsList } from '../buffers/handles.js';
import { sliced } from '../lib/slices.js';
import { mapShared } from './shared.js';

/** Abandon long work for a client that left (its buffers may be freed by its teardown). */
export function whileConnected(s: Session): () => void {
  return () => {
    if (s.closed) throw new BufferdError('ECONNRESET', `client ${s.id} disconnected during the operation`);
  };
}

export function sync(ctx: DaemonContext, s: Session, req: RequestOf<'sync'>): ResultOf<'sync'> | Promise<ResultOf<'sync'>> {
  const b = table(s).get(req.handle).buffer;
  // sync faults nothing in: a hugepage never touched has no memory and no cache lines to maintain
  const off = req.offset ?? 0;
  const len = req.length ?? Math.max(0, b.phys.size - off);
  const work = function* () {
    const r = yield* ctx.coherency.syncWork({ id: s.id, name: s.name }, b, req.phase, req.access, off, len);
    return { phase: req.phase, access: req.access, ...r };
  };
  return sliced(work(), whileConnected(s));
}

export function map(ctx: DaemonContext, s: Session, req: RequestOf<'map'>): ResultOf<'map'> {
  const h = table(s).get(req.handle);
  const b = h.buffer;
  const policy = b.phys.pool.cfg.cache;
  if (req.cache !== undefined && req.cache !== policy) {
    throw new BufferdError(
      'EINVAL',
      `field 'cache': buffer ${b.id}'s pages are ${policy}; a ${req.cache} mapping would give one physical page two cache attributes (op 'map')`,
      { requested: req.cache, actual: policy },
    );
  }
  const record = (rights: number): ResultOf<'map'> => {
    // a mapping keeps the buffer alive like a handle: it takes a slot of maxHandles
    // mmap without MAP_POPULATE only reserves (hugetlbfs_file_mmap → hugetlb_reserve_pages): accesses
    // through the mapping fault their hugepages in; a real mapping (nonce) was backed whole by sharedOf
    table(s).hold('mappings');
    b.ref('mappings');
    const id = s.nextMapping++;
    s.mappings.set(id, { id, buffer: b, rights });
    return { mapping: id, cache: policy, size: b.phys.size, rights: rightsList(rights), bytes: b.phys.size, fd: false };
  };
  // with a nonce: a real mapping, the buffer's memfd sent on the fd socket
  if (req.nonce !== undefined) return mapShared(ctx, s, h, req, record);
  return record(h.rights);
}

export function unmap(_ctx: DaemonContext, s: Session, req: RequestOf<'unmap'>): ResultOf<'unmap'> {
  const m = mappingOf(s, req.mapping);
  s.mappings.delete(req.mapping);
  table(s).release('mappings');
  m.buffer.unref('mappings');
  return { mapping: req.mapping, unmapped: true };
}

export function fence(ctx: DaemonContext, s: Session, req: RequestOf<'fence'>): ResultOf<'fence'> {
  return { flushed: ctx.coherency.fence(table(s).get(req.handle).buffer) };
}

export function violations(ctx: DaemonContext, _s: Session, req: RequestOf<'violations'>): ResultOf<'violations'> {
  const filter: { kind?: string; buffer?: number; limit?: number } = {};
  if (req.kind !== undefined) filter.kind = req.kind;
  if (req.buffer !== undefined) filter.buffer = req.buffer;
  if (req.limit !== undefined) filter.limit = req.limit;
  return {
    mode: ctx.config.coherency.mode,
    total: ctx.coherency.total,
    byKind: ctx.coherency.countsByKind(),
    violations: ctx.coherency.violations(filter),
  };
}
