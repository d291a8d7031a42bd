/**
 * The kernel's scatter allocation, written independently of bufferd's code
 * for tests: drivers/dma-buf/heaps/system_heap.c system_heap_allocate()
 * calls alloc_largest_available() until the size is met; each call tries the
 * orders from the largest that fits what is left and is no larger than the
 * last one taken (max_order), and alloc_pages() walks the zonelist (highest
 * zone first) for each order; the buddy (mm/page_alloc.c __rmqueue_smallest
 * and expand) takes the smallest free block of at least that order and puts
 * the split-off halves, one per lower order, back on the free lists.
 *
 * Works on free-block counts only: counts[zone][order], highest zone first.
 * Returns the orders taken, in order.
 */
export function largestFirstOrders(counts: number[][], npages: number, maxOrder: number): number[] {
  const c = counts.map((z) => [...z]);
  const out: number[] = [];
  let left = npages;
  let cap = maxOrder;
  while (left > 0) {
    let took = false;
    for (let o = cap; o >= 0 && !took; o--) {
      if (2 ** o > left) continue;
      for (const z of c) {
        let q = o;
        while (q < z.length && !(z[q]! > 0)) q++;
        if (q >= z.length) continue;
        z[q]!--;
        for (let r = o; r < q; r++) z[r] = (z[r] ?? 0) + 1;
        out.push(o);
        left -= 2 ** o;
        cap = o;
        took = true;
        break;
      }
    }
    if (!took) throw new Error(`largestFirstOrders: ${left} pages left and nothing free`);
  }
  return out;
}

/**
 * Do the extents (blocks joined where adjacent) spell out exactly these
 * block orders in this order, each block naturally aligned? Returns the
 * first mismatch, or null.
 */
export function matchesOrders(extents: { pfn: number; npages: number }[], orders: number[]): string | null {
  let i = 0;
  for (const e of extents) {
    let p = e.pfn;
    while (p < e.pfn + e.npages) {
      const o = orders[i];
      if (o === undefined) return `extent at pfn ${e.pfn} goes past the ${orders.length} expected blocks`;
      if (p % 2 ** o !== 0) return `block ${i} (order ${o}) at pfn ${p} is not aligned`;
      p += 2 ** o;
      i++;
    }
    if (p !== e.pfn + e.npages) return `extent at pfn ${e.pfn} ends inside block ${i - 1}`;
  }
  return i === orders.length ? null : `${orders.length - i} expected blocks missing`;
}
