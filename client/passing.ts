/**
 * Passing a handle over any stream two processes share (a socketpair, a
 * pipe, a TCP connection on loopback), the way SCM_RIGHTS carries an fd
 * beside data: the sender exports a single-use token and writes it in-band
 * as one small record; the receiver reads exactly that record and imports
 * the token. Bytes before and after the record are the application's.
 *
 * Record: "BFDH" (4 bytes) | length (4 bytes, big-endian) | UTF-8 JSON
 *   {"v":1,"token":"…","size":…,"pool":"…","rights":["read",…]}
 */
import type { Readable, Writable } from 'node:stream';
import { BufferdError } from '../protocol/errors.js';
import type { HandleInfo, RightName } from '../protocol/results.js';
import type { BufferClient } from './client.js';

export const HANDLE_RECORD_MAGIC = Buffer.from('BFDH');
const MAX_RECORD = 4096;

export interface SendHandleOptions {
  rights?: RightName[];
  /** Token lifetime; the receiver must import within it (default 30 s). */
  ttlMs?: number;
}

/** Export `handle` and write the token in-band on `stream`. Resolves once written. */
export async function sendHandle(stream: Writable, client: BufferClient, handle: number, opts: SendHandleOptions = {}): Promise<{ rights: RightName[] }> {
  const info = await client.info(handle);
  const ex = await client.export(handle, opts);
  const body = Buffer.from(JSON.stringify({ v: 1, token: ex.token, size: info.size, pool: info.pool, rights: ex.rights }), 'utf8');
  const head = Buffer.alloc(8);
  HANDLE_RECORD_MAGIC.copy(head, 0);
  head.writeUInt32BE(body.length, 4);
  await new Promise<void>((resolve, reject) => {
    stream.write(Buffer.concat([head, body]), (err) => (err ? reject(err) : resolve()));
  });
  return { rights: ex.rights };
}

/** Read exactly n bytes from a paused-mode readable stream. */
function readExactly(stream: Readable, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off('readable', tryRead);
      stream.off('end', onEnd);
      stream.off('error', onErr);
    };
    const tryRead = () => {
      const b = stream.read(n) as Buffer | null;
      if (b === null) return;
      cleanup();
      if (b.length < n) reject(new BufferdError('EPROTO', `stream ended after ${b.length} of ${n} bytes of a handle record`));
      else resolve(b);
    };
    const onEnd = () => {
      cleanup();
      reject(new BufferdError('EPROTO', 'stream ended before a handle record arrived'));
    };
    const onErr = (e: Error) => {
      cleanup();
      reject(e);
    };
    stream.on('readable', tryRead);
    stream.on('end', onEnd);
    stream.on('error', onErr);
    tryRead();
  });
}

/**
 * Read one handle record from `stream` and import it with `client`. The
 * stream must not be flowing (no 'data' listener) while this runs; bytes
 * after the record stay in the stream for the application.
 */
export async function receiveHandle(stream: Readable, client: BufferClient): Promise<HandleInfo> {
  const head = await readExactly(stream, 8);
  if (!head.subarray(0, 4).equals(HANDLE_RECORD_MAGIC)) {
    throw new BufferdError('EPROTO', `not a handle record: expected magic "BFDH", got 0x${head.subarray(0, 4).toString('hex')}`);
  }
  const len = head.readUInt32BE(4);
  if (len === 0 || len > MAX_RECORD) throw new BufferdError('EPROTO', `handle record of ${len} bytes (at most ${MAX_RECORD})`);
  const body = await readExactly(stream, len);
  let rec: { v?: unknown; token?: unknown };
  try {
    rec = JSON.parse(body.toString('utf8')) as { v?: unknown; token?: unknown };
  } catch {
    throw new BufferdError('EPROTO', 'handle record is not JSON');
  }
  if (rec.v !== 1 || typeof rec.token !== 'string') throw new BufferdError('EPROTO', 'handle record has no version-1 token');
  return client.import(rec.token);
}
