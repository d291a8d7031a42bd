/**
 * The `history` op: one buffer's journal (session/history.ts), for the
 * clients that held it or were given it, and for admins — as `buffers`
 * lists all buffers for admins and a client's own otherwise.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { HistoryResult } from '../../protocol/ops/history.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { ADMIN, hasCapability } from '../session/auth.js';
import { flat } from '../session/history.js';

export function history(ctx: DaemonContext, s: Session, req: RequestOf<'history'>): HistoryResult {
  const h = ctx.history;
  if (!h.enabled) throw new BufferdError('ENOTSUP', 'buffer history is off (config history.enabled is false)');
  const id = req.buffer;
  const live = ctx.buffers.get(id);
  const j = h.get(id);
  if (j === undefined && live === undefined) {
    throw new BufferdError(
      'ENOENT',
      `no buffer ${id}: never allocated, or freed and its history no longer kept (history.keepFreed is ${ctx.config.history.keepFreed})`,
      { buffer: id },
    );
  }
  const may = hasCapability(s.capabilities, ADMIN) || h.involved(id, s.id) || live?.holders.has(s.id) === true;
  if (!may) {
    throw new BufferdError('EPERM', `the history of buffer ${id} is for the clients that held it and admins; client ${s.id} never held it`, { buffer: id });
  }
  if (j === undefined) return { buffer: id, live: true, partial: true, dropped: 0, events: [] };
  const events = (req.limit !== undefined && req.limit < j.events.length ? j.events.slice(-req.limit) : j.events).map(flat);
  return { buffer: id, live: j.live, partial: j.partial, dropped: j.dropped, events };
}
