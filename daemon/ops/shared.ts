/**
 * Shared-memory ops: a real mapping (map with a nonce), exportFd and
 * importFd. The buffer gets its own memfd (dma/shared.ts) and the
 * descriptor crosses on the fd socket (session/fdbox.ts): read-only unless
 * the handle has 'write' and the access asked allows it, so the kernel
 * enforces the rights (a write through a read-only mapping faults).
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import { handlesOf as table, type Session } from '../session/clients.js';
import { R_READ, R_SHARE, R_WRITE, rightsList, type Handle } from '../buffers/handles.js';
import { notOwnPages, type Shm } from '../dma/shared.js';
import { MAGIC, type FdBox } from '../session/fdbox.js';
import { handleInfo } from './info.js';

/** The fd socket, or ENOTSUP naming why there is none. */
function box(ctx: DaemonContext, what: string): FdBox {
  ctx.shared.need(what);
  if (ctx.fdbox === null) throw new BufferdError('ENOTSUP', `${what} needs the fd socket, which this daemon could not open beside ${ctx.socketPath}`);
  return ctx.fdbox;
}

/** The buffer's shared memory, made on first use (EINVAL for a buffer that shares its page). */
function sharedOf(ctx: DaemonContext, h: Handle): Shm {
  const b = h.buffer;
  const cur = ctx.shared.of(b);
  if (cur !== undefined) return cur;
  const why = notOwnPages(b.phys);
  if (why !== null) throw new BufferdError('EINVAL', why, { buffer: b.id, usize: b.phys.usize, kind: b.phys.kind });
  // the client's own loads and stores through its mapping never reach the daemon, so no fault can be
  // seen: the whole buffer is backed when its memory is first shared, as MAP_POPULATE does (mm/gup.c,
  // populate_vma_page_range faults in every page of the mapping)
  ctx.machine.touch(b.phys);
  return ctx.coherency.promote(b);
}

/** Rights of a descriptor for this handle and access: read-only unless both allow writing. */
function accessRights(h: Handle, access: 'read' | 'write' | 'readwrite' | undefined, op: string): number {
  const wantWrite = access === 'write' || access === 'readwrite' || (access === undefined && (h.rights & R_WRITE) !== 0);
  if (wantWrite && (h.rights & R_WRITE) === 0) {
    throw new BufferdError('EPERM', `handle ${h.fd} lacks the 'write' right: ${op} with access '${access}' needs it (ask for access 'read')`, { handle: h.fd, missing: 'write' });
  }
  if ((h.rights & R_READ) === 0) throw new BufferdError('EPERM', `handle ${h.fd} lacks the 'read' right: a mapping always reads`, { handle: h.fd, missing: 'read' });
  return wantWrite ? R_READ | R_WRITE : R_READ;
}

/** Send a descriptor for the buffer's memfd to the client that presented `nonce`. */
function sendFd(ctx: DaemonContext, s: Session, nonce: string, shm: Shm, rights: number, what: string): void {
  const fdbox = box(ctx, what);
  const readOnly = (rights & R_WRITE) === 0;
  const fd = ctx.shared.fd(shm, readOnly);
  const header = JSON.stringify({ v: 1, buffer: shm.buffer.id, size: shm.buffer.phys.size, bytes: shm.bytes, rights: rightsList(rights), readOnly });
  fdbox.send(nonce, s.peer, Buffer.concat([MAGIC, Buffer.from(header)]), fd);
}

/** map with a nonce: the mapping record, and the descriptor to mmap. */
export function mapShared(ctx: DaemonContext, s: Session, h: Handle, req: RequestOf<'map'>, done: (rights: number) => ResultOf<'map'>): ResultOf<'map'> {
  box(ctx, 'a mapping');
  const rights = accessRights(h, req.access, 'map');
  const shm = sharedOf(ctx, h);
  const r = done(rights);
  try {
    sendFd(ctx, s, req.nonce!, shm, rights, 'a mapping');
  } catch (e) {
    // no descriptor, no mapping
    s.mappings.delete(r.mapping);
    table(s).release('mappings');
    h.buffer.unref('mappings');
    throw e;
  }
  return { ...r, rights: rightsList(rights), bytes: shm.bytes, fd: true };
}

export function exportFd(ctx: DaemonContext, s: Session, req: RequestOf<'exportFd'>): ResultOf<'exportFd'> {
  box(ctx, 'exportFd');
  const h = table(s).get(req.handle);
  // whoever holds an fd can pass it on and import it: taking one is sharing
  if ((h.rights & R_SHARE) === 0) {
    throw new BufferdError('EPERM', `handle ${h.fd} lacks the 'share' right: exportFd makes a descriptor that can be passed on, which needs it (map() does not)`, { handle: h.fd, missing: 'share' });
  }
  const rights = accessRights(h, req.access, 'exportFd') | R_SHARE;
  const shm = sharedOf(ctx, h);
  sendFd(ctx, s, req.nonce, shm, rights, 'exportFd');
  return { buffer: h.buffer.id, size: h.buffer.phys.size, bytes: shm.bytes, rights: rightsList(rights), readOnly: (rights & R_WRITE) === 0 };
}

export function importFd(ctx: DaemonContext, s: Session, req: RequestOf<'importFd'>): ResultOf<'importFd'> {
  const fdbox = box(ctx, 'importFd');
  const t = table(s);
  t.ensureRoom();
  const fd = fdbox.receive(req.nonce, s.peer);
  let shm: Shm | undefined;
  let mode: 'read' | 'write' | 'readwrite';
  try {
    const st = ctx.shared.stat(fd);
    shm = ctx.shared.find(st.dev, st.ino);
    mode = ctx.shared.accessMode(fd);
  } finally {
    ctx.shared.close(fd);
  }
  if (shm === undefined) {
    throw new BufferdError('EINVAL', "the file descriptor is not a live buffer of this daemon (not one of its memfds, or its buffer was freed since it was handed out)");
  }
  // rights follow the descriptor's access mode, as the kernel enforces them; whoever holds an fd may pass it on
  const rights = (mode === 'read' ? R_READ : R_READ | R_WRITE) | R_SHARE;
  const h = t.open(shm.buffer, rights);
  s.log.debug({ handle: h.fd, buffer: shm.buffer.id, mode }, 'importFd');
  return handleInfo(ctx, h);
}
