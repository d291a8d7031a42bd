/**
 * lib/idtable.ts against a Map: any sequence of sets, gets and deletes —
 * keys clustered (sequential ids, as buffer ids are), spread over 2^53,
 * or all landing on one home cell (the backward shift after a delete) —
 * answers as the Map does, and its size is the Map's.
 */
import t from 'tap';
import fc from 'fast-check';
import { IdTable } from '../../daemon/lib/idtable.js';

type Op = { t: 'set' | 'get' | 'del'; k: number; v: number };

function check(ops: Op[]): void {
  const a = new IdTable();
  const m = new Map<number, number>();
  for (const [i, o] of ops.entries()) {
    if (o.t === 'set') {
      a.set(o.k, o.v);
      m.set(o.k, o.v);
    } else if (o.t === 'del') {
      if (a.delete(o.k) !== m.delete(o.k)) throw new Error(`op ${i}: delete(${o.k})`);
    }
    if (a.get(o.k) !== (m.get(o.k) ?? -1)) throw new Error(`op ${i}: get(${o.k}) = ${a.get(o.k)}, Map ${m.get(o.k)}`);
    if (a.size !== m.size) throw new Error(`op ${i}: size ${a.size}, Map ${m.size}`);
  }
  for (const [k, v] of m) if (a.get(k) !== v) throw new Error(`at the end: get(${k})`);
}

const key = fc.oneof(
  fc.integer({ min: 1, max: 64 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  // the same low 32 bits: one home cell for all
  fc.integer({ min: 0, max: 7 }).map((h) => h * 2 ** 32 + 5),
);
const op = fc.record({ t: fc.constantFrom('set' as const, 'set' as const, 'get' as const, 'del' as const), k: key, v: fc.nat(1 << 20) });

t.test('property: answers as a Map does', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(op, { maxLength: 400, size: 'max' }), check), { numRuns: 300 }));
});

t.test('a FIFO of sequential ids (a journal ring): found, then gone, table stays small', async (t) => {
  const a = new IdTable();
  let missed = 0;
  for (let id = 1; id <= 50_000; id++) {
    a.set(id, id & 0xffff);
    if (id > 1000 && !a.delete(id - 1000)) missed++;
  }
  t.equal(missed, 0, 'every id found when its turn to go came');
  t.equal(a.size, 1000);
  t.equal(a.get(49_001), 49_001 & 0xffff);
  t.equal(a.get(49_000), -1, 'deleted');
  t.equal(a.delete(49_000), false);
  a.clear();
  t.equal(a.size, 0);
  t.equal(a.get(50_000), -1);
});
