/**
 * Transfers over the per-request data limit (hello's limits.maxDataBytes),
 * split into pipelined requests: client.read/write and client.device.read/write.
 */

/**
 * Call `send(done, n)` for consecutive pieces of at most `chunk` bytes
 * covering `total` (one piece of 0 bytes when total is 0), all in flight at
 * once; the answers in order.
 */
function inChunks<T>(total: number, chunk: number, send: (done: number, n: number) => Promise<T>): Promise<T[]> {
  const parts: Promise<T>[] = [];
  let done = 0;
  do {
    const n = Math.min(chunk, total - done);
    parts.push(send(done, n));
    done += n;
  } while (done < total);
  return Promise.all(parts);
}

/** Write `data` in pieces; `send(done, part)` writes one piece at offset `done` of the transfer. */
export async function chunkedWrite(chunk: number, data: Uint8Array, send: (done: number, part: Uint8Array) => Promise<{ written: number }>): Promise<{ written: number }> {
  const r = await inChunks(data.length, chunk, (done, n) => send(done, data.subarray(done, done + n)));
  return { written: r.reduce((a, x) => a + x.written, 0) };
}

/** Read `length` bytes in pieces; `read(done, n)` reads one piece at offset `done` of the transfer. */
export async function chunkedRead(chunk: number, length: number, read: (done: number, n: number) => Promise<{ data: Uint8Array }>): Promise<Buffer> {
  const r = await inChunks(length, chunk, read);
  if (r.length === 1) {
    // one piece: its bytes as they came, without a copy
    const d = r[0]!.data;
    return Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  }
  return Buffer.concat(r.map((x) => x.data));
}
