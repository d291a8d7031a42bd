/**
 * Passing a handle to another process over a channel the two share.
 *
 * Over a Unix socket your own code reads (a raw fd: from
 * native().socketpair(), inherited, never wrapped in a Node stream — libuv
 * would swallow the descriptor), a real file descriptor crosses with
 * SCM_RIGHTS: the sender takes an fd for the buffer (exportFd) and sends one
 * message, "BFDF" | length (4 bytes, big-endian) | UTF-8 JSON
 *   {"v":1,"buffer":…,"size":…,"bytes":…,"rights":[…],"readOnly":…}
 * with the fd attached; the receiver turns it back into a handle (importFd).
 * Any program can receive such a message and mmap the fd.
 *
 * Over any other stream (a pipe, a Node socket, TCP on loopback) the
 * sender exports a single-use token and writes it in-band as one record,
 * "BFDH" | length | JSON {"v":1,"token":…,"size":…,"pool":…,"rights":[…]};
 * the receiver reads exactly that record and imports the token. Bytes before
 * and after a record are the application's.
 */
import type { Readable, Writable } from 'node:stream';
import { BufferdError } from '../protocol/errors.js';
import type { HandleInfo, RightName } from '../protocol/results.js';
import type { BufferClient } from './client.js';
import { native } from '../daemon/lib/native.js';

export const HANDLE_RECORD_MAGIC = Buffer.from('BFDH');
export const FD_RECORD_MAGIC = Buffer.from('BFDF');
const MAX_RECORD = 4096;

export interface SendHandleOptions {
  rights?: RightName[];
  /** Token lifetime (streams only); the receiver must import within it (default 30 s). */
  ttlMs?: number;
}

function record(magic: Buffer, body: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  const head = Buffer.alloc(8);
  magic.copy(head, 0);
  head.writeUInt32BE(json.length, 4);
  return Buffer.concat([head, json]);
}

function parse(buf: Buffer, magic: Buffer): Record<string, unknown> {
  if (buf.length < 8 || !buf.subarray(0, 4).equals(magic)) {
    throw new BufferdError('EPROTO', `not a handle record: expected magic "${magic.toString()}", got 0x${buf.subarray(0, 4).toString('hex')}`);
  }
  const len = buf.readUInt32BE(4);
  if (len === 0 || len > MAX_RECORD || buf.length < 8 + len) throw new BufferdError('EPROTO', `handle record of ${len} bytes (at most ${MAX_RECORD}, ${buf.length - 8} there)`);
  try {
    return JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new BufferdError('EPROTO', 'handle record is not JSON');
  }
}

/**
 * Pass `handle`: as a real fd over a Unix socket fd (a number), or as an
 * in-band token on a stream. Rights may be narrowed: over an fd, a handle
 * without write (or rights without 'write') sends a read-only descriptor.
 */
export async function sendHandle(to: Writable | number, client: BufferClient, handle: number, opts: SendHandleOptions = {}): Promise<{ rights: RightName[] }> {
  if (typeof to === 'number') {
    const access = opts.rights !== undefined && !opts.rights.includes('write') ? 'read' : undefined;
    const x = await client.exportFd(handle, access === undefined ? {} : { access });
    try {
      native()!.sendFds(to, record(FD_RECORD_MAGIC, { v: 1, buffer: x.buffer, size: x.size, bytes: x.bytes, rights: x.rights, readOnly: x.readOnly }), [x.fd]);
    } finally {
      native()!.close(x.fd);
    }
    return { rights: x.rights };
  }
  const info = await client.info(handle);
  const ex = await client.export(handle, opts);
  const rec = record(HANDLE_RECORD_MAGIC, { v: 1, token: ex.token, size: info.size, pool: info.pool, rights: ex.rights });
  await new Promise<void>((resolve, reject) => {
    to.write(rec, (err) => (err ? reject(err) : resolve()));
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

/** One message from a Unix socket fd, waiting (without blocking the event loop) up to timeoutMs. */
async function recvMessage(fd: number, timeoutMs: number): Promise<{ data: Buffer; fds: number[] }> {
  const sys = native();
  if (sys === null) throw new BufferdError('ENOTSUP', 'receiving a file descriptor needs the native system calls');
  const end = performance.now() + timeoutMs;
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    const m = sys.recvFds(fd, MAX_RECORD + 8, true);
    if (m !== null) {
      if (m.data.length === 0 && m.fds.length === 0) throw new BufferdError('EPROTO', 'the socket was closed before a handle record arrived');
      return m;
    }
    if (performance.now() > end) throw new BufferdError('ETIMEDOUT', `no handle record on fd ${fd} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * Receive a handle: a real fd from a Unix socket fd (a number), imported;
 * or a token record from a stream (which must not be flowing while this
 * runs; bytes after the record stay in it).
 */
export async function receiveHandle(from: Readable | number, client: BufferClient, opts: { timeoutMs?: number } = {}): Promise<HandleInfo> {
  if (typeof from === 'number') {
    const m = await recvMessage(from, opts.timeoutMs ?? 30_000);
    try {
      const rec = parse(m.data, FD_RECORD_MAGIC);
      if (rec['v'] !== 1 || m.fds.length !== 1) throw new BufferdError('EPROTO', `handle record with ${m.fds.length} file descriptors (expected one)`);
      return await client.importFd(m.fds[0]!);
    } finally {
      for (const fd of m.fds) native()!.close(fd);
    }
  }
  const head = await readExactly(from, 8);
  if (!head.subarray(0, 4).equals(HANDLE_RECORD_MAGIC)) {
    throw new BufferdError('EPROTO', `not a handle record: expected magic "BFDH", got 0x${head.subarray(0, 4).toString('hex')}`);
  }
  const len = head.readUInt32BE(4);
  if (len === 0 || len > MAX_RECORD) throw new BufferdError('EPROTO', `handle record of ${len} bytes (at most ${MAX_RECORD})`);
  const rec = parse(Buffer.concat([head, await readExactly(from, len)]), HANDLE_RECORD_MAGIC);
  if (rec['v'] !== 1 || typeof rec['token'] !== 'string') throw new BufferdError('EPROTO', 'handle record has no version-1 token');
  return client.import(rec['token']);
}
