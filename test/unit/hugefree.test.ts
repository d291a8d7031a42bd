/**
 * daemon/memory/hugefree.ts: a hugepage pool's free list, against the
 * plain model it replaced — a sorted array of pfns and a map of
 * attributes — under random frees and takes: the same pages in the same
 * order (preferred policy first, lowest first, then the lowest others, at
 * or above a floor), the same runs of adjacent pages, counts and highest.
 */
import t from 'tap';
import fc from 'fast-check';
import { HugeFreeList, type Hugepage } from '../../daemon/memory/hugefree.js';
import { CACHE_POLICIES, type CachePolicy } from '../../daemon/memory/layout.js';

const PER = 512; // 2 MiB hugepages of 4 KiB frames
const START = 3 * PER + 0; // the region starts at hugepage 3
const SLOTS = 80;

/** The model: the old free list (sorted pfns) and attributes. */
class Model {
  list: number[] = [];
  attrs = new Map<number, CachePolicy>();
  add(pfn: number, attr: CachePolicy): void {
    this.list.push(pfn);
    this.list.sort((a, b) => a - b);
    this.attrs.set(pfn, attr);
  }
  take(n: number, prefer: CachePolicy, minPfn: number): Hugepage[] {
    const above = this.list.filter((p) => p >= minPfn);
    const pref = above.filter((p) => this.attrs.get(p) === prefer).slice(0, n);
    const others = above.filter((p) => !pref.includes(p)).slice(0, n - pref.length);
    const out = [...pref, ...others].map((pfn) => ({ pfn, attr: this.attrs.get(pfn)! }));
    for (const p of out) {
      this.list.splice(this.list.indexOf(p.pfn), 1);
      this.attrs.delete(p.pfn);
    }
    return out;
  }
  run(n: number, minPfn: number): number {
    const above = this.list.filter((p) => p >= minPfn);
    for (let i = 0; i + n <= above.length; i++) if (above[i + n - 1]! - above[i]! === (n - 1) * PER) return above[i]!;
    return -1;
  }
  largestRun(): number {
    let best = 0;
    for (let i = 0; i < this.list.length; i++) {
      let j = i;
      while (j + 1 < this.list.length && this.list[j + 1] === this.list[j]! + PER) j++;
      best = Math.max(best, j - i + 1);
    }
    return best;
  }
}

const policy = fc.constantFrom(...CACHE_POLICIES);
const op = fc.oneof(
  fc.tuple(fc.constant('free' as const), fc.integer({ min: 0, max: SLOTS - 1 }), policy),
  fc.tuple(fc.constant('take' as const), fc.integer({ min: 1, max: 6 }), policy, fc.integer({ min: 0, max: SLOTS })),
  fc.tuple(fc.constant('run' as const), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: SLOTS })),
);

t.test('property: HugeFreeList takes, runs and counts exactly as the sorted-array free list', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const f = new HugeFreeList(START, START + SLOTS * PER, PER);
        const m = new Model();
        const pfn = (slot: number) => START + slot * PER;
        for (const o of ops) {
          if (o[0] === 'free') {
            if (m.attrs.has(pfn(o[1]))) continue;
            f.add(pfn(o[1]), o[2]);
            m.add(pfn(o[1]), o[2]);
          } else if (o[0] === 'take') {
            const min = pfn(o[3]);
            const n = Math.min(o[1], m.list.filter((p) => p >= min).length);
            if (f.countFrom(min) !== m.list.filter((p) => p >= min).length) throw new Error('countFrom');
            const got = f.takeLowest(n, o[2], min);
            const want = m.take(n, o[2], min);
            if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`take ${JSON.stringify(o)}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
          } else if (f.findRun(o[1], pfn(o[2])) !== m.run(o[1], pfn(o[2]))) throw new Error(`run ${JSON.stringify(o)}`);
          if (f.size !== m.list.length || f.last() !== (m.list.at(-1) ?? -1) || f.largestRun() !== m.largestRun()) throw new Error('size/last/largestRun');
          if (JSON.stringify(f.pages()) !== JSON.stringify(m.list.map((p) => ({ pfn: p, attr: m.attrs.get(p) })))) throw new Error('pages');
        }
        return true;
      }),
      { numRuns: 300 },
    ),
  );
});

t.test('a page freed twice or taken when not free is an error, not a silent change', async (t) => {
  const f = new HugeFreeList(0, 8 * PER, PER);
  f.add(PER, 'uncached');
  t.throws(() => f.add(PER, 'writeback'), /already free/);
  t.equal(f.remove(PER), 'uncached');
  t.throws(() => f.remove(PER), /not free/);
  t.equal(f.next(0), -1);
  t.equal(f.last(), -1);
  t.equal(f.countFrom(PER), 0);
});
