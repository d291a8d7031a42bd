/**
 * The structural check every frame body passes before it is decoded: true
 * lengths only, no extension types or 0xc1 at any depth, string keys,
 * bounded nesting — and the decoder it guards is the pure-JavaScript one.
 */
import t from 'tap';
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { checkWellFormed, MalformedError, MAX_DEPTH, MAX_REQUEST_VALUES } from '../../protocol/wellformed.js';
import { decodeValue, DecodeError, encodeValue, nativeDecoderEnabled } from '../../protocol/codec.js';
// the client library and the daemon's dispatch load the codec the way production does
import '../../client/index.js';
import '../../daemon/server/dispatch.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Plain MessagePack values as the protocol uses them. */
const plain: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
    fc.maxSafeInteger(),
    fc.double({ noNaN: true }),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.array(tie('v'), { maxLength: 20 }),
    fc.dictionary(fc.string({ maxLength: 20 }), tie('v'), { maxKeys: 20 }),
  ),
})).v;

t.test('the native string decoder is never loaded, in tests as in the daemon', async (t) => {
  t.equal(nativeDecoderEnabled(), false);
});

t.test('every value the codec writes is well formed and decodes back', async (t) => {
  fc.assert(
    fc.property(plain, (v) => {
      const b = encodeValue(v);
      checkWellFormed(b);
      decodeValue(b);
    }),
    { numRuns: 2000, seed: 7 },
  );
  t.pass('2000 values');
});

t.test('a cut or extended encoding is refused', async (t) => {
  fc.assert(
    fc.property(plain, fc.nat(), (v, k) => {
      const b = encodeValue(v);
      if (b.length > 1) {
        const cut = b.subarray(0, 1 + (k % (b.length - 1)));
        if (!throwsMalformed(cut)) throw new Error(`cut ${cut.toString('hex')} accepted`);
      }
      if (!throwsMalformed(Buffer.concat([b, Buffer.from([0])]))) throw new Error('trailing byte accepted');
    }),
    { numRuns: 1000, seed: 8 },
  );
  t.pass('1000 values');
});

function throwsMalformed(b: Uint8Array): boolean {
  try {
    checkWellFormed(b);
    return false;
  } catch (e) {
    if (!(e instanceof MalformedError)) throw e;
    return true;
  }
}

t.test('random bytes: refused cleanly, or decoded without error', async (t) => {
  let accepted = 0;
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (a) => {
      if (throwsMalformed(a)) return;
      accepted++;
      decodeValue(a); // must not throw: the check and the decoder agree
    }),
    { numRuns: 20000, seed: 9 },
  );
  t.ok(accepted > 0, `${accepted} of 20000 random byte strings were one valid value`);
});

t.test('headers that lie about their length are refused before decoding', async (t) => {
  const cases: [string, string][] = [
    ['db ffffffff 616263', 'string at offset 0 claims 4294967295 bytes, only 3 left'],
    ['dbfffffffb 616263', 'claims 4294967291 bytes'],
    ['d9 05 6162', 'claims 5 bytes, only 2 left'],
    ['c6 7fffffff 00', 'bin at offset 0 claims 2147483647 bytes'],
    ['dd ffffffff 01', 'array at offset 0 claims 4294967295 elements'],
    ['df 00010000 a161 01', 'map at offset 0 claims 65536 entries'],
    ['dc 0003 01 02', 'claims 3 elements, more than the 2 byte(s)'],
    ['82 a161 01 a162', 'value cut short'],
    ['cf 0000', 'needs 8 more byte(s)'],
  ];
  for (const [h, msg] of cases) {
    t.throws(() => checkWellFormed(hex(h)), { name: 'MalformedError', message: msg }, h);
    t.throws(() => decodeValue(hex(h)), DecodeError, h);
  }
});

t.test('extension types and 0xc1 are refused at any depth', async (t) => {
  const nested = [
    '82 a26964 01 a26f70 d4 01 00', // fixext1 as a value
    '83 a26964 01 a26f70 a470696e67 a178 91 c7 01 05 00', // ext8 inside an array
    '81 a178 81 a179 d8 01 ' + '00'.repeat(16), // fixext16 inside a nested map
    '82 a26964 01 a26f70 c1', // the reserved byte as a value
    '92 01 c1',
  ];
  for (const h of nested) {
    t.throws(() => checkWellFormed(hex(h)), MalformedError, h);
  }
  t.throws(() => checkWellFormed(hex('d6 ff 00000000')), { message: 'extension type (byte 0xd6) at offset 0' });
  t.throws(() => checkWellFormed(hex('c1')), { message: 'reserved byte 0xc1' });
});

t.test('map keys are strings', async (t) => {
  t.throws(() => checkWellFormed(hex('81 01 02')), { message: 'map key at offset 1 is not a string' });
  t.throws(() => checkWellFormed(hex('81 a161 81 c0 01')), { message: 'map key at offset 4' });
  t.throws(() => checkWellFormed(hex('81 c4 01 61 01')), { message: 'not a string (type byte 0xc4)' }, 'bin is not a string');
  checkWellFormed(hex('81 d9 01 61 c0'));
  checkWellFormed(hex('81 da 0001 61 c0'));
  checkWellFormed(hex('81 db 00000001 61 c0'));
});

t.test('nesting is bounded', async (t) => {
  checkWellFormed(Buffer.concat([Buffer.alloc(MAX_DEPTH - 1, 0x91), Buffer.from([0x90])]));
  t.throws(() => checkWellFormed(Buffer.concat([Buffer.alloc(MAX_DEPTH, 0x91), Buffer.from([0x90])])), { message: `nesting deeper than ${MAX_DEPTH}` });
  // 4 MiB of array headers is refused at once, without recursion
  t.throws(() => checkWellFormed(Buffer.alloc(4 << 20, 0x91)), MalformedError);
});

