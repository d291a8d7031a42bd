/**
 * The earliest of several optional deadlines. Pure.
 */

/** The least non-null value of f over items, or null. */
export function earliest<T>(items: Iterable<T>, f: (x: T) => number | null): number | null {
  let d: number | null = null;
  for (const it of items) {
    const x = f(it);
    if (x !== null && (d === null || x < d)) d = x;
  }
  return d;
}
