/**
 * Handle ops: dup, close, send, export, import, buffers.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { AcceptFrom, BufferListing, HandleInfo, RightName } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { narrow, rightsList, type SharedBuffer } from '../buffers/handles.js';
import { DEFAULT_TOKEN_TTL_MS } from '../buffers/tokens.js';
import { ADMIN, hasCapability } from '../session/auth.js';
import { handleInfo } from './info.js';
import { handlesOf as table, accepts, acceptList, acceptPolicy } from '../session/clients.js';

export function accept(_ctx: DaemonContext, s: Session, req: RequestOf<'accept'>): { accept: AcceptFrom } {
  s.accept = acceptPolicy(req.from);
  return { accept: acceptList(s.accept) };
}

export function dup(_ctx: DaemonContext, s: Session, req: RequestOf<'dup'>): { handle: number; rights: RightName[] } {
  const t = table(s);
  const h = t.get(req.handle);
  const n = t.open(h.buffer, h.rights);
  return { handle: n.fd, rights: rightsList(n.rights) };
}

export function close(_ctx: DaemonContext, s: Session, req: RequestOf<'close'>): { handle: number; closed: true } {
  table(s).close(req.handle);
  return { handle: req.handle, closed: true };
}

const describeAccept = (a: AcceptFrom): string => (a === 'any' ? 'any sender' : a === 'none' ? 'none' : `only ${a.join(', ')}`);

/** The connected client named by id or name, or ENOENT. */
function target(ctx: DaemonContext, to: number | string): Session {
  const c = typeof to === 'number' ? ctx.clients.byId(to) : ctx.clients.byName(to);
  if (c === undefined || c.handles === null) {
    throw new BufferdError('ENOENT', `no connected client ${typeof to === 'number' ? to : `'${to}'`}`, { to });
  }
  return c;
}

export function send(ctx: DaemonContext, s: Session, req: RequestOf<'send'>): { to: number; toName: string | null; rights: RightName[] } {
  const h = table(s).need(req.handle, 'share');
  const rights = narrow(h, req.rights);
  const dest = target(ctx, req.to);
  const who = `client ${dest.id}${dest.name !== null ? ` '${dest.name}'` : ''}`;
  if (!accepts(dest, s)) {
    // as with SCM_RIGHTS, receiving is the receiver's choice
    throw new BufferdError(
      'EPERM',
      `${who} does not accept handles from client ${s.id}${s.name !== null ? ` '${s.name}'` : ''} (it accepts ${describeAccept(acceptList(dest.accept))}); the receiver must say whom it accepts from (hello {accept} or op 'accept')`,
      { to: dest.id, accept: acceptList(dest.accept) },
    );
  }
  const dt = dest.handles!;
  dt.ensureRoom(who, true);
  const n = dt.open(h.buffer, rights);
  const phys = h.buffer.phys;
  dest.send({
    event: 'handle',
    handle: n.fd,
    rights: rightsList(rights),
    from: { id: s.id, name: s.name },
    buffer: phys.id,
    size: phys.size,
    pool: phys.pool.name,
    cache: phys.pool.cfg.cache,
  });
  s.log.debug({ handle: h.fd, to: dest.id, theirs: n.fd, buffer: phys.id }, 'send');
  ctx.bus.publish('handles', 'send', { buffer: phys.id, from: s.id, fromName: s.name, to: dest.id, toName: dest.name, rights: rightsList(rights) });
  return { to: dest.id, toName: dest.name, rights: rightsList(rights) };
}

export function exportHandle(
  ctx: DaemonContext,
  s: Session,
  req: RequestOf<'export'>,
): { token: string; expiresInMs: number; rights: RightName[] } {
  const h = table(s).need(req.handle, 'share');
  const rights = narrow(h, req.rights);
  const p = s.principal!;
  const { token, expiresInMs } = ctx.tokens.export(h.buffer, rights, req.ttlMs ?? DEFAULT_TOKEN_TTL_MS, s.id, s.name, p);
  ctx.armTokens();
  ctx.bus.publish('handles', 'export', { buffer: h.buffer.id, from: s.id, fromName: s.name, expiresInMs });
  return { token, expiresInMs, rights: rightsList(rights) };
}

export function importToken(ctx: DaemonContext, s: Session, req: RequestOf<'import'>): HandleInfo {
  const t = table(s);
  t.ensureRoom();
  const inflight = ctx.tokens.take(req.token);
  const h = t.open(inflight.buffer, inflight.rights);
  // the handle now holds the buffer: drop the in-flight reference
  inflight.buffer.unref('inflight');
  s.log.debug({ handle: h.fd, buffer: h.buffer.id, from: inflight.from }, 'import');
  ctx.bus.publish('handles', 'import', { buffer: h.buffer.id, from: inflight.from, fromName: inflight.fromName, to: s.id, toName: s.name });
  return handleInfo(ctx, h);
}

export function buffers(ctx: DaemonContext, s: Session, req: RequestOf<'buffers'>): { buffers: BufferListing[]; more: boolean } {
  const admin = hasCapability(s.capabilities, ADMIN);
  if (req.pool !== undefined) ctx.machine.pool(req.pool); // ENOENT for a pool that does not exist
  const after = req.after ?? -1;
  const limit = req.limit ?? 1000;
  // the buffers to look at: a client's own table (small) unless an admin lists everything
  const who = !admin ? s : req.client !== undefined ? ctx.clients.byId(req.client) : undefined;
  let candidates: Iterable<SharedBuffer>;
  if (who !== undefined) {
    candidates = [...new Set(table(who).all().map((h) => h.buffer))].sort((a, b) => a.id - b.id);
  } else {
    candidates = ctx.buffers.values(); // in id order (ids only grow)
  }
  const out: BufferListing[] = [];
  let more = false;
  let tokens: ReturnType<typeof ctx.tokens.byBuffer> | undefined; // gathered once, when a listed buffer is in flight
  for (const b of candidates) {
    if (b.id <= after) continue;
    if (req.client !== undefined && !b.holders.has(req.client)) continue;
    if (req.pool !== undefined && b.phys.pool.name !== req.pool) continue;
    if (out.length === limit) {
      more = true;
      break;
    }
    out.push({
      buffer: b.id,
      pool: b.phys.pool.name,
      cache: b.phys.pool.cfg.cache,
      size: b.phys.size,
      usize: b.phys.usize,
      kind: b.phys.kind,
      creator: b.creator,
      holders: [...b.holders].map(([client, handles]) => ({ client, name: ctx.clients.byId(client)?.name ?? null, handles })),
      refs: { ...b.refs },
      registrations: ctx.drivers.registrationsOf(b).map((r) => ({
        driver: r.driver.name,
        deviceAddress: r.deviceAddress,
        registrant: r.registrant,
        bounced: r.pieces.reduce((a, p) => a + (p.bounce ? p.len : 0), 0),
        direction: r.direction,
      })),
      tokens:
        b.refs.inflight === 0
          ? []
          : ((tokens ??= ctx.tokens.byBuffer()).get(b.id) ?? []).map((x) => ({
              from: { id: x.from, name: x.fromName },
              rights: rightsList(x.rights),
              expiresInMs: x.expiresInMs,
            })),
    });
  }
  return { buffers: out, more };
}
