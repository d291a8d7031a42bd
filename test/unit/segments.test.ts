/**
 * daemon/memory/segments.ts segmentsOf: a buffer's first `size` bytes over
 * its blocks as physical segments, adjacent blocks merged — against the
 * naive answer built page by page, and with arrays of exactly the
 * segments' length (no spare capacity kept per live buffer).
 */
import t from 'tap';
import fc from 'fast-check';
import { segmentsOf } from '../../daemon/memory/segments.js';
import type { HeldBlock } from '../../daemon/memory/cacheattr.js';
import { PAGE } from '../../daemon/memory/physmem.js';

const block = (pfn: number, npages: number): HeldBlock => ({ pfn, npages, attr: 'writeback', pool: 'p', users: 0, hugeSize: 0 });

/** Byte runs page by page, merged when the next page follows. */
function naive(blocks: HeldBlock[], size: number): { addr: number; len: number }[] {
  const out: { addr: number; len: number }[] = [];
  let left = size;
  for (const b of blocks) {
    for (let p = 0; p < b.npages && left > 0; p++) {
      const addr = (b.pfn + p) * PAGE;
      const len = Math.min(PAGE, left);
      const last = out[out.length - 1];
      if (last !== undefined && last.addr + last.len === addr) last.len += len;
      else out.push({ addr, len });
      left -= len;
    }
  }
  return out;
}

t.test('property: segmentsOf equals the page-by-page answer', async (t) => {
  const layout = fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 9 })), { minLength: 1, maxLength: 12 });
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(layout, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 2 ** 40 }), (parts, frac, start) => {
        // blocks in buffer order: a gap of 0 pages joins a block to the one before
        const blocks: HeldBlock[] = [];
        let pfn = start;
        for (const [gap, n] of parts) {
          pfn += gap;
          blocks.push(block(pfn, n));
          pfn += n;
        }
        const total = blocks.reduce((a, b) => a + b.npages * PAGE, 0);
        const size = Math.max(1, Math.floor(frac * total));
        const got = segmentsOf(blocks, size);
        if (JSON.stringify(got) !== JSON.stringify(naive(blocks, size))) throw new Error(`${JSON.stringify(parts)} size ${size}`);
        return got.length === Object.keys(got).length;
      }),
      { numRuns: 500 },
    ),
  );
});

t.test('blocks out of address order are not merged; a size inside the first block gives one segment', async (t) => {
  t.same(segmentsOf([block(10, 2), block(8, 2)], 4 * PAGE), [
    { addr: 10 * PAGE, len: 2 * PAGE },
    { addr: 8 * PAGE, len: 2 * PAGE },
  ]);
  t.same(segmentsOf([block(10, 2), block(12, 2)], 3 * PAGE + 5), [{ addr: 10 * PAGE, len: 3 * PAGE + 5 }]);
  t.same(segmentsOf([block(10, 4), block(20, 4)], 100), [{ addr: 10 * PAGE, len: 100 }]);
  t.same(segmentsOf([], 100), []);
});
