/**
 * Plain MessagePack encoding of one value per frame.
 *
 * msgpackr is used with records off, so nothing msgpackr-specific reaches the
 * wire, and only through its `msgpackr/pack` entry: in Node that entry is the
 * pure-JavaScript build, which never loads msgpackr-extract's native string
 * decoder (a str32 header lying about its length crashed it, SIGSEGV, with
 * 12 bytes from any local process). Nothing in this package may import the
 * bare `msgpackr` entry, which would switch the native decoder on for the
 * whole process (test/unit/structure.test.ts checks). Before decoding, every
 * body passes checkWellFormed (wellformed.ts), so the decoder never sees a
 * header whose length is not true.
 *
 * Two adjustments keep the bytes plain for other languages:
 * - `undefined` is encoded as nil (msgpackr would otherwise use an extension);
 * - integers outside the 32-bit range (physical addresses above 4 GiB, byte
 *   counts) are encoded as MessagePack int64/uint64, not float64, so a C or
 *   Rust client reads them as integers.
 * Decoding turns 64-bit integers into JS numbers and maps into plain objects.
 */
import { Packr, RESERVE_START_SPACE } from 'msgpackr/pack';
// the flag is exported by the runtime module, typed only on the bare entry
import * as unpackModule from 'msgpackr/unpack';
import { checkWellFormed, MalformedError } from './wellformed.js';

const packr = new Packr({
  useRecords: false,
  encodeUndefinedAsNil: true,
  mapsAsObjects: true,
  int64AsType: 'number',
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  variableMapSize: true,
});

const U32 = 0x1_0000_0000;

/** Copy-on-write walk converting large safe integers to BigInt for int64 encoding. */
function widen(v: unknown): unknown {
  if (typeof v === 'number') {
    if ((v >= U32 || v < -0x8000_0000) && Number.isSafeInteger(v)) return BigInt(v);
    return v;
  }
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const w = widen(v[i]);
      if (w !== v[i]) {
        out ??= v.slice();
        out[i] = w;
      }
    }
    return out ?? v;
  }
  let out: Record<string, unknown> | undefined;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const w = widen(o[k]);
    if (w !== o[k]) {
      out ??= { ...o };
      out[k] = w;
    }
  }
  return out ?? v;
}

/** Encode one value as plain MessagePack. */
export function encodeValue(value: unknown): Buffer {
  return packr.pack(widen(value));
}

/** Frames from this size on are handed out without a copy (see encodeFramed). */
const NO_COPY_BYTES = 64 * 1024;

/**
 * Encode one value with `prefix` bytes reserved in front of it (a frame's
 * length). msgpackr packs into a buffer it keeps and continues after, so
 * what it returns stays valid; a small result is copied out anyway, so a
 * slow reader's socket never pins msgpackr's (possibly large) buffer for a
 * few bytes, while a large one (a 4 MiB read) is not copied a second time.
 */
export function encodeWithPrefix(value: unknown, prefix: number): Buffer {
  const out = packr.pack(widen(value), RESERVE_START_SPACE | prefix);
  return out.length < NO_COPY_BYTES ? Buffer.from(out) : out;
}

export class DecodeError extends Error {
  override name = 'DecodeError';
}

/** Is msgpackr's native string decoder in use in this process? (It must not be.) */
export function nativeDecoderEnabled(): boolean {
  return (unpackModule as unknown as { isNativeAccelerationEnabled: boolean }).isNativeAccelerationEnabled;
}

/**
 * Decode exactly one MessagePack value from `body`. Trailing bytes, truncated
 * data, lengths that lie, extension types and the reserved byte 0xc1 (at any
 * depth), non-string map keys and nesting deeper than 64 are all errors,
 * and so are more than `maxValues` values (the daemon decodes requests with
 * MAX_REQUEST_VALUES).
 */
export function decodeValue(body: Uint8Array, maxValues = Infinity): unknown {
  if (body.length === 0) throw new DecodeError('empty frame body');
  try {
    checkWellFormed(body, maxValues);
  } catch (e) {
    if (e instanceof MalformedError) throw new DecodeError(`body is not valid MessagePack: ${e.message}`);
    throw e;
  }
  try {
    return packr.unpack(body);
  } catch (e) {
    throw new DecodeError(`body is not valid MessagePack: ${(e as Error).message.split('\n')[0]?.slice(0, 120)}`);
  }
}

/** True for a plain object (a decoded MessagePack map). */
export function isPlainMap(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
