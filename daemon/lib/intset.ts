/**
 * Sets and maps keyed by non-negative integers below 2^53 (page frame
 * numbers), with open addressing and linear probing.
 *
 * Why not Set/Map: V8's ordered hash tables leave a deleted entry in its
 * bucket's chain until the next rehash, so deleting and re-adding the same
 * key over and over (the buddy allocator's lowest free block, taken and
 * given back at every allocation) grows one chain by an entry per round:
 * 16,000 keys, one key deleted and re-added 20,000 times cost ≈ 50 µs a
 * round against 0.2 µs for distinct keys. Here a delete moves the entries
 * that follow back (backward-shift deletion, Knuth vol. 3 §6.4 algorithm
 * R), so no tombstone is left and every operation stays O(1) expected
 * whatever the pattern. Iteration order is the table's, not insertion
 * order. Pure.
 */

const EMPTY = -1;

/**
 * Fibonacci hashing of an integer key to the table's bits: the top bits of
 * key × 2^32/φ (keys above 2^32 fold their high part in first). The top
 * bits, not the low ones: pfns of large blocks share many low zero bits.
 */
function slotOf(key: number, mask: number): number {
  const lo = key >>> 0;
  const hi = (key - lo) / 0x1_0000_0000;
  return (Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1) >>> Math.clz32(mask)) & mask;
}

export class IntSet implements Iterable<number> {
  protected keys: Float64Array;
  protected mask: number;
  private size_ = 0;

  constructor(capacity = 8) {
    let n = 8;
    while (n < capacity * 2) n *= 2;
    this.keys = new Float64Array(n).fill(EMPTY);
    this.mask = n - 1;
  }

  get size(): number {
    return this.size_;
  }

  /** Slot of `key`, or −1. */
  protected find(key: number): number {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = slotOf(key, mask); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === EMPTY) return -1;
    }
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  /** Add `key`; returns its slot. */
  protected insert(key: number): number {
    if ((this.size_ + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys;
    const mask = this.mask;
    let i = slotOf(key, mask);
    for (; ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === EMPTY) break;
    }
    keys[i] = key;
    this.size_++;
    return i;
  }

  add(key: number): this {
    this.insert(key);
    return this;
  }

  delete(key: number): boolean {
    const i = this.find(key);
    if (i < 0) return false;
    this.removeAt(i);
    return true;
  }

  /** Empty slot i and shift back the entries of its probe run that may move into it. */
  protected removeAt(i: number): void {
    const keys = this.keys;
    const mask = this.mask;
    let hole = i;
    for (let j = (i + 1) & mask; keys[j] !== EMPTY; j = (j + 1) & mask) {
      const home = slotOf(keys[j]!, mask);
      // j's entry may fill the hole unless its home lies cyclically in (hole, j]
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      keys[hole] = keys[j]!;
      this.moved(j, hole);
      hole = j;
    }
    keys[hole] = EMPTY;
    this.cleared(hole);
    this.size_--;
  }

  /** A subclass's values follow their keys. */
  protected moved(_from: number, _to: number): void {}
  protected cleared(_at: number): void {}

  protected grow(): void {
    const old = this.keys;
    const oldValues = this.detachValues(old.length * 2);
    this.keys = new Float64Array(old.length * 2).fill(EMPTY);
    this.mask = this.keys.length - 1;
    this.size_ = 0;
    for (let i = 0; i < old.length; i++) {
      if (old[i] !== EMPTY) this.rehashed(this.insert(old[i]!), i, oldValues);
    }
  }

  protected detachValues(_capacity: number): unknown {
    return null;
  }
  protected rehashed(_to: number, _from: number, _oldValues: unknown): void {}

  clear(): void {
    this.keys.fill(EMPTY);
    this.cleared(-1);
    this.size_ = 0;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY) yield keys[i]!;
  }
}

/** An IntSet with a value per key. */
export class IntMap<V> extends IntSet {
  private values: (V | undefined)[];

  constructor(capacity = 8) {
    super(capacity);
    this.values = new Array<V | undefined>(this.keys.length);
  }

  get(key: number): V | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.values[i];
  }

  set(key: number, value: V): this {
    // (insert first: it may grow the table and replace this.values)
    const i = this.insert(key);
    this.values[i] = value;
    return this;
  }

  protected override moved(from: number, to: number): void {
    this.values[to] = this.values[from];
  }

  protected override cleared(at: number): void {
    if (at < 0) this.values.fill(undefined);
    else this.values[at] = undefined;
  }

  protected override detachValues(capacity: number): unknown {
    const old = this.values;
    this.values = new Array<V | undefined>(capacity);
    return old;
  }

  protected override rehashed(to: number, from: number, oldValues: unknown): void {
    this.values[to] = (oldValues as (V | undefined)[])[from];
  }

  *valuesIter(): IterableIterator<V> {
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== EMPTY) yield this.values[i]!;
  }
}
