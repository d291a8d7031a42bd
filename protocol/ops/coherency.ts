/**
 * Coherency ops: sync (DMA_BUF_IOCTL_SYNC), map, unmap, fence, violations.
 */
import { Type } from '../typebox.js';
import { HandleNum as Handle, Uint, request } from '../types.js';
import { CachePolicySchema } from '../attributes.js';

const Phase = Type.Union([Type.Literal('start'), Type.Literal('end')], { description: 'one of "start", "end"' });
const AccessMode = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('rw')], { description: 'one of "read", "write", "rw"' });

/** How a process maps or opens a buffer: read-only, or read-write ('write' and 'readwrite' alike). */
export const Access = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('readwrite')], { description: 'one of "read", "write", "readwrite"' });
/** 16 random bytes in base64 that the client presented on the fd socket. */
export const Nonce = Type.String({ minLength: 22, maxLength: 24, pattern: '^[A-Za-z0-9+/]{22}(==)?$', description: '16 bytes in base64 (the nonce written on the fd socket)' });

/** What the coherency checker reports (the `kind` of a violation). */
export const VIOLATION_KINDS = [
  'cpu-access-while-device-owned',
  'device-access-during-cpu-access',
  'end-without-start',
  'start-while-open',
  'cpu-write-in-read-bracket',
  'stale-read',
  'lost-write',
  'unsynced-unregister',
  'unregister-not-registered',
  'sync-out-of-range',
  'sync-different-direction',
  'sync-read-only-for-cpu',
  'sync-write-only-to-device',
  'device-write-to-read-only',
  'device-read-of-write-only',
  'overlapping-cacheline',
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export const COHERENCY_REQUESTS = {
  sync: request(
    'sync',
    {
      handle: Handle,
      phase: Phase,
      access: AccessMode,
      offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 40, description: 'start of the range (default 0)' })),
      length: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 40, description: 'length of the range (default: to the end)' })),
    },
    'Begin (start: sync for the CPU) or finish (end: sync for the device) CPU access to a buffer.',
  ),
  map: request(
    'map',
    {
      handle: Handle,
      cache: Type.Optional(CachePolicySchema({ description: 'the cache attribute asked for; must be the buffer pages\' own' })),
      access: Type.Optional(Access),
      nonce: Type.Optional(Nonce),
    },
    "A CPU mapping of the buffer with its pages' cache policy; it holds a buffer reference until unmapped. With `nonce`, the buffer's memfd is sent on the fd socket to map.",
  ),
  unmap: request('unmap', { mapping: Uint({ description: 'mapping id on this connection' }) }, 'Drop a CPU mapping.'),
  fence: request('fence', { handle: Handle }, "Flush the CPU's write-combine buffer for the buffer (a store fence)."),
  violations: request(
    'violations',
    {
      kind: Type.Optional(Type.Union(VIOLATION_KINDS.map((k) => Type.Literal(k)), { description: `only this kind: one of ${VIOLATION_KINDS.map((k) => `"${k}"`).join(', ')}` })),
      buffer: Type.Optional(Uint({ description: 'only this buffer id' })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20, description: 'the newest N' })),
    },
    'Recorded coherency violations (a bounded ring), newest last, and counts by kind.',
  ),
} as const;
