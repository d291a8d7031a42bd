/**
 * Memory ops: pools, alloc, free, info, hugepages.set.
 */
import { Type } from '../typebox.js';
import { HandleNum, Name, Uint, request, BinaryData } from '../types.js';

/** Largest single buffer: 64 GiB. */
const MAX_BUFFER_BYTES = 64 * 2 ** 30;

const PoolsRequest = request('pools', {}, 'List the pools with their attributes and counters.');

const AllocRequest = request(
  'alloc',
  {
    pool: Type.Optional(Name('pool name (give either pool or for)')),
    for: Type.Optional(
      Type.Array(Name('driver name'), { minItems: 1, maxItems: 32, uniqueItems: true, description: 'drivers the buffer will visit: merge their constraints and pick a pool (give either pool or for)' }),
    ),
    size: Type.Integer({ minimum: 1, maximum: MAX_BUFFER_BYTES, description: 'size in bytes, 1 to 64 GiB' }),
    align: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 ** 30, description: 'alignment in bytes, a power of two' })),
    populate: Type.Optional(Type.Boolean({ description: 'back hugepages now (default) or reserve them and back on first use' })),
    minAddress: Type.Optional(
      Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'place every page at or above this physical address, a multiple of 4096 (e.g. 4294967296: above 4 GiB); the buffer takes whole pages of its own' }),
    ),
  },
  'Allocate a zeroed buffer from a pool; returns a handle with all rights.',
);

const InfoRequest = request('info', { handle: HandleNum }, 'Describe a handle and its buffer: pool, cache policy, size, physical segments, rights, references.');

const HugepagesSetRequest = request(
  'hugepages.set',
  {
    size: Type.Integer({ minimum: 1, maximum: 2 ** 40, description: 'hugepage size in bytes (2097152 or 1073741824)' }),
    nr: Type.Integer({ minimum: 0, maximum: 1 << 20, description: 'nr_hugepages' }),
    overcommit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 20, description: 'nr_overcommit_hugepages' })),
  },
  'Resize a hugepage pool as writing nr_hugepages (and nr_overcommit_hugepages) does. Admin only.',
);

/** Largest data payload any configuration accepts in one request (frames are at most 1 GiB). */
export const MAX_DATA_BYTES = 2 ** 30;

const MappingNum = Uint({ description: 'mapping id on this connection (instead of a handle)' });

const WriteRequest = request(
  'write',
  {
    handle: Type.Optional(HandleNum),
    mapping: Type.Optional(MappingNum),
    offset: Type.Integer({ minimum: 0, maximum: MAX_BUFFER_BYTES, description: 'byte offset in the buffer' }),
    data: BinaryData(MAX_DATA_BYTES, 'bytes to write'),
  },
  'Write bytes into a buffer (CPU access) through a handle or a mapping.',
);

const ReadRequest = request(
  'read',
  {
    handle: Type.Optional(HandleNum),
    mapping: Type.Optional(MappingNum),
    offset: Type.Integer({ minimum: 0, maximum: MAX_BUFFER_BYTES, description: 'byte offset in the buffer' }),
    length: Type.Integer({ minimum: 0, maximum: MAX_DATA_BYTES, description: 'bytes to read' }),
  },
  'Read bytes from a buffer (CPU access) through a handle or a mapping.',
);

export const MEMORY_REQUESTS = {
  pools: PoolsRequest,
  alloc: AllocRequest,
  info: InfoRequest,
  'hugepages.set': HugepagesSetRequest,
  write: WriteRequest,
  read: ReadRequest,
} as const;
