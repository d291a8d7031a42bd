/**
 * Coherency ops: sync (DMA_BUF_IOCTL_SYNC), map, unmap, fence, violations.
 */
import { Type } from '@sinclair/typebox';
import { HandleNum as Handle, Uint, request } from '../types.js';
import { CachePolicySchema } from '../attributes.js';

const Phase = Type.Union([Type.Literal('start'), Type.Literal('end')], { description: 'one of "start", "end"' });
const AccessMode = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('rw')], { description: 'one of "read", "write", "rw"' });

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
    },
    "A CPU mapping of the buffer with its pages' cache policy; it holds a buffer reference until unmapped.",
  ),
  unmap: request('unmap', { mapping: Uint({ description: 'mapping id on this connection' }) }, 'Drop a CPU mapping.'),
  fence: request('fence', { handle: Handle }, "Flush the CPU's write-combine buffer for the buffer (a store fence)."),
  violations: request(
    'violations',
    {
      kind: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'only this kind' })),
      buffer: Type.Optional(Uint({ description: 'only this buffer id' })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20, description: 'the newest N' })),
    },
    'Recorded coherency violations (a bounded ring), newest last, and counts by kind.',
  ),
} as const;
