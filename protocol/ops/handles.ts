/**
 * Handle ops: dup, close, send, export, import, buffers. (alloc, info, read
 * and write take and return handles too; they live with the memory ops.)
 */
import { Type } from '../typebox.js';
import { HandleNum as Handle, Name, Uint, request } from '../types.js';
import { Access, Nonce } from './coherency.js';

/** Longest token lifetime export accepts: 24 h. */
export const MAX_TOKEN_TTL_MS = 24 * 3600 * 1000;

const Right = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('share')], {
  description: 'one of "read", "write", "share"',
});
const Rights = Type.Array(Right, { maxItems: 3, uniqueItems: true, description: 'rights: "read", "write", "share"' });

/** Whom a client accepts handles from: anyone, nobody, or these client ids and names. */
export const AcceptFrom = Type.Union(
  [
    Type.Literal('any'),
    Type.Literal('none'),
    Type.Array(Type.Union([Uint({ description: 'client id' }), Name('client name')]), { minItems: 1, maxItems: 64, description: 'client ids and names' }),
  ],
  { description: '"any", "none", or an array of client ids (integers) and names (strings)' },
);

const AcceptRequest = request(
  'accept',
  { from: AcceptFrom },
  'Say whom this client accepts handles from (`send`); until it does, nobody can send it one.',
);

const DupRequest = request('dup', { handle: Handle }, 'A new handle number for the same buffer, same rights.');

const CloseRequest = request('close', { handle: Handle }, 'Close a handle; the buffer is freed when its last reference goes.');

const SendRequest = request(
  'send',
  {
    handle: Handle,
    to: Type.Union([Uint({ description: 'client id' }), Name('client name')], { description: 'a connected client: its id (integer) or its name (string)' }),
    rights: Type.Optional(Rights),
  },
  'Pass a handle to another connected client; it receives a `handle` event. The sender keeps its handle.',
);

const ExportRequest = request(
  'export',
  {
    handle: Handle,
    rights: Type.Optional(Rights),
    ttlMs: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TOKEN_TTL_MS, description: `token lifetime in ms, 1 to ${MAX_TOKEN_TTL_MS}` })),
  },
  'Turn a handle into a single-use token another client can import.',
);

const ImportRequest = request(
  'import',
  { token: Type.String({ minLength: 1, maxLength: 128, description: 'a token from export' }) },
  'Redeem a token for a handle.',
);

/** Most buffers one `buffers` answer lists. */
export const MAX_BUFFERS_PAGE = 10_000;

const ExportFdRequest = request(
  'exportFd',
  { handle: Handle, nonce: Nonce, access: Type.Optional(Access) },
  "Send a real file descriptor for the buffer's bytes (page-rounded) on the fd socket; read-only unless the handle has 'write' and access allows it.",
);

const ImportFdRequest = request('importFd', { nonce: Nonce }, 'Turn a file descriptor the client sent on the fd socket back into a handle (the daemon knows its own buffers by device and inode).');

const BuffersRequest = request(
  'buffers',
  {
    client: Type.Optional(Uint({ description: 'only buffers this client holds' })),
    pool: Type.Optional(Name('only buffers of this pool')),
    after: Type.Optional(Uint({ description: 'list buffers with a greater id (the previous page\'s last)' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BUFFERS_PAGE, description: `most buffers listed, 1 to ${MAX_BUFFERS_PAGE} (default 1000)` })),
  },
  'List live buffers and who holds them (all buffers for admins, held ones for others), a page at a time.',
);

export const HANDLE_REQUESTS = {
  accept: AcceptRequest,
  dup: DupRequest,
  close: CloseRequest,
  send: SendRequest,
  export: ExportRequest,
  import: ImportRequest,
  exportFd: ExportFdRequest,
  importFd: ImportFdRequest,
  buffers: BuffersRequest,
} as const;
