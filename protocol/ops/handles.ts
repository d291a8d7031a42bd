/**
 * Handle ops: dup, close, send, export, import, buffers. (alloc, info, read
 * and write take and return handles too; they live with the memory ops.)
 */
import { Type } from '@sinclair/typebox';
import { Name, Uint, request } from '../types.js';

export const Handle = Uint({ description: 'handle number on this connection' });

export const Right = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('share')], {
  description: 'one of "read", "write", "share"',
});
export const Rights = Type.Array(Right, { maxItems: 3, uniqueItems: true, description: 'rights: "read", "write", "share"' });

export const DupRequest = request('dup', { handle: Handle }, 'A new handle number for the same buffer, same rights.');

export const CloseRequest = request('close', { handle: Handle }, 'Close a handle; the buffer is freed when its last reference goes.');

export const SendRequest = request(
  'send',
  {
    handle: Handle,
    to: Type.Union([Uint({ description: 'client id' }), Name('client name')], { description: 'a connected client: its id (integer) or its name (string)' }),
    rights: Type.Optional(Rights),
  },
  'Pass a handle to another connected client; it receives a `handle` event. The sender keeps its handle.',
);

export const ExportRequest = request(
  'export',
  {
    handle: Handle,
    rights: Type.Optional(Rights),
    ttlMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 3600 * 1000, description: 'token lifetime in ms, 1 to 86400000' })),
  },
  'Turn a handle into a single-use token another client can import.',
);

export const ImportRequest = request(
  'import',
  { token: Type.String({ minLength: 1, maxLength: 128, description: 'a token from export' }) },
  'Redeem a token for a handle.',
);

export const BuffersRequest = request(
  'buffers',
  {
    client: Type.Optional(Uint({ description: 'only buffers this client holds' })),
    pool: Type.Optional(Name('only buffers of this pool')),
  },
  'List live buffers and who holds them (all buffers for admins, held ones for others).',
);

export const HANDLE_REQUESTS = {
  dup: DupRequest,
  close: CloseRequest,
  send: SendRequest,
  export: ExportRequest,
  import: ImportRequest,
  buffers: BuffersRequest,
} as const;
