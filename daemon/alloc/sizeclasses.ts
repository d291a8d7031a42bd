/**
 * Size classes computed as jemalloc computes them (src/sc.c) for a 16-byte
 * quantum and 4 KiB pages:
 *
 *   tiny:   8
 *   then groups of four classes per doubling,
 *           size = 2^lgBase + ndelta * 2^lgDelta
 *   16 32 48 64 | 80 96 112 128 | 160 192 224 256 | 320 ... | 10240 12288 14336 16384 | ...
 *
 * Classes below 4 pages (14 KiB) are *small* and live in slabs whose size is
 * the least common multiple of the page size and the class size (no tail
 * waste); from 16 KiB up they are *large* page multiples. The table goes up
 * to 64 GiB, the largest buffer. Pure: no I/O.
 */
import { PAGE, PAGE_SHIFT } from '../memory/pagestore.js';

export { PAGE };
export const LG_QUANTUM = 4;
export const LG_TINY_MIN = 3;
export const LG_PAGE = PAGE_SHIFT;
export const LG_NGROUP = 2;
export const NGROUP = 1 << LG_NGROUP;
/** Largest class: 64 GiB. */
export const LG_MAX = 36;

function build(): number[] {
  const sizes: number[] = [];
  for (let lg = LG_TINY_MIN; lg < LG_QUANTUM; lg++) sizes.push(2 ** lg);
  // first group: 16, 32, 48, 64 (lgBase = lgDelta = quantum)
  for (let n = 0; n < NGROUP; n++) sizes.push(2 ** LG_QUANTUM + n * 2 ** LG_QUANTUM);
  for (let lgBase = LG_QUANTUM + LG_NGROUP; lgBase < LG_MAX; lgBase++) {
    const lgDelta = lgBase - LG_NGROUP;
    for (let n = 1; n <= NGROUP; n++) sizes.push(2 ** lgBase + n * 2 ** lgDelta);
  }
  return sizes;
}

/** index → size; strictly increasing. */
export const SIZES: readonly number[] = Object.freeze(build());
export const NSIZES = SIZES.length;
/** Largest small class: 4 pages − 1/4 page group delta = 14336 with 4 KiB pages. */
export const SMALL_MAXCLASS = (1 << (LG_PAGE + LG_NGROUP)) - (1 << LG_PAGE) / 2;
export const NBINS = SIZES.findIndex((s) => s > SMALL_MAXCLASS);
export const LARGE_MINCLASS = SIZES[NBINS]!;
export const MAX_CLASS = SIZES[NSIZES - 1]!;

export function index2size(i: number): number {
  const s = SIZES[i];
  if (s === undefined) throw new RangeError(`size class index ${i} out of range 0..${NSIZES - 1}`);
  return s;
}

/** ceil(log2(x)) for x ≥ 1 (clz32 below 2^31, exact float check above). */
function lgCeil(x: number): number {
  if (x <= 0x8000_0000) return x <= 1 ? 0 : 32 - Math.clz32(x - 1);
  let lg = Math.ceil(Math.log2(x));
  if (2 ** lg < x) lg++;
  if (lg > 0 && 2 ** (lg - 1) >= x) lg--;
  return lg;
}

const NTINY = LG_QUANTUM - LG_TINY_MIN;

/**
 * Size → index of the smallest class holding it, computed as jemalloc's
 * sz_size2index_compute. Returns -1 below 1 or above the largest class.
 */
export function size2index(size: number): number {
  if (size <= LOOKUP_MAXCLASS && size >= 1) return LOOKUP[(size + 7) >>> 3]!;
  return size2indexCompute(size);
}

function size2indexCompute(size: number): number {
  if (size > 2 ** (LG_NGROUP + LG_QUANTUM + 1) && size <= 0x8000_0000) {
    // the same arithmetic in 32-bit integers (the large path is hot: every direct buffer of a decay-off pool)
    const x = 32 - Math.clz32(size - 1);
    return NTINY + (x - (LG_NGROUP + LG_QUANTUM)) * NGROUP + (((size - 1) >>> (x - LG_NGROUP - 1)) & (NGROUP - 1));
  }
  if (!(size >= 1) || size > MAX_CLASS) return -1;
  if (size <= 2 ** (LG_QUANTUM - 1)) {
    const lg = lgCeil(size);
    return lg < LG_TINY_MIN ? 0 : lg - LG_TINY_MIN;
  }
  const x = lgCeil(size);
  const shift = x < LG_NGROUP + LG_QUANTUM ? 0 : x - (LG_NGROUP + LG_QUANTUM);
  const grp = shift * NGROUP;
  const lgDelta = x < LG_NGROUP + LG_QUANTUM + 1 ? LG_QUANTUM : x - LG_NGROUP - 1;
  const mod = Math.floor((size - 1) / 2 ** lgDelta) % NGROUP;
  return NTINY + grp + mod;
}

/** Sizes up to 4 KiB map through a table indexed by (size + 7) >> 3, as jemalloc's sz_size2index_tab. */
const LOOKUP_MAXCLASS = 4096;
const LOOKUP = (() => {
  const t = new Uint8Array((LOOKUP_MAXCLASS >>> 3) + 1);
  for (let i = 1; i < t.length; i++) t[i] = size2indexCompute(i << 3);
  t[0] = 0;
  return t;
})();

/**
 * A key for the largest class of at most `pages` whole pages — the same
 * grid as above counted in pages (NGROUP classes per doubling:
 * 2^lg + n·2^(lg−LG_NGROUP) pages), so every class of whole pages has its
 * own key and a run of pages between two classes shares the lower one's.
 * Not an index into SIZES: integer arithmetic only, for the direct dirty
 * cache's lists on every direct alloc and free (a SIZES lookup there cost
 * about a third of the hit path).
 */
export function pageClassFloor(pages: number): number {
  const lg = 31 - Math.clz32(pages);
  return lg < LG_NGROUP ? pages - 1 : (lg << LG_NGROUP) + (pages >>> (lg - LG_NGROUP)) - NGROUP;
}

/** Usable size for a request: its class size (jemalloc sz_s2u), or -1. */
export function size2usize(size: number): number {
  if (size > LARGE_MINCLASS && size <= 0x8000_0000) {
    // a large class is the request rounded up to its group's delta, 2^(⌈log2 size⌉ − 3) (sz_s2u_compute)
    const delta = 1 << (29 - Math.clz32(size - 1));
    return Math.ceil(size / delta) * delta;
  }
  const i = size2index(size);
  return i < 0 ? -1 : SIZES[i]!;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Slab bytes for a small class: lcm(page, size). */
export function slabSize(ind: number): number {
  const s = index2size(ind);
  return (PAGE / gcd(PAGE, s)) * s;
}

/** Regions per slab for a small class. */
export function nregs(ind: number): number {
  return slabSize(ind) / index2size(ind);
}

export function isSmall(usize: number): boolean {
  return usize <= SMALL_MAXCLASS;
}

/**
 * Usable size for an aligned request (jemalloc sz_sa2u): small requests
 * with alignment up to a page round up to a class whose regions are
 * aligned; larger ones round up to a page-multiple class. -1 if too big.
 */
export function alignedUsize(size: number, alignment: number): number {
  if (alignment <= PAGE) {
    const u = size2usize(Math.ceil(size / alignment) * alignment);
    if (u > 0 && u < LARGE_MINCLASS) return u;
  }
  const u = size2usize(Math.max(size, LARGE_MINCLASS));
  return u;
}
