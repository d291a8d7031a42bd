/**
 * What the fuzzer sends: a valid request of every op in protocol/requests.ts
 * and the families of hostile frames made from them (seeded).
 *
 * Families: random bytes; lying length prefixes (short, long, 0, over the
 * limit); valid MessagePack of the wrong shape; fields of the wrong type;
 * hostile numbers (huge, negative, NaN/Infinity/-0, floats, non-canonical
 * encodings); deep nesting; huge strings/bins/arrays; extension types
 * (0xd4–0xd8, 0xc7–0xc9, msgpackr's own type codes too) nested in maps;
 * the reserved byte 0xc1 nested; str/bin/array/map/ext headers whose lengths
 * lie; byte-level mutations of valid frames; and all of them mixed.
 */
import { OP_NAMES } from '../../protocol/requests.js';
import { Raw, raw, header, ext, pack, frame } from './rawpack.js';
import type { Rand } from './rand.js';

const TOKEN = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

/** One valid request (without id) of each op; ops added later get `{}`. */
export const TEMPLATES: Record<string, Record<string, unknown>> = {
  hello: { version: 1, name: 'fuzz' },
  ping: {},
  status: { pool: 'default' },
  pools: {},
  alloc: { pool: 'default', size: 4096, align: 64 },
  info: { handle: 0 },
  'hugepages.set': { size: 2097152, nr: 256, overcommit: 128 },
  write: { handle: 0, offset: 0, data: Buffer.from('fuzzdata') },
  read: { handle: 0, offset: 0, length: 16 },
  dup: { handle: 0 },
  close: { handle: 0 },
  send: { handle: 0, to: 1, rights: ['read'] },
  export: { handle: 0, rights: ['read'], ttlMs: 500 },
  import: { token: TOKEN },
  buffers: { pool: 'default' },
  drivers: {},
  constraints: { driver: 'gpu' },
  merge: { drivers: ['gpu', 'jpeg'] },
  register: { handle: 0, driver: 'video' },
  unregister: { driver: 'video', handle: 0 },
  'driver.attach': { name: 'fuzzdrv', constraints: { align: 4096, cache: ['writeback'], iommu: null } },
  'driver.detach': { name: 'fuzzdrv' },
  'device.write': { driver: 'video', handle: 0, offset: 0, data: Buffer.from('dev') },
  'device.read': { driver: 'video', handle: 0, offset: 0, length: 16 },
  'device.fill': { driver: 'video', handle: 0, offset: 0, length: 64, value: 7 },
  'device.copy': { driver: 'video', src: 0, dst: 1 },
  sync: { handle: 0, phase: 'start', access: 'rw', offset: 0, length: 64 },
  map: { handle: 0, cache: 'writeback' },
  unmap: { mapping: 1 },
  fence: { handle: 0 },
  violations: { kind: 'lost-write', limit: 4 },
  subscribe: { topics: ['alloc'], intervalMs: 1000 },
  unsubscribe: {},
  reload: {},
  'inject.set': { point: 'alloc', nth: 3, times: 1, pool: 'default' },
  'inject.clear': { point: 'alloc' },
  'inject.list': {},
  history: { buffer: 1, limit: 8 },
  graph: { client: 'fuzz', limit: 10 },
};

export const FAMILIES = [
  'random-bytes',
  'prefix-lies',
  'wrong-shapes',
  'field-types',
  'numbers',
  'nesting',
  'huge-values',
  'ext-types',
  'reserved-c1',
  'lying-headers',
  'byte-mutations',
  'mixed',
] as const;
export type Family = (typeof FAMILIES)[number];

/** Extension types: MessagePack's timestamp (-1), application types, and the ones msgpackr reads itself. */
const EXT_TYPES = [-1, 0, 1, 0x42, 0x62, 0x65, 0x69, 0x70, 0x72, 0x73, 0x74, 0x78, 0x7f, -128, -2];

let seq = 0;
/** Mutated requests take the ops in turn, so every op is mutated. */
let opTurn = 0;
/** Ops whose requests were mutated so far. */
export const MUTATED_OPS = new Set<string>();

/** A valid request of op (id given), as a plain object. */
export function request(op: string, id: number): Record<string, unknown> {
  return { id, op, ...(TEMPLATES[op] ?? {}) };
}

/** A valid request of a random op. */
export function validReq(r: Rand): Record<string, unknown> {
  const op = r.pick(OP_NAMES);
  const q = request(op, r.int(1 << 20));
  if (op === 'hello') q['name'] = `fz${++seq}`;
  return q;
}

/** Deep nesting: arrays or single-entry maps, `depth` levels, a nil inside. */
function nested(r: Rand, depth: number): Raw {
  const map = r.chance(0.5);
  const open = map ? Buffer.from([0x81, 0xa1, 0x6b]) : Buffer.from([0x91]);
  return new Raw(Buffer.concat([Buffer.alloc(open.length * depth, open), Buffer.from([0xc0])]));
}

