/**
 * The size classes, restating jemalloc's own tests (test/unit/size_classes.c,
 * test/unit/sz.c and the slab geometry checks of test/unit/slab.c) for a
 * 16-byte quantum and 4 KiB pages.
 */
import t from 'tap';
import fc from 'fast-check';
import {
  SIZES,
  NSIZES,
  NBINS,
  SMALL_MAXCLASS,
  LARGE_MINCLASS,
  MAX_CLASS,
  PAGE,
  index2size,
  size2index,
  size2usize,
  slabSize,
  nregs,
  isSmall,
  alignedUsize,
  pageClassFloor,
} from '../../daemon/alloc/sizeclasses.js';

const KiB = 1024;
const GiB = 2 ** 30;

/** The class a size belongs to, found the slow way: the smallest class ≥ size. */
function slowIndex(size: number): number {
  if (!(size >= 1) || size > MAX_CLASS) return -1;
  let lo = 0;
  let hi = NSIZES - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (SIZES[mid]! >= size) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

t.test('the table: 8, then four classes per doubling, up to 64 GiB', async (t) => {
  t.same(SIZES.slice(0, 22), [8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280]);
  t.same(SIZES.slice(29, 40), [5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672]);
  t.equal(MAX_CLASS, 64 * GiB);
  t.equal(SIZES[NSIZES - 1], 64 * GiB);
  for (let i = 1; i < NSIZES; i++) t.ok(SIZES[i]! > SIZES[i - 1]!, `strictly increasing at ${i}`);
  // every power of two from 64 up closes a group of four equally spaced classes
  let groups = 0;
  for (let lg = 6; lg <= 36; lg++) {
    const top = 2 ** lg;
    const i = SIZES.indexOf(top);
    t.ok(i >= 4, `2^${lg} is a class`);
    const delta = top / 2 / 4 < 16 ? 16 : top / 2 / 4;
    const grp = SIZES.slice(i - 3, i + 1);
    t.same(grp, [top - 3 * delta, top - 2 * delta, top - delta, top], `group ending at 2^${lg}`);
    groups++;
  }
  t.equal(groups, 31);
  t.equal(NSIZES, 1 + 4 * 31, 'one tiny class, then 31 groups of four (16..64 up to 48G..64G)');
  // every class above the tiny one is a multiple of the quantum
  for (const s of SIZES.slice(1)) if (s % 16 !== 0) t.fail(`class ${s} is not a multiple of the quantum`);
});

t.test('small bins: 36 of them, SMALL_MAXCLASS 14336, large from 16 KiB', async (t) => {
  t.equal(NBINS, 36);
  t.equal(SMALL_MAXCLASS, 14336);
  t.equal(SIZES[NBINS - 1], SMALL_MAXCLASS);
  t.equal(LARGE_MINCLASS, 16 * KiB);
  t.ok(isSmall(14336));
  t.notOk(isSmall(14337));
  t.notOk(isSmall(LARGE_MINCLASS));
  // large classes are whole pages
  for (let i = NBINS; i < NSIZES; i++) if (SIZES[i]! % PAGE !== 0) t.fail(`large class ${SIZES[i]} is not a page multiple`);
  t.pass('large classes are page multiples');
});

t.test('size2index(index2size(i)) === i for every index', async (t) => {
  let bad = 0;
  for (let i = 0; i < NSIZES; i++) {
    if (size2index(index2size(i)) !== i) {
      bad++;
      t.fail(`index ${i}: size ${index2size(i)} maps to ${size2index(index2size(i))}`);
    }
    if (size2usize(index2size(i)) !== index2size(i)) t.fail(`usize of class ${index2size(i)}`);
  }
  t.equal(bad, 0);
  t.throws(() => index2size(-1), RangeError);
  t.throws(() => index2size(NSIZES), RangeError);
});

t.test('sizes just below, at and just above each class map to the right class', async (t) => {
  let checked = 0;
  for (let i = 0; i < NSIZES; i++) {
    const s = SIZES[i]!;
    for (const x of [s - 1, s, s + 1]) {
      if (x < 1 || x > MAX_CLASS) continue;
      const want = slowIndex(x);
      const got = size2index(x);
      if (got !== want) t.fail(`size ${x}: index ${got}, want ${want}`);
      if (size2usize(x) !== SIZES[want]) t.fail(`size ${x}: usize ${size2usize(x)}`);
      checked++;
    }
  }
  t.equal(checked, 3 * NSIZES - 1, 'every neighbour checked (none above 64 GiB)');
  // every size up to 64 KiB, and random ones beyond
  for (let x = 1; x <= 65536; x++) if (size2index(x) !== slowIndex(x)) t.fail(`size ${x}`);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: MAX_CLASS }), (x) => size2index(x) === slowIndex(x)),
    { seed: 11, numRuns: 2000 },
  );
  t.pass('dense and random sizes');
});

