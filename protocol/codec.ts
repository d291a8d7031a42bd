/**
 * Plain MessagePack encoding of one value per frame.
 *
 * msgpackr is used with records off, so nothing msgpackr-specific reaches the
 * wire. Two adjustments keep the bytes plain for other languages:
 * - `undefined` is encoded as nil (msgpackr would otherwise use an extension);
 * - integers outside the 32-bit range (physical addresses above 4 GiB, byte
 *   counts) are encoded as MessagePack int64/uint64, not float64, so a C or
 *   Rust client reads them as integers.
 * Decoding turns 64-bit integers into JS numbers and maps into plain objects.
 */
import { Packr } from 'msgpackr';

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

export class DecodeError extends Error {
  override name = 'DecodeError';
}

/**
 * Decode exactly one MessagePack value from `body`. Trailing bytes, truncated
 * data, unknown extensions and the reserved byte 0xc1 are all errors.
 */
export function decodeValue(body: Uint8Array): unknown {
  if (body.length === 0) throw new DecodeError('empty frame body');
  let v: unknown;
  try {
    v = packr.unpack(body);
  } catch (e) {
    throw new DecodeError(`body is not valid MessagePack: ${(e as Error).message.split('\n')[0]?.slice(0, 120)}`);
  }
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v)) {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new DecodeError('body is not valid MessagePack: reserved or extension type at top level');
    }
  }
  return v;
}

/** True for a plain object (a decoded MessagePack map). */
export function isPlainMap(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