/** An extension value with random type, length and form. */
function extValue(r: Rand): Raw {
  const len = r.pick([1, 2, 4, 8, 16, 0, 3, 12, 40, 300]);
  const form = r.chance(0.3) ? r.pick([0xc7, 0xc8, 0xc9] as const) : undefined;
  return new Raw(ext(r.pick(EXT_TYPES), r.bytes(len), form));
}

/** A str/bin/array/map/ext header stating more than follows, then a few bytes. */
export function lyingHeader(r: Rand): Raw {
  const kind = r.pick(['str', 'bin', 'array', 'map', 'ext'] as const);
  const tail = r.bytes(r.int(9));
  if (kind === 'ext') {
    const form = r.pick([0xc7, 0xc8, 0xc9]);
    const len = form === 0xc7 ? Buffer.from([0xff]) : form === 0xc8 ? Buffer.from([0xff, 0xff]) : Buffer.from([0xff, 0xff, 0xff, 0xff]);
    return raw(form, len, r.int(256), tail);
  }
  const len = r.pick([tail.length + 1, 31, 255, 65535, 0x7fffffff, 0xffffffff, r.int(2 ** 32)]);
  return raw(header(kind, len), tail);
}

const WRONG_TYPES: unknown[] = ['str', '', true, false, null, [], {}, Buffer.from([1, 2, 3]), [1, 2], { a: 1 }, 1.5, -1, 'x'.repeat(300), [null], { handle: 0 }];

