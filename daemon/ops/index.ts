/**
 * Layer daemon/ops/: the request handlers, one file per group of ops, the
 * op table (this file), the status object and reload. A handler gets the
 * context (session/context.ts) and a session and returns a result or throws
 * a typed error. It may use session/, config/, dma/, buffers/, alloc/,
 * memory/, lib/ and protocol/; server/ uses it.
 *
 * The op table: every op name in protocol/requests.ts maps to its handler.
 * TypeScript checks that no op is left without one.
 */
import type { OpName, RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import * as session from './session.js';
import * as memory from './memory.js';
import * as handles from './handles.js';
import * as drivers from './drivers.js';
import * as device from './device.js';
import * as coherency from './coherency.js';
import * as events from './events.js';
import * as shared from './shared.js';
import * as inject from './inject.js';
import { history } from './history.js';
import { graph } from './graph.js';
import * as recording from './record.js';
import type { Work } from '../lib/slices.js';

export type Handler<K extends OpName> = (
  ctx: DaemonContext,
  s: Session,
  req: RequestOf<K>,
) => ResultOf<K> | Promise<ResultOf<K>>;

export type HandlerTable = { [K in OpName]: Handler<K> };

export const HANDLERS: HandlerTable = {
  hello: session.hello,
  ping: session.ping,
  status: session.status,
  pools: memory.pools,
  alloc: memory.alloc,
  info: memory.info,
  'hugepages.set': memory.hugepagesSet,
  write: memory.write,
  read: memory.read,
  accept: handles.accept,
  exportFd: shared.exportFd,
  importFd: shared.importFd,
  dup: handles.dup,
  close: handles.close,
  send: handles.send,
  export: handles.exportHandle,
  import: handles.importToken,
  buffers: handles.buffers,
  drivers: drivers.drivers,
  constraints: drivers.constraints,
  merge: drivers.merge,
  register: drivers.register,
  unregister: drivers.unregister,
  'driver.attach': drivers.attach,
  'driver.detach': drivers.detach,
  'device.write': device.write,
  'device.read': device.read,
  'device.fill': device.fill,
  'device.copy': device.copy,
  sync: coherency.sync,
  map: coherency.map,
  unmap: coherency.unmap,
  fence: coherency.fence,
  violations: coherency.violations,
  subscribe: events.subscribe,
  unsubscribe: events.unsubscribe,
  reload: events.reload,
  'inject.set': inject.set,
  'inject.clear': inject.clear,
  'inject.list': inject.list,
  history,
  graph,
  record: recording.record,
};

/**
 * What a departed client leaves behind: its registrations and its client
 * drivers, reported as leaks, unless the daemon is stopping: then the daemon
 * ended the session and they are released quietly.
 */
export function* onSessionClose(ctx: DaemonContext, s: Session): Work<void> {
  if (ctx.stopping) yield* drivers.releaseAtShutdown(ctx, { registrant: s.id });
  else yield* drivers.reportLeaks(ctx, { registrant: s.id }, 'registering client disconnected');
  for (const d of ctx.drivers.list()) {
    if (d.owner !== s.id) continue;
    if (ctx.stopping) yield* drivers.releaseAtShutdown(ctx, { driver: d });
    else yield* drivers.reportLeaks(ctx, { driver: d }, 'client driver disconnected');
    ctx.drivers.detach(d);
  }
}
