/**
 * Framing: a 4-byte big-endian unsigned length, then exactly that many bytes
 * holding one plain MessagePack value.
 *
 * The reader checks the length prefix against the limit as soon as the four
 * prefix bytes are in, before any of the body is buffered or decoded.
 */
import { encodeValue } from './codec.js';

export const FRAME_HEADER_BYTES = 4;
/** Default maximum frame body size: 4 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;
/** Largest length a 4-byte prefix can state. */
export const MAX_FRAME_PREFIX = 0xffff_ffff;

/** Encode a value into one frame (prefix + body). */
export function encodeFrame(value: unknown): Buffer {
  const body = encodeValue(value);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, FRAME_HEADER_BYTES);
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
 * complete frame bodies. Never buffers more than one frame body beyond the
 * current chunk, and never buffers a body whose prefix is over the limit.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Body length of the frame being assembled, or -1 while reading a prefix. */
  private need = -1;

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held for an incomplete frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Append a chunk; return every frame body it completes. Throws FrameTooLargeError. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const len = this.peekPrefix();
        if (len > this.maxFrameBytes) {
          this.chunks = [];
          this.buffered = 0;
          throw new FrameTooLargeError(len, this.maxFrameBytes);
        }
        this.consume(FRAME_HEADER_BYTES);
        this.need = len;
      }
      if (this.buffered < this.need) break;
      out.push(this.take(this.need));
      this.need = -1;
    }
    return out;
  }

  private peekPrefix(): number {
    const first = this.chunks[0]!;
    if (first.length >= FRAME_HEADER_BYTES) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, FRAME_HEADER_BYTES);
    return head.readUInt32BE(0);
  }

  private consume(n: number): void {
    this.take(n);
  }

  /** Remove and return the first n buffered bytes. */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** Largest data payload a request may carry under a frame limit (room left for the envelope). */
export function maxDataBytes(maxFrameBytes: number): number {
  return maxFrameBytes - 1024;
}
