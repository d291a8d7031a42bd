/**
 * Dispatch: one frame body in, one response out. Decodes, validates against
 * the compiled schemas, enforces hello-first, calls the handler and turns any
 * failure into a typed error response. Never throws.
 */
import { BufferdError, type WireError } from '../../protocol/errors.js';
import { decodeValue, DecodeError, isPlainMap } from '../../protocol/codec.js';
import { MAX_REQUEST_VALUES } from '../../protocol/wellformed.js';
import { compileRequestValidator } from '../../protocol/validate.js';
import type { OpName } from '../../protocol/requests.js';
import type { DaemonContext } from './context.js';
import type { Session } from '../session/clients.js';
import { HANDLERS, type Handler } from '../ops/index.js';
import { recordHistory } from '../ops/history-record.js';

export type Reply = { id: number; result: unknown } | { id: number | null; error: WireError };

export type Dispatcher = (s: Session, body: Buffer) => Reply | Promise<Reply>;

function errorReply(id: number | null, e: BufferdError): Reply {
  const w = e.toWire();
  if (w.details !== undefined && 'id' in w.details) {
    const { id: _drop, ...rest } = w.details;
    if (Object.keys(rest).length === 0) delete w.details;
    else w.details = rest;
  }
  return { id, error: w };
}

export function createDispatcher(ctx: DaemonContext): Dispatcher {
  const validate = compileRequestValidator();
  // each buffer op's outcome goes to the buffer's history (ops/history-record.ts)
  const handlers = recordHistory(HANDLERS);

  const fail = (s: Session, id: number | null, op: string, e: unknown): Reply => {
    if (e instanceof BufferdError) {
      s.log.debug({ id, op, code: e.code }, e.message);
      return errorReply(id, e);
    }
    s.log.error({ id, op, err: e }, 'internal error in op handler');
    return { id, error: { code: 'EIO', message: `internal error in op '${op}': ${(e as Error)?.message ?? String(e)}` } };
  };

  return (s, body) => {
    let msg: unknown;
    try {
      msg = decodeValue(body, MAX_REQUEST_VALUES);
    } catch (e) {
      const text = e instanceof DecodeError ? e.message : 'body is not valid MessagePack';
      s.log.warn({ code: 'EPROTO' }, text);
      return { id: null, error: { code: 'EPROTO', message: text } };
    }
    let op: OpName;
    let id: number;
    try {
      ({ op, id } = validate(msg));
    } catch (e) {
      const be = e as BufferdError;
      const rid = isPlainMap(msg) && typeof be.details?.['id'] === 'number' ? (be.details['id'] as number) : null;
      s.log.debug({ id: rid, code: be.code }, be.message);
      return errorReply(rid, be);
    }
    if (!s.open && op !== 'hello') {
      return errorReply(id, new BufferdError('EPROTO', `the first request on a connection must be 'hello', not '${op}'`));
    }
    const handler = handlers[op] as Handler<OpName>;
    try {
      const out = handler(ctx, s, msg as never);
      if (out instanceof Promise) {
        return out.then(
          (result) => ({ id, result }),
          (e: unknown) => fail(s, id, op, e),
        );
      }
      return { id, result: out };
    } catch (e) {
      return fail(s, id, op, e);
    }
  };
}
