/**
 * A MessagePack encoder for the fuzzer that will write what no well-behaved
 * encoder does: `Raw` fragments are copied as they are (lying headers,
 * extension types, the reserved byte 0xc1), `Map`s may have any keys
 * (Raw ones too), and integers/floats/bigints pick the encodings given.
 */
export class Raw {
  constructor(readonly bytes: Buffer) {}
}

/** Raw bytes from numbers, buffers and latin1 strings. */
export function raw(...parts: (number | number[] | Buffer | string)[]): Raw {
  const bufs = parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.isBuffer(p) ? p : Buffer.from(p)));
  return new Raw(Buffer.concat(bufs));
}

function u(n: number, bytes: 1 | 2 | 4): Buffer {
  const b = Buffer.alloc(bytes);
  if (bytes === 1) b.writeUInt8(n & 0xff);
  else if (bytes === 2) b.writeUInt16BE(n & 0xffff);
  else b.writeUInt32BE(n >>> 0);
  return b;
}

/** A str/bin/array/map/ext header stating `len` (whatever follows). */
export function header(kind: 'str' | 'bin' | 'array' | 'map', len: number): Buffer {
  switch (kind) {
    case 'str':
      if (len < 32) return Buffer.from([0xa0 | len]);
      if (len < 0x100) return Buffer.concat([Buffer.from([0xd9]), u(len, 1)]);
      if (len < 0x10000) return Buffer.concat([Buffer.from([0xda]), u(len, 2)]);
      return Buffer.concat([Buffer.from([0xdb]), u(len, 4)]);
    case 'bin':
      if (len < 0x100) return Buffer.concat([Buffer.from([0xc4]), u(len, 1)]);
      if (len < 0x10000) return Buffer.concat([Buffer.from([0xc5]), u(len, 2)]);
      return Buffer.concat([Buffer.from([0xc6]), u(len, 4)]);
    case 'array':
      if (len < 16) return Buffer.from([0x90 | len]);
      if (len < 0x10000) return Buffer.concat([Buffer.from([0xdc]), u(len, 2)]);
      return Buffer.concat([Buffer.from([0xdd]), u(len, 4)]);
    case 'map':
      if (len < 16) return Buffer.from([0x80 | len]);
      if (len < 0x10000) return Buffer.concat([Buffer.from([0xde]), u(len, 2)]);
      return Buffer.concat([Buffer.from([0xdf]), u(len, 4)]);
  }
}

/** An extension value: fixext 1/2/4/8/16 (0xd4–0xd8) when the length fits, else ext 8/16/32 (0xc7–0xc9); `form` forces one. */
export function ext(type: number, data: Buffer, form?: 0xc7 | 0xc8 | 0xc9): Buffer {
  const t = Buffer.from([type & 0xff]);
  const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
  if (form === undefined && fixed[data.length] !== undefined) return Buffer.concat([Buffer.from([fixed[data.length]!]), t, data]);
  const f = form ?? (data.length < 0x100 ? 0xc7 : data.length < 0x10000 ? 0xc8 : 0xc9);
  const len = f === 0xc7 ? u(data.length, 1) : f === 0xc8 ? u(data.length, 2) : u(data.length, 4);
  return Buffer.concat([Buffer.from([f]), len, t, data]);
}

function int(v: number, out: Buffer[]): void {
  if (v >= 0) {
    if (v < 0x80) out.push(Buffer.from([v]));
    else if (v < 0x100) out.push(Buffer.from([0xcc, v]));
    else if (v < 0x10000) out.push(Buffer.concat([Buffer.from([0xcd]), u(v, 2)]));
    else if (v < 0x1_0000_0000) out.push(Buffer.concat([Buffer.from([0xce]), u(v, 4)]));
    else big(BigInt(v), out);
  } else if (v >= -32) out.push(Buffer.from([v & 0xff]));
  else if (v >= -0x80) out.push(Buffer.from([0xd0, v & 0xff]));
  else if (v >= -0x8000) {
    const b = Buffer.alloc(3);
    b[0] = 0xd1;
    b.writeInt16BE(v, 1);
    out.push(b);
  } else if (v >= -0x8000_0000) {
    const b = Buffer.alloc(5);
    b[0] = 0xd2;
    b.writeInt32BE(v, 1);
    out.push(b);
  } else big(BigInt(v), out);
}

function big(v: bigint, out: Buffer[]): void {
  const b = Buffer.alloc(9);
  if (v < 0n) {
    b[0] = 0xd3;
    b.writeBigInt64BE(BigInt.asIntN(64, v), 1);
  } else {
    b[0] = 0xcf;
    b.writeBigUInt64BE(BigInt.asUintN(64, v), 1);
  }
  out.push(b);
}

function enc(v: unknown, out: Buffer[]): void {
  if (v instanceof Raw) out.push(v.bytes);
  else if (v === null || v === undefined) out.push(Buffer.from([0xc0]));
  else if (typeof v === 'boolean') out.push(Buffer.from([v ? 0xc3 : 0xc2]));
  else if (typeof v === 'number') {
    if (Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) int(v, out);
    else {
      const b = Buffer.alloc(9);
      b[0] = 0xcb;
      b.writeDoubleBE(v, 1);
      out.push(b);
    }
  } else if (typeof v === 'bigint') big(v, out);
  else if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    out.push(header('str', s.length), s);
  } else if (v instanceof Uint8Array) out.push(header('bin', v.length), Buffer.from(v.buffer, v.byteOffset, v.length));
  else if (Array.isArray(v)) {
    out.push(header('array', v.length));
    for (const x of v) enc(x, out);
  } else if (v instanceof Map) {
    out.push(header('map', v.size));
    for (const [k, x] of v) {
      enc(k, out);
      enc(x, out);
    }
  } else {
    const entries = Object.entries(v as Record<string, unknown>);
    out.push(header('map', entries.length));
    for (const [k, x] of entries) {
      enc(k, out);
      enc(x, out);
    }
  }
}

/** Encode a value (Raw fragments verbatim). */
export function pack(v: unknown): Buffer {
  const out: Buffer[] = [];
  enc(v, out);
  return Buffer.concat(out);
}

/** A frame: a 4-byte big-endian length (the body's own unless `prefix` lies) and the body. */
export function frame(body: Buffer, prefix = body.length): Buffer {
  const b = Buffer.allocUnsafe(4 + body.length);
  b.writeUInt32BE(prefix >>> 0, 0);
  body.copy(b, 4);
  return b;
}
