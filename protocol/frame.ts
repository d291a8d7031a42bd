/**
 * Framing: a 4-byte big-endian unsigned length, then exactly that many bytes
 * holding one plain MessagePack value.
 *
 * The reader checks the length prefix against the limit as soon as the four
 * prefix bytes are in, before any of the body is buffered or decoded.
 */
import { encodeWithPrefix } from './codec.js';

export const FRAME_HEADER_BYTES = 4;
/** Default maximum frame body size: 4 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;
/** Largest length a 4-byte prefix can state. */
export const MAX_FRAME_PREFIX = 0xffff_ffff;

/** Encode a value into one frame (prefix + body), the body packed right after the prefix. */
export function encodeFrame(value: unknown): Buffer {
  const frame = encodeWithPrefix(value, FRAME_HEADER_BYTES);
  frame.writeUInt32BE(frame.length - FRAME_HEADER_BYTES, 0);
  return frame;
}

/** Raised by FrameReader when a prefix states more than the limit. */
export class FrameTooLargeError extends Error {
  constructor(readonly length: number, readonly limit: number) {
    super(`frame length ${length} bytes exceeds the maximum frame size of ${limit} bytes (maxFrameBytes)`);
    this.name = 'FrameTooLargeError';
  }
}

/**
 * Incremental frame splitter. Feed it chunks as they arrive; it returns the
 * complete frame bodies, in order.
 *
 * - The prefix is checked against the limit as soon as its four bytes are
 *   in, before any of the body is held.
 * - A body wholly inside one chunk is returned as a view of that chunk (no
 *   copy). A body spread over chunks is assembled in one buffer that grows
 *   geometrically with what actually arrived — never to the length the
 *   prefix claims before the bytes are there — so a client holds at most
 *   about twice what it sent, however it splits its writes (a frame
 *   trickled a byte at a time costs one buffer, not one object per byte).
 */
export class FrameReader {
  private readonly head = Buffer.alloc(FRAME_HEADER_BYTES);
  private headLen = 0;
  /** Body length of the frame being assembled, or -1 while reading a prefix. */
  private need = -1;
  private body: Buffer | null = null;
  private got = 0;
  /** Frames completed so far (a new partial frame started after the last one). */
  completed = 0;

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes received for the incomplete frame (prefix included); 0 between frames. */
  get pendingBytes(): number {
    return this.need < 0 ? this.headLen : FRAME_HEADER_BYTES + this.got;
  }

  /** Bytes held in memory for the incomplete frame (its assembly buffer). */
  get heldBytes(): number {
    return (this.body?.length ?? 0) + FRAME_HEADER_BYTES;
  }

  /** Append a chunk; return every frame body it completes. Throws FrameTooLargeError. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.need < 0) {
        const k = Math.min(FRAME_HEADER_BYTES - this.headLen, chunk.length - off);
        chunk.copy(this.head, this.headLen, off, off + k);
        this.headLen += k;
        off += k;
        if (this.headLen < FRAME_HEADER_BYTES) break;
        const len = this.head.readUInt32BE(0);
        this.headLen = 0;
        if (len > this.maxFrameBytes) throw new FrameTooLargeError(len, this.maxFrameBytes);
        if (len === 0) {
          this.deliver(out, Buffer.alloc(0));
          continue;
        }
        this.need = len;
      }
      const avail = chunk.length - off;
      if (avail === 0) break;
      if (this.got === 0 && avail >= this.need) {
        // the whole body is in this chunk: a view, no copy
        const end = off + this.need;
        this.deliver(out, chunk.subarray(off, end));
        off = end;
        continue;
      }
      const k = Math.min(this.need - this.got, avail);
      this.reserve(this.got + k);
      chunk.copy(this.body!, this.got, off, off + k);
      this.got += k;
      off += k;
      if (this.got === this.need) this.deliver(out, this.body!);
    }
    return out;
  }

  /** Grow the assembly buffer to hold `n` bytes: doubling, at least 16 KiB, never past the body's length. */
  private reserve(n: number): void {
    const cap = this.body?.length ?? 0;
    if (n <= cap) return;
    const next = Math.min(this.need, Math.max(n, 2 * cap, 16 * 1024));
    const b = Buffer.allocUnsafe(next);
    if (this.body !== null) this.body.copy(b, 0, 0, this.got);
    this.body = b;
  }

  private deliver(out: Buffer[], body: Buffer): void {
    out.push(body);
    this.need = -1;
    this.body = null;
    this.got = 0;
    this.completed++;
  }
}

/** Largest data payload a request may carry under a frame limit (room left for the envelope). */
export function maxDataBytes(maxFrameBytes: number): number {
  return maxFrameBytes - 1024;
}
