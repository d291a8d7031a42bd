/**
 * The IPC baseline: a Unix-socket server with bufferd's framing and no
 * daemon work behind it.
 *
 *   node dist/bench/echo-server.js SOCKET [MODE]
 *
 * MODE (default: echo):
 *   echo   send every frame straight back, undecoded.
 *   ack    decode each request and answer {id, result: {written: n}}, n the
 *          length of its `data` (the shape of bufferd's answer to write).
 *   serve  decode each request and answer {id, result: {data}} with `length`
 *          bytes of bin data (the shape of bufferd's answer to read).
 * In ack and serve modes a `hello` gets a minimal bufferd answer, so the
 * client library itself can be the baseline's client.
 */
import { createServer, type Socket } from 'node:net';
import { FrameReader, encodeFrame, DEFAULT_MAX_FRAME_BYTES, maxDataBytes } from '../protocol/frame.js';
import { decodeValue } from '../protocol/codec.js';

const path = process.argv[2]!;
const mode = process.argv[3] ?? 'echo';
if (mode !== 'echo' && mode !== 'ack' && mode !== 'serve') {
  process.stderr.write(`echo-server: unknown mode '${mode}' (echo, ack, serve)\n`);
  process.exit(2);
}

/** Bytes served in 'serve' mode: a non-zero pattern, grown on demand. */
let pattern = Buffer.alloc(0);
function served(n: number): Buffer {
  if (pattern.length < n) {
    pattern = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) pattern[i] = (i * 31 + 7) & 0xff || 1;
  }
  return pattern.subarray(0, n);
}

function answer(s: Socket, body: Buffer): void {
  if (mode === 'echo') {
    const h = Buffer.allocUnsafe(4 + body.length);
    h.writeUInt32BE(body.length, 0);
    body.copy(h, 4);
    s.write(h);
    return;
  }
  const req = decodeValue(body) as { id: number; op?: string; data?: Uint8Array; length?: number };
  if (req.op === 'hello') {
    // just enough of bufferd's hello for the client library to talk to this server
    s.write(
      encodeFrame({
        id: req.id,
        result: {
          clientId: 1,
          name: null,
          protocolVersion: 1,
          server: { name: 'bufferd', version: 'raw', pid: process.pid },
          limits: { maxFrameBytes: DEFAULT_MAX_FRAME_BYTES, maxDataBytes: maxDataBytes(DEFAULT_MAX_FRAME_BYTES), maxHandles: 1 },
          capabilities: [],
          principal: 'raw',
          maxBytes: null,
        },
      }),
    );
    return;
  }
  if (mode === 'ack') s.write(encodeFrame({ id: req.id, result: { written: req.data?.length ?? 0 } }));
  else s.write(encodeFrame({ id: req.id, result: { data: served(req.length ?? 0) } }));
}

const srv = createServer((s) => {
  const r = new FrameReader();
  s.on('data', (c: Buffer) => {
    for (const body of r.push(c)) answer(s, body);
  });
  s.on('error', () => {});
});
srv.listen(path, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => srv.close(() => process.exit(0)));
