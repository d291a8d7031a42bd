/**
 * Memory ops: pools, alloc, free, info, hugepages.set.
 */
import { Type } from '@sinclair/typebox';
import { Name, Uint, request } from '../types.js';

/** Largest single buffer: 64 GiB. */
export const MAX_BUFFER_BYTES = 64 * 2 ** 30;

export const BufferId = Uint({ description: 'buffer id' });

export const PoolsRequest = request('pools', {}, 'List the pools with their attributes and counters.');

export const AllocRequest = request(
  'alloc',
  {
    pool: Name('pool name'),
    size: Type.Integer({ minimum: 1, maximum: MAX_BUFFER_BYTES, description: 'size in bytes, 1 to 64 GiB' }),
    align: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 ** 30, description: 'alignment in bytes, a power of two' })),
    populate: Type.Optional(Type.Boolean({ description: 'back hugepages now (default) or reserve them and back on first use' })),
  },
  'Allocate a zeroed buffer from a pool.',
);

export const FreeRequest = request('free', { buffer: BufferId }, 'Free a buffer this connection allocated.');

export const InfoRequest = request('info', { buffer: BufferId }, 'Describe a buffer: pool, cache policy, size, physical segments.');

export const HugepagesSetRequest = request(
  'hugepages.set',
  {
    size: Type.Integer({ minimum: 1, maximum: 2 ** 40, description: 'hugepage size in bytes (2097152 or 1073741824)' }),
    nr: Type.Integer({ minimum: 0, maximum: 1 << 20, description: 'nr_hugepages' }),
    overcommit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 20, description: 'nr_overcommit_hugepages' })),
  },
  'Resize a hugepage pool as writing nr_hugepages (and nr_overcommit_hugepages) does.',
);

export const MEMORY_REQUESTS = {
  pools: PoolsRequest,
  alloc: AllocRequest,
  free: FreeRequest,
  info: InfoRequest,
  'hugepages.set': HugepagesSetRequest,
} as const;
