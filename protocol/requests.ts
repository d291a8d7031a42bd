/**
 * The request table: one schema per op. Each later capability adds its ops
 * here (or in a sibling module merged into REQUESTS), and PROTOCOL.md
 * documents every entry (a test checks that).
 */
import { Type, type Static } from '@sinclair/typebox';
import { Name, Uint, request } from './types.js';

/** The protocol version this package speaks. */
export const PROTOCOL_VERSION = 1;

export const HelloRequest = request(
  'hello',
  {
    version: Uint({ description: 'protocol version spoken by the client' }),
    name: Type.Optional(Name('client name, unique among connected clients')),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'authentication token' })),
  },
  'Open the session: must be the first request on a connection.',
);

export const PingRequest = request('ping', {}, 'Round trip with no effect.');

export const StatusRequest = request('status', {}, 'Everything the daemon manages, as one object.');

export const REQUESTS = {
  hello: HelloRequest,
  ping: PingRequest,
  status: StatusRequest,
} as const;

export type OpName = keyof typeof REQUESTS;
export type RequestOf<K extends OpName> = Static<(typeof REQUESTS)[K]>;
/** The fields of a request other than `id` and `op`. */
export type ParamsOf<K extends OpName> = Omit<RequestOf<K>, 'id' | 'op'>;

export const OP_NAMES = Object.keys(REQUESTS) as OpName[];
