/**
 * A buffer's bytes as physical segments: building the list from page
 * blocks, and walking the pieces of a byte range of it. Pure.
 */
import { PAGE } from './physmem.js';
import type { HeldBlock } from './cacheattr.js';

export interface Segment {
  addr: number;
  len: number;
}

/** Segments covering `size` bytes of the given blocks, adjacent blocks merged. */
export function segmentsOf(blocks: HeldBlock[], size: number): Segment[] {
  // two passes: count, then fill an array of exactly that length (a push onto [] reserves 17 slots, 184 bytes for the usual one segment)
  let n = 0;
  let end = -1;
  let left = size;
  for (let i = 0; i < blocks.length && left > 0; i++) {
    const b = blocks[i]!;
    const addr = b.pfn * PAGE;
    if (addr !== end) n++;
    const len = Math.min(left, b.npages * PAGE);
    end = addr + len;
    left -= len;
  }
  const out = new Array<Segment>(n);
  let k = -1;
  end = -1;
  left = size;
  for (let i = 0; i < blocks.length && left > 0; i++) {
    const b = blocks[i]!;
    const addr = b.pfn * PAGE;
    const len = Math.min(left, b.npages * PAGE);
    if (addr === end) out[k]!.len += len;
    else out[++k] = { addr, len };
    end = addr + len;
    left -= len;
  }
  return out;
}

/** Visit the physical pieces of bytes [off, off + len) of a segment list: fn(addr, offset in the range, bytes). */
export function forEachPiece(segments: Segment[], off: number, len: number, fn: (addr: number, at: number, n: number) => void): void {
  const end = off + len;
  let segStart = 0;
  for (const s of segments) {
    if (segStart >= end) break;
    const lo = Math.max(off, segStart);
    const hi = Math.min(end, segStart + s.len);
    if (lo < hi) fn(s.addr + (lo - segStart), lo - off, hi - lo);
    segStart += s.len;
  }
}

/**
 * The physical pieces of [off, off + len) in one pass over the segments,
 * cut at every `chunk` bytes of the range: [addr, offset in the range,
 * bytes, whether a chunk ends there].
 */
export function* chunkedPieces(segments: Segment[], off: number, len: number, chunk: number): Generator<[number, number, number, boolean]> {
  const end = off + len;
  let segStart = 0;
  for (const s of segments) {
    if (segStart >= end) break;
    let lo = Math.max(off, segStart);
    const hi = Math.min(end, segStart + s.len);
    while (lo < hi) {
      const boundary = off + (Math.floor((lo - off) / chunk) + 1) * chunk;
      const stop = Math.min(hi, boundary);
      yield [s.addr + (lo - segStart), lo - off, stop - lo, stop === boundary];
      lo = stop;
    }
    segStart += s.len;
  }
}

