/**
 * What each kind of history event keeps, and the readable event made from
 * it when someone reads `history` or `graph`. Recording an op (ops/
 * history-record.ts) puts the op's request and result fields into a slot's
 * values (history-slots.ts): small integers and strings the daemon already
 * holds as they are, rights as their bit mask, an address in the spare
 * number; reading builds the same object the op's event always said, keys in
 * the same order. A kind without a codec (refusals, violations, leaks,
 * departures, and whatever a caller records with a fields object) keeps its
 * fields object as it is.
 */
import type { OpName, RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import { rightsList, rightsMask } from '../buffers/handles.js';
import type { EventSlots } from './history-slots.js';

type Fields = Record<string, unknown>;

export interface EventCodec {
  /** The event's kind; null: the generic codec, whose kind is the first value. */
  readonly kind: string | null;
  fields(s: EventSlots, i: number): Fields;
}

/** A codec for an op's event: `put` keeps the i-th buffer's fields of the op's request and result. */
export interface OpCodec<K extends OpName> extends EventCodec {
  readonly id: number;
  put(s: EventSlots, slot: number, q: RequestOf<K>, r: ResultOf<K>, i: number): void;
}

const CODECS: EventCodec[] = [];

/** The codec a slot was recorded with. */
export const codecOf = (id: number): EventCodec => CODECS[id]!;

const NO_PUT = (): void => {};

/**
 * A codec, numbered. Every codec is made by this one literal, keys in one
 * order, so all share one hidden class: the recorder's reads of `id` and
 * `put` (one call site for every op) stay monomorphic. A spread
 * (`{ ...c, id }`) gave each codec a class of its own, and those reads went
 * megamorphic, through V8's global stub cache, which the rest of the
 * daemon (validators, msgpack) keeps thrashing.
 */
function add<C extends EventCodec>(kind: string | null, fields: EventCodec['fields'], put: unknown = NO_PUT): C {
  const full = { id: CODECS.length, kind, fields, put };
  CODECS.push(full);
  return full as unknown as C;
}

/** Any kind, with its fields object kept (v0 kind, v1 fields, v2 a free's `after`). */
export const GENERIC = add<EventCodec & { id: number }>(null, (s, i) => {
  const f = s.v[1]![i] as Fields;
  const after = s.v[2]![i];
  return after === undefined ? f : { ...f, after };
}).id;

/** A free, as the bus tells it (v0 pool, v1 size, v2 the op it came after). */
export const FREE = add<EventCodec & { id: number }>('free', (s, i) => {
  const after = s.v[2]![i];
  return after === undefined ? { pool: s.v[0]![i], size: s.v[1]![i] } : { pool: s.v[0]![i], size: s.v[1]![i], after };
}).id;

/** The values v0.. under these keys; a key in `masks` is a rights mask, `xKey` reads the spare number (NaN: null). */
function named(keys: readonly string[], masks = -1, xKey?: string): (s: EventSlots, i: number) => Fields {
  return (s, i) => {
    const o: Fields = {};
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!;
      if (key === xKey) {
        const x = s.x[i]!;
        o[key] = Number.isNaN(x) ? null : x;
      } else o[key] = k === masks ? rightsList(s.v[k]![i] as number) : s.v[k]![i];
    }
    return o;
  };
}

function op<K extends OpName>(kind: K, fields: (s: EventSlots, i: number) => Fields, put: OpCodec<K>['put']): OpCodec<K> {
  return add<OpCodec<K>>(kind, fields, put);
}

const ALLOC_KEYS = ['handle', 'pool', 'cache', 'size', 'usize', 'placement', 'addr'];
/** The handle or the mapping an op named (write, read), then offset and length. */
const viaFields = (s: EventSlots, i: number): Fields =>
  s.v[0]![i] !== undefined ? { handle: s.v[0]![i], offset: s.v[2]![i], length: s.v[3]![i] } : { mapping: s.v[1]![i], offset: s.v[2]![i], length: s.v[3]![i] };