t.test('wide containers are linear, not quadratic', async (t) => {
  const big = encodeValue(Array.from({ length: 200_000 }, (_, i) => ({ k: i })));
  checkWellFormed(big);
  t.equal((decodeValue(big) as unknown[]).length, 200_000);
});

t.test('a request holds at most MAX_REQUEST_VALUES values (decoding cost bounded)', async (t) => {
  const ok = encodeValue({ id: 1, op: 'x', list: Array.from({ length: MAX_REQUEST_VALUES - 10 }, () => 0) });
  t.doesNotThrow(() => decodeValue(ok, MAX_REQUEST_VALUES));
  const many = encodeValue({ id: 1, op: 'x', list: Array.from({ length: MAX_REQUEST_VALUES }, () => 0) });
  t.throws(() => decodeValue(many, MAX_REQUEST_VALUES), { message: `more than ${MAX_REQUEST_VALUES} values in one frame` });
  t.doesNotThrow(() => decodeValue(many), 'without a limit (the client reading big status answers)');
  // 4 MiB of nils: refused after 16,384 of them, not decoded into a 4-million-element array
  const nils = Buffer.concat([Buffer.from([0xdd, 0x00, 0x40, 0x00, 0x00]), Buffer.alloc(4 << 20, 0xc0)]);
  t.throws(() => checkWellFormed(nils, MAX_REQUEST_VALUES), MalformedError);
});

t.test('in a request, a key appears once per map', async (t) => {
  // {"id":5,"op":"ping","id":6}
  const dup = hex('83 a26964 05 a26f70 a470696e67 a26964 06');
  t.throws(() => decodeValue(dup, MAX_REQUEST_VALUES), { message: 'duplicate map key at offset 13' });
  t.doesNotThrow(() => decodeValue(hex('82 a178 81 a161 01 a179 81 a161 02'), MAX_REQUEST_VALUES), 'the same key in two maps is fine');
  t.throws(() => decodeValue(hex('81 a178 82 a161 01 a161 02'), MAX_REQUEST_VALUES), { message: 'duplicate map key' }, 'nested maps too');
  t.throws(() => decodeValue(hex('82 a161 01 d90161 02'), MAX_REQUEST_VALUES), { message: 'duplicate map key' }, 'keys compare by their text, however their length is encoded');
  t.doesNotThrow(() => decodeValue(dup), 'answers to a client are not held to it');
});

/** A map's encoding with these raw key bytes (fixstr or str8 headers, chosen per key) and nil values. */
function mapOf(keys: Uint8Array[], str8: boolean[]): Buffer {
  const parts: Buffer[] = [keys.length < 16 ? Buffer.from([0x80 | keys.length]) : Buffer.from([0xde, keys.length >> 8, keys.length & 0xff])];
  keys.forEach((k, i) => {
    parts.push(str8[i] === true || k.length > 31 ? Buffer.from([0xd9, k.length]) : Buffer.from([0xa0 | k.length]), Buffer.from(k), Buffer.from([0xc0]));
  });
  return Buffer.concat(parts);
}

t.test('duplicate keys: refused exactly when two keys have the same bytes, compared in place (few, short) or in a Set (many, or long)', async (t) => {
  // keys drawn from a small pool so duplicates are common: short and long ones (past 16 bytes the map switches to a Set), some not UTF-8 (refused first)
  const text = fc.array(fc.constantFrom('a', 'b', 'é'), { maxLength: 24, size: 'max' }).map((cs) => Uint8Array.from(Buffer.from(cs.join(''), 'utf8')));
  const key = fc.oneof({ arbitrary: text, weight: 9 }, { arbitrary: text.map((k) => Uint8Array.from([...k, 0xff])), weight: 1 });
  const keysOf = fc
    .tuple(fc.array(key, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40, size: 'max' }))
    .map(([pool, picks]) => picks.map((i) => pool[i % pool.length]!));
  const agrees = (keys: Uint8Array[], str8: boolean[]): boolean => {
    const texts = keys.map((k) => Buffer.from(k).toString('latin1'));
    const badUtf8 = keys.some((k) => k.length > 0 && !isUtf8(k));
    const dup = new Set(texts).size !== texts.length;
    let err: unknown = null;
    try {
      checkWellFormed(mapOf(keys, str8), MAX_REQUEST_VALUES);
    } catch (e) {
      err = e;
    }
    if (badUtf8) return err instanceof MalformedError;
    if (dup) return err instanceof MalformedError && /duplicate map key/.test(err.message);
    return err === null;
  };
  t.doesNotThrow(() => fc.assert(fc.property(keysOf, fc.array(fc.boolean(), { maxLength: 40, size: 'max' }), agrees), { numRuns: 3000 }));
});

t.test('strings: valid exactly when node:buffer says UTF-8, short ones (checked for ASCII here first) and long ones', async (t) => {
  // mostly ASCII with a few high bytes, so both the fast path and the fallback are taken
  const agrees = (bytes: Uint8Array, fill: number): boolean => {
    const s = Uint8Array.from(bytes, (b) => (b < 200 ? (b + fill) & 0x7f : b));
    let ok = true;
    try {
      checkWellFormed(Buffer.concat([Buffer.from([0xd9, s.length]), Buffer.from(s)]), MAX_REQUEST_VALUES);
    } catch {
      ok = false;
    }
    return ok === isUtf8(s);
  };
  t.doesNotThrow(() => fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat({ max: 0x7f }), agrees), { numRuns: 3000 }));
});
