/**
 * daemon/lib/intset.ts: open-addressing sets and maps of integer keys,
 * against Set and Map under random operations (keys up to 2^41, the same
 * key deleted and re-added over and over, growth), and the property they
 * exist for: deleting and re-adding one key leaves no tombstone behind.
 */
import t from 'tap';
import fc from 'fast-check';
import { IntMap, IntSet } from '../../daemon/lib/intset.js';

const key = fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 70 }).map((k) => k * 1024 + 2 ** 40), fc.nat());
const op = fc.tuple(fc.constantFrom('set', 'delete', 'set', 'clear-rarely'), key);

t.test('property: IntMap and IntSet behave as Map and Set (membership, values, size, iteration)', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const m = new IntMap<{ k: number }>();
        const s = new IntSet();
        const ref = new Map<number, { k: number }>();
        ops.forEach(([o, k], i) => {
          if (o === 'set') {
            const v = { k };
            m.set(k, v);
            s.add(k);
            ref.set(k, v);
          } else if (o === 'delete') {
            const want = ref.delete(k);
            if (m.delete(k) !== want || s.delete(k) !== want) throw new Error(`delete ${k} at ${i}`);
          } else if (i % 97 === 0) {
            m.clear();
            s.clear();
            ref.clear();
          }
          if (m.size !== ref.size || s.size !== ref.size) throw new Error(`size at ${i}`);
        });
        for (const [k, v] of ref) if (m.get(k) !== v || !s.has(k) || !m.has(k)) return false;
        if ([...s].sort((a, b) => a - b).join() !== [...ref.keys()].sort((a, b) => a - b).join()) return false;
        if ([...m.valuesIter()].length !== ref.size) return false;
        return m.get(2 ** 52) === undefined && !s.has(2 ** 52);
      }),
      { numRuns: 300 },
    ),
  );
});

t.test('one key deleted and re-added 100,000 times next to 16,000 others: the table neither grows nor keeps tombstones', async (t) => {
  const s = new IntSet();
  for (let i = 0; i < 16_000; i++) s.add(0x100000 + i * 1024);
  const cap = (s as unknown as { keys: Float64Array }).keys.length;
  for (let i = 0; i < 100_000; i++) {
    s.delete(0x100000);
    s.add(0x100000);
  }
  t.equal(s.size, 16_000);
  const keys = (s as unknown as { keys: Float64Array }).keys;
  t.equal(keys.length, cap, 'same capacity');
  t.equal(keys.filter((k) => k !== -1).length, 16_000, 'every occupied slot holds a live key (backward-shift deletion)');
});

t.test('a FIFO of sequential ids (the history journal ring, the machine buffer table): found, then gone, the table stays small', async (t) => {
  const a = new IntMap<number>();
  let missed = 0;
  for (let id = 1; id <= 50_000; id++) {
    a.set(id, id & 0xffff);
    if (id > 1000 && !a.delete(id - 1000)) missed++;
  }
  t.equal(missed, 0, 'every id found when its turn to go came');
  t.equal(a.size, 1000);
  t.equal(a.get(49_001), 49_001 & 0xffff);
  t.equal(a.get(49_000), undefined, 'deleted');
  t.equal(a.delete(49_000), false);
  t.ok((a as unknown as { keys: Float64Array }).keys.length <= 4096, 'capacity bounded by the most ids held at once');
  a.clear();
  t.equal(a.size, 0);
  t.equal(a.get(50_000), undefined);
});
