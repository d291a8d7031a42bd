/**
 * An id → slot table: integer keys (buffer ids) to small non-negative
 * integers (slot numbers), open addressing with linear probing in two typed
 * arrays, and deletion by shifting the following entries back (no
 * tombstones, so a table whose entries come and go — a buffer's journal
 * made at its allocation and retired at its free — never slows down or
 * rehashes for its deleted entries; a Map of the same traffic scans past
 * deleted entries and reallocates its table as it shrinks and grows).
 * Like jemalloc's ckh (src/ckh.c, ckh_insert/ckh_remove) a table of fixed
 * cells that doubles when it fills, but with one hash and linear probing.
 * Grows at half full; never shrinks (it is bounded by the most entries it
 * held at once).
 */

const EMPTY = -1;

export class IdTable {
  private keys = new Float64Array(16);
  private vals = new Int32Array(16).fill(EMPTY);
  private mask = 15;
  size = 0;

  private home(k: number): number {
    // Fibonacci hashing of the low 32 bits, mixed with the high ones
    return Math.imul((k | 0) ^ ((k / 4294967296) | 0), 0x9e3779b1) & this.mask;
  }

  /** The slot of `k`, or -1. */
  get(k: number): number {
    for (let i = this.home(k); ; i = (i + 1) & this.mask) {
      const v = this.vals[i]!;
      if (v === EMPTY || this.keys[i] === k) return v;
    }
  }

  /** Map `k` to `v` (v ≥ 0), replacing what it mapped to. */
  set(k: number, v: number): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    let i = this.home(k);
    while (this.vals[i] !== EMPTY && this.keys[i] !== k) i = (i + 1) & this.mask;
    if (this.vals[i] === EMPTY) this.size++;
    this.keys[i] = k;
    this.vals[i] = v;
  }

  /** Remove `k`; whether it was there. */
  delete(k: number): boolean {
    let i = this.home(k);
    for (; ; i = (i + 1) & this.mask) {
      const v = this.vals[i]!;
      if (v === EMPTY) return false;
      if (this.keys[i] === k) break;
    }
    this.vals[i] = EMPTY;
    this.size--;
    // shift back the entries after it that would no longer be found past the hole
    for (let j = (i + 1) & this.mask; this.vals[j] !== EMPTY; j = (j + 1) & this.mask) {
      const h = this.home(this.keys[j]!);
      // j may fill the hole at i unless its home lies cyclically in (i, j]
      const stays = i <= j ? h > i && h <= j : h > i || h <= j;
      if (stays) continue;
      this.keys[i] = this.keys[j]!;
      this.vals[i] = this.vals[j]!;
      this.vals[j] = EMPTY;
      i = j;
    }
    return true;
  }

  clear(): void {
    this.keys = new Float64Array(16);
    this.vals = new Int32Array(16).fill(EMPTY);
    this.mask = 15;
    this.size = 0;
  }

  private grow(): void {
    const { keys, vals } = this;
    this.keys = new Float64Array(keys.length * 2);
    this.vals = new Int32Array(keys.length * 2).fill(EMPTY);
    this.mask = keys.length * 2 - 1;
    this.size = 0;
    for (let i = 0; i < keys.length; i++) if (vals[i] !== EMPTY) this.set(keys[i]!, vals[i]!);
  }
}
