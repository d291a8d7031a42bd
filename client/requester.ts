/**
 * What the client's helpers (device access, mappings) need of a client:
 * its requests and its session's answer to hello. BufferClient is one.
 */
import type { OpName, ParamsOf } from '../protocol/requests.js';
import type { HelloResult, ResultOf } from '../protocol/results.js';

export interface Requester {
  request<K extends OpName>(op: K, params: ParamsOf<K>): Promise<ResultOf<K>>;
  readonly session: HelloResult;
}
