/**
 * daemon/lib/bittree.ts: the hierarchical bitmap behind the buddy
 * allocator's free lists, against a sorted model under random operations
 * (membership, size, lowest, highest, lowest at or above a position, ascending
 * iteration), over sizes that need one to seven levels, with members
 * clustered at word and chunk edges where the levels above must follow.
 */
import t from 'tap';
import fc from 'fast-check';
import { BitTree, BITTREE_MAX } from '../../daemon/lib/bittree.js';

const SIZES = [1, 31, 32, 33, 1024, 32 * 1024 + 5, 2 ** 20 + 7, 2 ** 32];

/** Positions near word (32), chunk (32,768 at level 0) and level edges, and anywhere. */
function position(n: number): fc.Arbitrary<number> {
  const edges = [0, 31, 32, 33, 1023, 1024, 32767, 32768, 32769, 2 ** 20, n - 33, n - 32, n - 1].filter((x) => x >= 0 && x < n);
  return fc.oneof(fc.constantFrom(...edges), fc.integer({ min: 0, max: n - 1 }));
}

const lowestFrom = (ref: Set<number>, i: number): number => {
  let best = -1;
  for (const x of ref) if (x >= i && (best < 0 || x < best)) best = x;
  return best;
};

t.test('property: BitTree behaves as a sorted set (add, delete, has, size, first, last, next, iteration)', async (t) => {
  for (const n of SIZES) {
    t.doesNotThrow(
      () =>
        fc.assert(
          fc.property(fc.array(fc.tuple(fc.constantFrom('add', 'add', 'delete', 'next'), position(n)), { maxLength: 300 }), (ops) => {
            const b = new BitTree(n);
            const ref = new Set<number>();
            for (const [op, i] of ops) {
              if (op === 'add') {
                if (b.add(i) !== !ref.has(i)) throw new Error(`add ${i}`);
                ref.add(i);
              } else if (op === 'delete') {
                if (b.delete(i) !== ref.has(i)) throw new Error(`delete ${i}`);
                ref.delete(i);
              } else if (b.next(i) !== lowestFrom(ref, i)) throw new Error(`next(${i}) = ${b.next(i)}, want ${lowestFrom(ref, i)}`);
              if (b.has(i) !== ref.has(i) || b.size !== ref.size) throw new Error(`has/size after ${op} ${i}`);
              if (b.first() !== lowestFrom(ref, 0)) throw new Error(`first after ${op} ${i}`);
              if (b.last() !== (ref.size === 0 ? -1 : Math.max(...ref))) throw new Error(`last after ${op} ${i}`);
            }
            const sorted = [...ref].sort((x, y) => x - y);
            if (JSON.stringify([...b]) !== JSON.stringify(sorted)) throw new Error('iteration');
            b.clear();
            return b.size === 0 && b.first() === -1 && [...b].length === 0;
          }),
          { numRuns: n > 2 ** 20 ? 40 : 100 },
        ),
      `${n} positions`,
    );
  }
});

t.test('a full bitmap empties in order, and the levels above follow every word', async (t) => {
  const n = 70_000;
  const b = new BitTree(n);
  for (let i = 0; i < n; i++) b.add(i);
  t.equal(b.size, n);
  let ok = true;
  for (let i = 0; i < n; i++) {
    if (b.first() !== i) ok = false;
    b.delete(i);
  }
  t.ok(ok, 'first() walks 0, 1, 2, … as members go');
  t.equal(b.first(), -1);
  t.equal(b.next(5), -1);
  b.add(n - 1);
  t.equal(b.next(0), n - 1, 'one member at the far end is found from the start');
  t.equal(b.next(n - 1), n - 1);
  t.equal(b.next(n), -1, 'past the end');
});

t.test('edges: bad positions are refused or absent, sizes out of range throw', async (t) => {
  const b = new BitTree(100);
  t.throws(() => b.add(100), RangeError);
  t.throws(() => b.add(-1), RangeError);
  t.throws(() => b.add(1.5), RangeError);
  t.equal(b.delete(100), false);
  t.equal(b.delete(-1), false);
  t.equal(b.has(1000), false);
  t.equal(b.has(-3), false);
  t.throws(() => new BitTree(BITTREE_MAX + 1), RangeError);
  t.throws(() => new BitTree(-1), RangeError);
  const empty = new BitTree(0);
  t.equal(empty.first(), -1);
  t.equal(empty.next(0), -1);
  t.same([...empty], []);
});

t.test('memory follows the members: a 2^32-position bitmap makes chunks only where bits are set', async (t) => {
  const b = new BitTree(2 ** 32);
  const before = process.memoryUsage().arrayBuffers;
  for (let k = 0; k < 64; k++) b.add(k * 2 ** 26);
  const grown = process.memoryUsage().arrayBuffers - before;
  // 64 members far apart: 64 level-0 chunks and a few above, 4 KiB each
  t.ok(grown < 2 * 1024 * 1024, `64 scattered members cost ${grown} bytes of chunks`);
  t.same([...b].slice(0, 3), [0, 2 ** 26, 2 ** 27]);
  t.equal(b.next(2 ** 26 + 1), 2 ** 27);
});