export const OP_CODECS: { [K in OpName]?: OpCodec<K> } = {
  alloc: op('alloc', named(ALLOC_KEYS, -1, 'addr'), (s, j, _q, r) => {
    const v = s.v;
    v[0]![j] = r.handle;
    v[1]![j] = r.pool;
    v[2]![j] = r.cache;
    v[3]![j] = r.size;
    v[4]![j] = r.usize;
    v[5]![j] = r.placement;
    s.x[j] = r.segments[0]?.addr ?? NaN;
  }),
  importFd: op('importFd', named(['handle', 'rights'], 1), (s, j, _q, r) => {
    s.v[0]![j] = r.handle;
    s.v[1]![j] = rightsMask(r.rights);
  }),
  import: op(
    'import',
    (s, i) => {
      const f: Fields = { handle: s.v[0]![i], rights: rightsList(s.v[1]![i] as number) };
      if (s.v[2]![i] !== undefined) {
        f['from'] = s.v[2]![i];
        f['fromName'] = s.v[3]![i];
      }
      return f;
    },
    // v2, v3: the sender, when the bus told it (ops/history-record.ts puts them)
    (s, j, _q, r) => {
      s.v[0]![j] = r.handle;
      s.v[1]![j] = rightsMask(r.rights);
      s.v[2]![j] = s.v[3]![j] = undefined;
    },
  ),
  dup: op('dup', named(['handle', 'newHandle', 'rights'], 2), (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = r.handle;
    s.v[2]![j] = rightsMask(r.rights);
  }),
  close: op('close', named(['handle']), (s, j, q) => {
    s.v[0]![j] = q.handle;
  }),
  send: op('send', named(['handle', 'to', 'toName', 'rights'], 3), (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = r.to;
    s.v[2]![j] = r.toName;
    s.v[3]![j] = rightsMask(r.rights);
  }),
  export: op('export', named(['handle', 'rights', 'expiresInMs'], 1), (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = rightsMask(r.rights);
    s.v[2]![j] = r.expiresInMs;
  }),
  exportFd: op('exportFd', named(['handle', 'rights', 'readOnly'], 1), (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = rightsMask(r.rights);
    s.v[2]![j] = r.readOnly;
  }),
  write: op('write', viaFields, (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = q.mapping;
    s.v[2]![j] = q.offset;
    s.v[3]![j] = r.written;
  }),
  read: op('read', viaFields, (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = q.mapping;
    s.v[2]![j] = q.offset;
    s.v[3]![j] = r.data.length;
  }),
  register: op('register', named(['handle', 'driver', 'deviceAddress', 'iova', 'bounced'], -1, 'deviceAddress'), (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = r.driver;
    s.x[j] = r.deviceAddress;
    s.v[3]![j] = r.iommu !== null;
    s.v[4]![j] = r.bounced;
  }),
  unregister: op('unregister', named(['driver']), (s, j, q) => {
    s.v[0]![j] = q.driver;
  }),
  'device.write': op('device.write', named(['driver', 'offset', 'length']), (s, j, q, r) => {
    s.v[0]![j] = q.driver;
    s.v[1]![j] = q.offset;
    s.v[2]![j] = r.written;
  }),
  'device.read': op('device.read', named(['driver', 'offset', 'length']), (s, j, q, r) => {
    s.v[0]![j] = q.driver;
    s.v[1]![j] = q.offset;
    s.v[2]![j] = r.data.length;
  }),
  'device.fill': op('device.fill', named(['driver', 'offset', 'length', 'value']), (s, j, q, r) => {
    s.v[0]![j] = q.driver;
    s.v[1]![j] = q.offset;
    s.v[2]![j] = r.filled;
    s.v[3]![j] = q.value;
  }),
  'device.copy': op('device.copy', named(['driver', 'role', 'length']), (s, j, q, r, i) => {
    s.v[0]![j] = q.driver;
    s.v[1]![j] = i === 0 ? 'src' : 'dst';
    s.v[2]![j] = r.copied;
  }),
  sync: op('sync', named(['phase', 'access', 'offset', 'length', 'cleaned', 'invalidated']), (s, j, q, r) => {
    s.v[0]![j] = r.phase;
    s.v[1]![j] = r.access;
    s.v[2]![j] = q.offset ?? 0;
    s.v[3]![j] = q.length ?? null;
    s.v[4]![j] = r.cleaned;
    s.v[5]![j] = r.invalidated;
  }),
  map: op('map', named(['handle', 'mapping', 'rights', 'fd'], 2), (s, j, q, r) => {
    s.v[0]![j] = q.handle;
    s.v[1]![j] = r.mapping;
    s.v[2]![j] = rightsMask(r.rights);
    s.v[3]![j] = r.fd;
  }),
  unmap: op('unmap', named(['mapping']), (s, j, q) => {
    s.v[0]![j] = q.mapping;
  }),
  fence: op('fence', named(['flushed']), (s, j, _q, r) => {
    s.v[0]![j] = r.flushed;
  }),
};