t.test('0, negative, non-numbers and sizes over 64 GiB are refused', async (t) => {
  for (const x of [0, -1, -4096, NaN, MAX_CLASS + 1, MAX_CLASS + PAGE, 2 ** 40, Infinity]) {
    t.equal(size2index(x), -1, `size2index(${x})`);
    t.equal(size2usize(x), -1, `size2usize(${x})`);
  }
  t.equal(size2index(MAX_CLASS), NSIZES - 1);
  t.equal(alignedUsize(MAX_CLASS + 1, 1), -1);
  t.equal(alignedUsize(MAX_CLASS + 1, 2 * 1024 * 1024), -1);
});

t.test('slabs: lcm(page, size), no tail waste, least such size', async (t) => {
  for (let i = 0; i < NBINS; i++) {
    const size = SIZES[i]!;
    const slab = slabSize(i);
    if (slab % size !== 0 || slab % PAGE !== 0) t.fail(`class ${size}: slab ${slab} leaves tail waste or is not whole pages`);
    // least: no smaller page multiple is a multiple of the size
    for (let p = PAGE; p < slab; p += PAGE) if (p % size === 0) t.fail(`class ${size}: ${p} would do, slab is ${slab}`);
    t.equal(nregs(i), slab / size);
  }
  t.equal(slabSize(size2index(64)), PAGE);
  t.equal(nregs(size2index(64)), 64);
  t.equal(slabSize(size2index(112)), 7 * PAGE, '112 = 7 × 16: 7 pages');
  t.equal(nregs(size2index(112)), 256);
  t.equal(slabSize(size2index(14336)), 7 * PAGE, '14336 = 3.5 pages: 7 pages hold 2');
  t.equal(nregs(size2index(14336)), 2);
  t.equal(slabSize(size2index(10240)), 5 * PAGE);
  t.equal(nregs(size2index(8)), 512);
  // the biggest slab of all is 7 pages (classes of 7 × 2^k)
  t.equal(Math.max(...Array.from({ length: NBINS }, (_, i) => slabSize(i))), 7 * PAGE);
});

t.test('internal fragmentation is at most 20% above 128 B', async (t) => {
  // over the class table: the worst request of a class is the previous class + 1
  let worst = 0;
  for (let i = 1; i < NSIZES; i++) {
    const req = SIZES[i - 1]! + 1;
    if (req <= 128) continue;
    const u = size2usize(req);
    t.equal(u, SIZES[i], `previous class + 1 = ${req} lands in class ${SIZES[i]}`);
    const frag = (u - req) / u;
    worst = Math.max(worst, frag);
    if (frag > 0.2) t.fail(`request ${req}: usize ${u}, ${(frag * 100).toFixed(1)}% waste`);
  }
  t.ok(worst > 0.19 && worst <= 0.2, `worst case ${(worst * 100).toFixed(2)}% (e.g. 129 → 160)`);
  // a dense sweep
  for (let x = 129; x <= 70000; x++) {
    const u = size2usize(x);
    if (u < x || (u - x) / u > 0.2) t.fail(`request ${x}: usize ${u}`);
  }
  t.pass('129..70000');
  fc.assert(
    fc.property(fc.integer({ min: 129, max: MAX_CLASS }), (x) => {
      const u = size2usize(x);
      return u >= x && (u - x) / u <= 0.2;
    }),
    { seed: 11, numRuns: 5000 },
  );
  t.pass('random large sizes');
  // below 128 the tiny/quantum classes can waste more (e.g. 17 → 32), as in jemalloc
  t.equal(size2usize(17), 32);
  t.equal(size2usize(9), 16);
  t.equal(size2usize(1), 8);
});

