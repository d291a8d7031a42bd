/**
 * The IPC baseline: a Unix-socket server with bufferd's framing that sends
 * every frame straight back. Same socket type, same framing, no daemon work.
 *
 *   node dist/bench/echo-server.js SOCKET
 */
import { createServer } from 'node:net';
import { FrameReader } from '../protocol/frame.js';

const path = process.argv[2]!;
const srv = createServer((s) => {
  const r = new FrameReader();
  s.on('data', (c: Buffer) => {
    for (const body of r.push(c)) {
      const h = Buffer.allocUnsafe(4 + body.length);
      h.writeUInt32BE(body.length, 0);
      body.copy(h, 4);
      s.write(h);
    }
  });
  s.on('error', () => {});
});
srv.listen(path, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => srv.close(() => process.exit(0)));
