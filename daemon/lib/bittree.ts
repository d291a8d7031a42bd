/**
 * A set of integers in [0, n) as a hierarchical bitmap: level 0 has one
 * bit per position, and each level above has one bit per word (32 bits) of
 * the level below, set while that word is not zero, up to a single word.
 * The lowest member, or the lowest at or above a position, is found by
 * walking down from the top word with count-trailing-zeros: O(log32 n)
 * word reads, about 3 for a 16,384-position bitmap and 7 for 2^32. Adding
 * and deleting touch one word per level at most (usually one).
 *
 * The buddy allocator keeps one per order for its free lists (buddy.ts):
 * lowest-address-first selection with no heap to sift and no hash to probe,
 * and "the first free block at or above a page frame" for placement.
 *
 * Words live in chunks of 1024 (4 KiB; a smaller level in one chunk of its
 * size) made when a bit in them is first set, so a bitmap over a huge zone costs memory only where members are:
 * a chunk directory per level (n / 32,768 entries at level 0) plus the
 * chunks touched. Positions up to 2^37. Pure.
 */

const CHUNK_SHIFT = 10;
const CHUNK_MASK = (1 << CHUNK_SHIFT) - 1;
/** Positions at most (word indexes stay below 2^32). */
export const BITTREE_MAX = 2 ** 37;

/** Index of the lowest set bit of a non-zero 32-bit word. */
function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

type Dir = (Uint32Array | undefined)[];

export class BitTree implements Iterable<number> {
  readonly n: number;
  /** levels[k][chunk][word]: level 0 the members, the last level one word. */
  private readonly levels: Dir[] = [];
  /** Words per chunk of each level: 1024, or the whole level when smaller (a 16-word level costs 64 bytes, not 4 KiB). */
  private readonly chunkWords: number[] = [];
  private size_ = 0;

  constructor(n: number) {
    if (!Number.isSafeInteger(n) || n < 0 || n > BITTREE_MAX) throw new RangeError(`BitTree of ${n} positions (0..${BITTREE_MAX})`);
    this.n = n;
    let words = Math.max(1, Math.ceil(n / 32));
    for (;;) {
      this.levels.push(new Array<Uint32Array | undefined>(Math.ceil(words / (CHUNK_MASK + 1))).fill(undefined));
      this.chunkWords.push(Math.min(words, CHUNK_MASK + 1));
      if (words === 1) break;
      words = Math.ceil(words / 32);
    }
  }

  get size(): number {
    return this.size_;
  }

  private word(k: number, w: number): number {
    const c = this.levels[k]![w >>> CHUNK_SHIFT];
    return c === undefined ? 0 : c[w & CHUNK_MASK]!;
  }

  has(i: number): boolean {
    if (!(i >= 0 && i < this.n)) return false;
    return (this.word(0, Math.floor(i / 32)) & (1 << (i & 31))) !== 0;
  }

  /** Add i; false when it was already there. */
  add(i: number): boolean {
    if (!(i >= 0 && i < this.n) || !Number.isInteger(i)) throw new RangeError(`BitTree.add(${i}) outside 0..${this.n - 1}`);
    let w = Math.floor(i / 32);
    let bit = 1 << (i & 31);
    const levels = this.levels;
    for (let k = 0; k < levels.length; k++) {
      const dir = levels[k]!;
      let c = dir[w >>> CHUNK_SHIFT];
      if (c === undefined) c = dir[w >>> CHUNK_SHIFT] = new Uint32Array(this.chunkWords[k]!);
      const j = w & CHUNK_MASK;
      const old = c[j]!;
      if (k === 0) {
        if ((old & bit) !== 0) return false;
        this.size_++;
      }
      c[j] = old | bit;
      // the word above already marks this one as not empty
      if (old !== 0) break;
      bit = 1 << (w & 31);
      w = w >>> 5;
    }
    return true;
  }

  /** Delete i; false when it was not there. */
  delete(i: number): boolean {
    if (!(i >= 0 && i < this.n)) return false;
    let w = Math.floor(i / 32);
    let bit = 1 << (i & 31);
    const levels = this.levels;
    for (let k = 0; k < levels.length; k++) {
      const c = levels[k]![w >>> CHUNK_SHIFT];
      if (c === undefined) return false;
      const j = w & CHUNK_MASK;
      const old = c[j]!;
      if (k === 0) {
        if ((old & bit) === 0) return false;
        this.size_--;
      }
      const now = old & ~bit;
      c[j] = now;
      // the word still has members: the levels above stay as they are
      if (now !== 0) break;
      bit = 1 << (w & 31);
      w = w >>> 5;
    }
    return true;
  }

  /** The lowest member, or −1. */
  first(): number {
    if (this.size_ === 0) return -1;
    let p = 0;
    for (let k = this.levels.length - 1; k >= 0; k--) p = p * 32 + ctz32(this.word(k, p));
    return p;
  }

  /** The highest member, or −1. */
  last(): number {
    if (this.size_ === 0) return -1;
    let p = 0;
    for (let k = this.levels.length - 1; k >= 0; k--) p = p * 32 + (31 - Math.clz32(this.word(k, p)));
    return p;
  }

  /** The lowest member at or above i, or −1. */
  next(i: number): number {
    if (i <= 0) return this.first();
    if (this.size_ === 0 || i >= this.n) return -1;
    const top = this.levels.length - 1;
    let k = 0;
    let p = Math.ceil(i);
    // up: the first level whose word holds a member after the position
    for (;;) {
      const w = Math.floor(p / 32);
      const word = this.word(k, w) & (-1 << (p & 31));
      if (word !== 0) {
        p = w * 32 + ctz32(word);
        break;
      }
      if (k === top) return -1;
      k++;
      p = w + 1;
    }
    // down: the lowest member under it
    while (k > 0) {
      k--;
      p = p * 32 + ctz32(this.word(k, p));
    }
    return p;
  }

  /** Remove every member. */
  clear(): void {
    for (const dir of this.levels) dir.fill(undefined);
    this.size_ = 0;
  }

  /** Members in ascending order. */
  *[Symbol.iterator](): Iterator<number> {
    for (let i = this.first(); i >= 0; i = this.next(i + 1)) yield i;
  }
}