t.test('alignedUsize: at least size, and aligned regions', async (t) => {
  for (let lgA = 0; lgA <= 12; lgA++) {
    const a = 2 ** lgA;
    for (let size = 1; size <= 3 * LARGE_MINCLASS; size += size < 1024 ? 1 : 37) {
      const u = alignedUsize(size, a);
      if (u < size) t.fail(`size ${size} align ${a}: usize ${u} < size`);
      if (u % a !== 0) t.fail(`size ${size} align ${a}: usize ${u} is not a multiple of the alignment`);
      if (size2index(u) < 0 || SIZES[size2index(u)] !== u) t.fail(`size ${size} align ${a}: usize ${u} is not a class`);
      // small results are small classes whose every region is aligned in a page-aligned slab
      if (u <= SMALL_MAXCLASS) {
        const n = nregs(size2index(u));
        for (let r = 0; r < n; r++) if ((r * u) % a !== 0) t.fail(`class ${u} region ${r} not aligned to ${a}`);
      } else if (u % PAGE !== 0) t.fail(`large usize ${u} not a page multiple`);
    }
  }
  t.pass('sizes 1..48K with alignments 1..4096');
  // alignment 1 changes nothing
  for (let x = 1; x <= 20000; x++) if (alignedUsize(x, 1) !== size2usize(x)) t.fail(`alignedUsize(${x}, 1)`);
  t.equal(alignedUsize(1, 16), 16);
  t.equal(alignedUsize(1, 64), 64);
  t.equal(alignedUsize(65, 64), 128);
  t.equal(alignedUsize(100, 4096), 4096);
  t.equal(alignedUsize(4097, 4096), 8192);
  t.equal(alignedUsize(12289, 4096), LARGE_MINCLASS, 'would be 16 KiB: large');
  // above a page, alignment comes from the extent: a large class is returned
  t.equal(alignedUsize(1, 8192), LARGE_MINCLASS);
  t.equal(alignedUsize(100, 65536), LARGE_MINCLASS);
  t.equal(alignedUsize(20000, 65536), 20480);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 34 }), fc.integer({ min: 0, max: 21 }), (size, lg) => {
      const u = alignedUsize(size, 2 ** lg);
      return u >= size && (lg > 12 ? u >= LARGE_MINCLASS && u % PAGE === 0 : u % 2 ** lg === 0);
    }),
    { seed: 11, numRuns: 3000 },
  );
  t.pass('random sizes and alignments');
});

t.test('pageClassFloor: one key per class of whole pages, pages between two classes share the lower one', async (t) => {
  const pageClasses = SIZES.filter((s) => s % PAGE === 0 && s <= 2 ** 34).map((s) => s / PAGE);
  const keys = pageClasses.map(pageClassFloor);
  for (let i = 1; i < keys.length; i++) if (!(keys[i]! > keys[i - 1]!)) t.fail(`class of ${pageClasses[i]} pages: key ${keys[i]} not above ${keys[i - 1]}`);
  let bad = 0;
  for (let i = 0; i + 1 < pageClasses.length && pageClasses[i]! < 5000; i++) {
    for (let p = pageClasses[i]!; p < pageClasses[i + 1]!; p++) if (pageClassFloor(p) !== keys[i]) bad++;
  }
  t.equal(bad, 0, 'every page count up to 5000 pages keys to the largest class it holds');
  t.equal(keys.length, new Set(keys).size, `${keys.length} classes, as many keys`);
});
