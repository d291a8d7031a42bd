import t from 'tap';
import { encodeFrame, FrameReader, FrameTooLargeError, DEFAULT_MAX_FRAME_BYTES } from '../../protocol/frame.js';
import { encodeValue, decodeValue, DecodeError } from '../../protocol/codec.js';

t.test('a frame is a 4-byte big-endian length then one MessagePack value', async (t) => {
  const f = encodeFrame({ id: 1, op: 'ping' });
  t.equal(f.readUInt32BE(0), f.length - 4);
  // fixmap(2) "id" 1 "op" "ping"
  t.equal(f.subarray(4).toString('hex'), '82a2696401a26f70a470696e67');
});

t.test('encoding is plain MessagePack', async (t) => {
  // large integers become int64, not float64
  t.equal(encodeValue(2 ** 40).toString('hex'), 'd30000010000000000');
  t.equal(encodeValue(-(2 ** 40)).toString('hex'), 'd3ffffff0000000000');
  // 32-bit integers stay compact
  t.equal(encodeValue(0xffffffff).toString('hex'), 'ceffffffff');
  // undefined is nil, not an extension
  t.equal(encodeValue(undefined).toString('hex'), 'c0');
  t.equal(encodeValue({ a: undefined }).toString('hex'), '81a161c0');
  // binary data is bin
  t.equal(encodeValue(Buffer.from([1, 2])).toString('hex'), 'c4020102');
  // nested large integers in arrays and maps
  const v = { segs: [{ addr: 0x2_8000_0000, len: 4096 }] };
  t.same(decodeValue(encodeValue(v)), v);
  t.notOk(encodeValue(v).includes(0xcb), 'no float64 marker');
  // non-integers stay floats
  t.equal(encodeValue(0.5).toString('hex'), 'cb3fe0000000000000');
  // the input object is not modified
  t.equal(typeof v.segs[0]!.addr, 'number');
});

t.test('decoding rejects what is not exactly one value', async (t) => {
  t.throws(() => decodeValue(Buffer.alloc(0)), DecodeError);
  t.throws(() => decodeValue(Buffer.from([0x92, 0x01])), DecodeError, 'truncated');
  t.throws(() => decodeValue(Buffer.from([0x01, 0x02])), DecodeError, 'trailing bytes');
  t.throws(() => decodeValue(Buffer.from([0xc1])), DecodeError, 'reserved byte');
  t.throws(() => decodeValue(Buffer.from([0xd4, 0x05, 0x00])), DecodeError, 'unknown extension');
  t.same(decodeValue(Buffer.from('cf0000010000000005', 'hex')), 2 ** 40 + 5, 'uint64 decodes to number');
  const o = decodeValue(Buffer.from('81a95f5f70726f746f5f5f81a17801', 'hex')) as Record<string, unknown>;
  t.equal(Object.getPrototypeOf(o), Object.prototype, '__proto__ keys cannot change prototypes');
});

t.test('FrameReader reassembles frames split anywhere', async (t) => {
  const frames = [encodeFrame({ a: 1 }), encodeFrame({ b: 'x'.repeat(1000) }), encodeFrame([1, 2, 3])];
  const all = Buffer.concat(frames);
  for (let cut = 1; cut < all.length; cut += 7) {
    const r = new FrameReader();
    const got = [...r.push(all.subarray(0, cut)), ...r.push(all.subarray(cut))];
    t.equal(got.length, 3);
    t.same(decodeValue(got[1]!), { b: 'x'.repeat(1000) });
    t.equal(r.pendingBytes, 0);
  }
  // byte at a time
  const r = new FrameReader();
  const got: Buffer[] = [];
  for (const b of all) got.push(...r.push(Buffer.from([b])));
  t.same(got.map((g) => decodeValue(g)), [{ a: 1 }, { b: 'x'.repeat(1000) }, [1, 2, 3]]);
  t.same(r.push(Buffer.alloc(0)), []);
});

t.test('FrameReader checks the prefix before buffering the body', async (t) => {
  const r = new FrameReader(1024);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(1025);
  t.throws(() => r.push(head), FrameTooLargeError);
  t.equal(r.pendingBytes, 0);
  const r2 = new FrameReader();
  head.writeUInt32BE(0xffffffff);
  // only the prefix is needed to refuse, even split across chunks
  t.same(r2.push(head.subarray(0, 2)), []);
  const e = t.throws(() => r2.push(head.subarray(2))) as unknown as FrameTooLargeError;
  t.match(e.message, `maximum frame size of ${DEFAULT_MAX_FRAME_BYTES} bytes`);
  // exactly at the limit is fine
  const r3 = new FrameReader(8);
  const f = Buffer.concat([Buffer.from([0, 0, 0, 8]), Buffer.alloc(8)]);
  t.equal(r3.push(f).length, 1);
  // zero-length frames are delivered (and rejected later by the decoder)
  t.same(new FrameReader().push(Buffer.from([0, 0, 0, 0])).map((b) => b.length), [0]);
});

t.test('FrameReader: any split of any frames gives the same bodies (property)', async (t) => {
  const fc = (await import('fast-check')).default;
  t.doesNotThrow(() => fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 70_000 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      (bodies, cuts) => {
        const all = Buffer.concat(bodies.map((b) => Buffer.concat([Buffer.from([b.length >>> 24, (b.length >>> 16) & 255, (b.length >>> 8) & 255, b.length & 255]), b])));
        const at = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
        const r = new FrameReader();
        const got: Buffer[] = [];
        let prev = 0;
        for (const c of [...at, all.length]) {
          got.push(...r.push(all.subarray(prev, c)).map((x) => Buffer.from(x)));
          prev = c;
        }
        if (got.length !== bodies.length || r.pendingBytes !== 0 || r.completed !== bodies.length) throw new Error('frame count');
        got.forEach((g, i) => {
          if (!g.equals(Buffer.from(bodies[i]!))) throw new Error(`body ${i} differs`);
        });
      },
    ),
    { numRuns: 300, seed: 3 },
  ), '300 random splits: every property holds');
});

t.test('FrameReader holds about what arrived, not what the prefix claims', async (t) => {
  const r = new FrameReader();
  const head = Buffer.alloc(4);
  head.writeUInt32BE(DEFAULT_MAX_FRAME_BYTES);
  r.push(head);
  t.equal(r.pendingBytes, 4, 'a frame is pending once its prefix is in');
  t.equal(r.heldBytes, 4, 'nothing allocated for the claimed 4 MiB');
  // a byte at a time: one growing buffer, never more than twice what came (or 16 KiB)
  let sent = 0;
  for (let i = 0; i < 100_000; i++) {
    r.push(Buffer.from([i & 255]));
    sent++;
    if (r.heldBytes > Math.max(2 * sent, 16 * 1024) + 4) {
      t.fail(`holds ${r.heldBytes} after ${sent} bytes`);
      break;
    }
  }
  t.equal(r.pendingBytes, 4 + sent);
  t.ok(r.heldBytes <= 2 * sent + 4, `holds ${r.heldBytes} bytes after ${sent} one-byte chunks`);
});
