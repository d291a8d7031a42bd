/**
 * The op table: every op name in protocol/requests.ts maps to its handler.
 * TypeScript checks that no op is left without one.
 */
import type { OpName, RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { DaemonContext } from '../context.js';
import type { Session } from '../clients.js';
import * as session from './session.js';
import * as memory from './memory.js';
import * as handles from './handles.js';

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
  dup: handles.dup,
  close: handles.close,
  send: handles.send,
  export: handles.exportHandle,
  import: handles.importToken,
  buffers: handles.buffers,
};
