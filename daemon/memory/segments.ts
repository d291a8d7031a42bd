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
  const out: Segment[] = [];
  // (the last segment is kept in a variable: reading out[-1] of an empty array is a slow named-property lookup in V8)
  let last: Segment | null = null;
  let left = size;
  for (const b of blocks) {
    if (left <= 0) break;
    const len = Math.min(left, b.npages * PAGE);
    const addr = b.pfn * PAGE;
    if (last !== null && last.addr + last.len === addr) last.len += len;
    else {
      last = { addr, len };
      out.push(last);
    }
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

