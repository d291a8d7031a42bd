/**
 * Session ops: hello, ping, status.
 */
import { BufferdError } from '../../protocol/errors.js';
import { PROTOCOL_VERSION, type RequestOf } from '../../protocol/requests.js';
import type { HelloResult, PingResult } from '../../protocol/results.js';
import type { Status } from '../../protocol/status.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { buildStatus } from './status.js';
import { maxDataBytes } from '../../protocol/frame.js';
import { HandleTable } from '../buffers/handles.js';
import { acceptList, acceptPolicy } from '../session/clients.js';

export function hello(ctx: DaemonContext, s: Session, req: RequestOf<'hello'>): HelloResult {
  if (s.open) throw new BufferdError('EPROTO', 'hello was already done on this connection');
  if (req.version !== PROTOCOL_VERSION) {
    throw new BufferdError(
      'EPROTO',
      `protocol version ${req.version} is not supported: this daemon speaks version ${PROTOCOL_VERSION}`,
      { supported: [PROTOCOL_VERSION], requested: req.version },
    );
  }
  const principal = ctx.auth.resolve(req.token, s.peer);
  if (req.name !== undefined) {
    ctx.auth.checkName(req.name, principal);
    const holder = ctx.clients.byName(req.name);
    if (holder !== undefined) {
      throw new BufferdError('EEXIST', `client name '${req.name}' is already used by client ${holder.id}`, { holder: holder.id });
    }
    s.name = req.name;
  }
  s.principal = principal;
  s.capabilities = new Set(principal.capabilities);
  s.handles = new HandleTable(s.id, principal.maxHandles);
  s.accept = acceptPolicy(req.accept ?? 'none');
  s.open = true;
  ctx.clients.add(s);
  s.log = s.log.child({ clientName: s.name, principal: principal.name });
  s.log.debug({ event: 'hello' }, 'client opened session');
  ctx.bus.publish('clients', 'connect', { client: s.id, name: s.name, principal: principal.name });
  return {
    clientId: s.id,
    name: s.name,
    protocolVersion: PROTOCOL_VERSION,
    server: { name: 'bufferd', version: ctx.version, pid: process.pid },
    limits: {
      maxFrameBytes: ctx.config.server.maxFrameBytes,
      maxDataBytes: maxDataBytes(ctx.config.server.maxFrameBytes),
      maxHandles: principal.maxHandles,
      reservedHandles: s.handles.reserved,
      maxTokens: principal.maxTokens,
    },
    principal: principal.name,
    maxBytes: principal.maxBytes,
    accept: acceptList(s.accept),
    fdSocket: ctx.fdbox?.path ?? null,
    peer: s.peer,
    capabilities: [...s.capabilities].sort(),
  };
}

export function ping(ctx: DaemonContext): PingResult {
  return { uptimeMs: ctx.now() };
}

export function status(ctx: DaemonContext, _s: Session, req: RequestOf<'status'>): Status {
  const st = buildStatus(ctx);
  if (req.pool !== undefined) st.pool = ctx.machine.poolDetail(req.pool);
  return st;
}