const NUMBERS: unknown[] = [
  NaN,
  Infinity,
  -Infinity,
  -0,
  0.5,
  1e308,
  -1,
  -(2 ** 31),
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  2n ** 64n - 1n,
  -(2n ** 63n),
  2n ** 53n + 1n,
  raw(0xca, [0x7f, 0xc0, 0, 0]), // float32 NaN
  raw(0xca, [0x3f, 0xc0, 0, 0]), // float32 1.5
  raw(0xcd, [0, 1]), // 1 as uint16 (valid: any integer encoding)
  raw(0xcf, [0, 0, 0, 0, 0, 0, 0, 1]), // 1 as uint64
  raw(0xd3, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // -1 as int64
  raw(0xd0, 0x80), // -128 as int8
];

/** A value for a field, of the family's kind. */
function hostileValue(r: Rand, fam: Family): unknown {
  switch (fam) {
    case 'field-types':
      return r.pick(WRONG_TYPES);
    case 'numbers':
      return r.pick(NUMBERS);
    case 'nesting':
      return nested(r, r.pick([8, 100, 1000, 10_000, 100_000, 500_000]));
    case 'huge-values': {
      const n = r.pick([65_536, 1 << 20, 3 << 20]);
      const k = r.int(4);
      if (k === 0) return 'x'.repeat(n);
      if (k === 1) return Buffer.alloc(n, 0x61);
      if (k === 2) return raw(header('array', n), Buffer.alloc(n, 0xc0));
      return raw(header('map', n >> 2), Buffer.alloc(n >> 1, Buffer.from([0xa0, 0xc0])));
    }
    case 'ext-types':
      return r.chance(0.7) ? extValue(r) : new Map<unknown, unknown>([[extValue(r), 1], ['k', extValue(r)]]);
    case 'reserved-c1':
      return r.pick([raw(0xc1), raw(0x92, 0xc1, 0xc0), raw(0x81, 0xa1, 0x6b, 0xc1), raw(0x81, 0xc1, 0xc0)]);
    case 'lying-headers':
      return lyingHeader(r);
    default:
      return null;
  }
}

/** A request of a random op with fields mutated the family's way. */
function mutatedReq(r: Rand, fam: Family): Buffer {
  const op = OP_NAMES[opTurn++ % OP_NAMES.length]!;
  MUTATED_OPS.add(op);
  const q = request(op, r.int(1 << 20));
  if (op === 'hello') q['name'] = `fz${++seq}`;
  const keys = Object.keys(q);
  const n = r.range(1, 3);
  const m = new Map<unknown, unknown>(Object.entries(q));
  for (let i = 0; i < n; i++) {
    const roll = r.int(10);
    if (roll === 0) m.delete(r.pick(keys));
    else if (roll === 1) m.set(r.pick(['__proto__', 'constructor', 'extra', '', 'x'.repeat(70)]), hostileValue(r, fam));
    else if (roll === 2 && fam !== 'field-types' && fam !== 'numbers') m.set(hostileValue(r, fam), 1); // a hostile key
    else m.set(r.pick(keys), hostileValue(r, fam));
  }
  return pack(m);
}

/** A body of valid MessagePack that is not a request map. */
function wrongShape(r: Rand): Buffer {
  const v = r.pick<unknown>([
    [],
    [1, 'ping'],
    'ping',
    42,
    -7,
    3.25,
    null,
    true,
    Buffer.from('bin'),
    {},
    { op: 'ping' },
    { id: 1 },
    { id: 1, op: 7 },
    { id: 'one', op: 'ping' },
    { id: -1, op: 'ping' },
    { id: 1.5, op: 'ping' },
    { id: 2 ** 53, op: 'ping' },
    { id: 1, op: 'PING' },
    { id: 1, op: 'nope' },
    { id: 1, op: 'ping', extra: 1 },
    new Map<unknown, unknown>([[1, 2], [null, 'x']]),
    new Map<unknown, unknown>([[{ id: 1 }, 'ping']]),
    [{ id: 1, op: 'ping' }],
  ]);
  return pack(v);
}

/** Flip, insert, truncate or append bytes of a valid request. */
function byteMutation(r: Rand): Buffer {
  let b = pack(validReq(r));
  const k = r.int(4);
  if (k === 0) {
    b = Buffer.from(b);
    for (let i = r.range(1, 4); i > 0; i--) b[r.int(b.length)] = r.int(256);
  } else if (k === 1) {
    const at = r.int(b.length);
    b = Buffer.concat([b.subarray(0, at), Buffer.from([r.pick([0xc1, 0xd4, 0xdb, 0xc9, 0xdf, r.int(256)])]), b.subarray(at)]);
  } else if (k === 2) b = b.subarray(0, Math.max(1, r.int(b.length)));
  else b = Buffer.concat([b, r.bytes(r.range(1, 8))]);
  return b;
}

export interface FrameOut {
  bytes: Buffer;
  /** The prefix states more than maxFrameBytes (the daemon answers E2BIG and closes). */
  tooBig: boolean;
}

/** One frame of the family (a lying prefix frames a body with a length other than its own). */
export function genFrame(r: Rand, fam0: Family, maxFrameBytes: number): FrameOut {
  const fam: Family = fam0 === 'mixed' ? r.pick(FAMILIES.filter((f) => f !== 'mixed')) : fam0;
  switch (fam) {
    case 'random-bytes':
      return { bytes: frame(r.bytes(r.range(1, 300))), tooBig: false };
    case 'prefix-lies': {
      const body = r.chance(0.5) ? pack(validReq(r)) : r.bytes(r.range(1, 64));
      const k = r.int(5);
      if (k === 0) return { bytes: frame(body, r.int(body.length)), tooBig: false }; // short
      if (k === 1) return { bytes: frame(body, body.length + r.range(1, 64)), tooBig: false }; // long: eats what follows
      if (k === 2) return { bytes: r.chance(0.5) ? frame(Buffer.alloc(0)) : frame(body, 0), tooBig: false }; // 0
      if (k === 3) return { bytes: frame(body, r.pick([maxFrameBytes + 1, 2 ** 31, 0xffffffff, maxFrameBytes + r.int(1 << 20) + 1])), tooBig: true };
      return { bytes: Buffer.concat([frame(body), r.bytes(r.range(1, 3))]), tooBig: false }; // stray bytes after
    }
    case 'wrong-shapes':
      return { bytes: frame(wrongShape(r)), tooBig: false };
    case 'byte-mutations':
      return { bytes: frame(byteMutation(r)), tooBig: false };
    case 'lying-headers':
      // top level half of the time (the known killer is one), else inside a request
      return { bytes: frame(r.chance(0.5) ? lyingHeader(r).bytes : mutatedReq(r, fam)), tooBig: false };
    default:
      return { bytes: frame(mutatedReq(r, fam)), tooBig: false };
  }
}

/** The known killer: a map holding a 40-character string, then `00000008 db ffffffff 616263`. */
export function knownKiller(): Buffer[] {
  return [frame(pack({ id: 1, op: 'hello', version: 1, name: 'k'.repeat(40) })), Buffer.from('00000008dbffffffff616263', 'hex')];
}

export interface Expectation {
  /** Frames the daemon sees complete. */
  frames: number;
  /** A prefix over the limit comes first (E2BIG and a close). */
  e2big: boolean;
  /** Where the stream ends inside a frame (ETIMEDOUT and a close): in its prefix, right after it, in its body. */
  partial: 'in-prefix' | 'after-prefix' | 'in-body' | null;
  /** Bytes worth sending (nothing after an over-limit prefix matters). */
  used: number;
}

/** The daemon's framing, mirrored: what it will make of a byte stream. */
export function mirror(stream: Buffer, maxFrameBytes: number): Expectation {
  let off = 0;
  let frames = 0;
  const end = (partial: Expectation['partial']): Expectation => ({ frames, e2big: false, partial, used: stream.length });
  while (off < stream.length) {
    if (stream.length - off < 4) return end('in-prefix');
    const len = stream.readUInt32BE(off);
    if (len > maxFrameBytes) return { frames, e2big: true, partial: null, used: off + 4 };
    if (stream.length - off - 4 < len) return end(stream.length - off === 4 ? 'after-prefix' : 'in-body');
    off += 4 + len;
    frames++;
  }
  return end(null);
}

/** A valid hello frame with a unique name. */
export function helloFrame(r: Rand): Buffer {
  return frame(pack({ id: r.int(1000), op: 'hello', version: 1, name: `fzh${++seq}` }));
}
