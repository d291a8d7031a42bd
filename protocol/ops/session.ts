/**
 * Session ops: hello, ping, status.
 */
import { Type } from '../typebox.js';
import { Name, Uint, request } from '../types.js';
import { AcceptFrom } from './handles.js';

const HelloRequest = request(
  'hello',
  {
    version: Uint({ description: 'protocol version spoken by the client' }),
    name: Type.Optional(Name('client name, unique among connected clients')),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'authentication token' })),
    accept: Type.Optional(AcceptFrom),
  },
  'Open the session: must be the first request on a connection.',
);

const PingRequest = request('ping', {}, 'Round trip with no effect.');

const StatusRequest = request(
  'status',
  { pool: Type.Optional(Name('pool whose arenas and bins to include')) },
  'Everything the daemon manages, as one object.',
);

export const SESSION_REQUESTS = {
  hello: HelloRequest,
  ping: PingRequest,
  status: StatusRequest,
} as const;
