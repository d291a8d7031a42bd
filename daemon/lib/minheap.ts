/**
 * A binary min-heap of non-negative integers (page frame numbers), used for
 * lowest-address-first selection. Deletion is lazy: callers keep the truth in
 * a Set and skip popped values that are no longer in it.
 */
export class MinHeap {
  private a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= v) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }

  peek(): number | undefined {
    return this.a[0];
  }

  pop(): number | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      const n = a.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && a[r]! < a[l]! ? r : l;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }

  /** Replace the contents (heapify in O(n)). */
  reset(values: Iterable<number>): void {
    this.a = [...values].sort((x, y) => x - y);
  }
}

/** An entry of a KeyedHeap: its key and where it sits (-1: not in a heap). */
export interface HeapEntry {
  key: number;
  heapIndex: number;
}

/**
 * A binary min-heap of entries ordered by `key`, with O(log n) removal of
 * any entry (each entry knows its index), for deadlines that are cancelled
 * (a token imported before it expires). Peek is O(1).
 */
export class KeyedHeap<T extends HeapEntry> {
  private readonly a: T[] = [];

  get size(): number {
    return this.a.length;
  }

  peek(): T | undefined {
    return this.a[0];
  }

  push(e: T): void {
    e.heapIndex = this.a.length;
    this.a.push(e);
    this.up(e.heapIndex);
  }

  pop(): T | undefined {
    const top = this.a[0];
    if (top !== undefined) this.remove(top);
    return top;
  }

  /** Remove an entry wherever it is (a no-op if it is not in the heap). */
  remove(e: T): void {
    const i = e.heapIndex;
    if (i < 0 || this.a[i] !== e) return;
    const last = this.a.pop()!;
    e.heapIndex = -1;
    if (last === e) return;
    this.a[i] = last;
    last.heapIndex = i;
    this.up(i);
    this.down(last.heapIndex);
  }

  private up(i: number): void {
    const a = this.a;
    const e = a[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.key <= e.key) break;
      a[i] = a[p]!;
      a[i]!.heapIndex = i;
      i = p;
    }
    a[i] = e;
    e.heapIndex = i;
  }

  private down(i: number): void {
    const a = this.a;
    const n = a.length;
    const e = a[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && a[r]!.key < a[l]!.key ? r : l;
      if (a[c]!.key >= e.key) break;
      a[i] = a[c]!;
      a[i]!.heapIndex = i;
      i = c;
    }
    a[i] = e;
    e.heapIndex = i;
  }
}
