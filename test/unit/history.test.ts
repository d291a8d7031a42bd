/**
 * HistoryJournal alone: a fake clock and limits the test changes as a
 * reload would. Order, the per-buffer cap (the allocation stays), the global
 * budget (freed journals go first), the freed ring, frees during an op,
 * who may read, and history switched off.
 */
import t from 'tap';
import fc from 'fast-check';
import { HistoryJournal, flat, type HistoryLimits } from '../../daemon/session/history.js';

function journal(over: Partial<HistoryLimits> = {}) {
  const lim: HistoryLimits = { enabled: true, perBuffer: 8, maxEvents: 1000, keepFreed: 4, ...over };
  let clock = 0;
  const j = new HistoryJournal(() => lim, () => (clock += 1.5));
  return { j, lim };
}
const A = { id: 1, name: 'alpha' };
const B = { id: 2, name: null };
const kinds = (j: HistoryJournal, b: number) => j.get(b)!.events.map((e) => e.kind);

t.test('events in order, with seq, time and the client', async (t) => {
  const { j } = journal();
  j.begin(7, 'alloc', A, { pool: 'default', size: 100 });
  j.record(7, 'send', A, { to: 2 }, 2);
  j.record(7, 'close', B, { handle: 0 });
  const ev = j.get(7)!.events;
  t.same(ev.map((e) => [e.seq, e.kind, e.client, e.clientName]), [
    [1, 'alloc', 1, 'alpha'],
    [2, 'send', 1, 'alpha'],
    [3, 'close', 2, null],
  ]);
  t.same(ev.map((e) => e.timeMs), [1.5, 3, 4.5]);
  t.match(flat(ev[0]!), { seq: 1, kind: 'alloc', client: 1, pool: 'default', size: 100 });
  t.same(ev[0]!.fields, { pool: 'default', size: 100 }, 'the fields kept as given');
  t.equal(j.get(7)!.partial, false);
  t.ok(j.involved(7, 1) && j.involved(7, 2), 'the actor and the receiver may read it');
  t.notOk(j.involved(7, 3), 'a stranger may not');
  t.notOk(j.involved(8, 1), 'no journal, nobody');
  t.equal(j.nameOf(7, 1), 'alpha', 'the name a client acted under');
  t.equal(j.nameOf(7, 2), null);
  t.equal(j.nameOf(8, 1), null);
  t.same(j.stats(), { events: 3, live: 1, freed: 0, dropped: 0 });
});

t.test('an event on a buffer without a journal starts a partial one', async (t) => {
  const { j } = journal();
  j.record(3, 'dup', A, {});
  t.equal(j.get(3)!.partial, true);
  t.same(kinds(j, 3), ['dup']);
});

t.test('per-buffer cap: the oldest after the allocation go', async (t) => {
  const { j } = journal({ perBuffer: 8 });
  j.begin(1, 'alloc', A, {});
  for (let i = 0; i < 20; i++) j.record(1, 'dup', A, { i });
  const ev = j.get(1)!.events;
  t.equal(ev.length, 8);
  t.equal(ev[0]!.kind, 'alloc', 'the allocation stays');
  t.same(ev.slice(1).map((e) => e.fields['i']), [13, 14, 15, 16, 17, 18, 19]);
  t.equal(j.get(1)!.dropped, 13);
  t.equal(j.stats().events, 8);
});

t.test('freed ring: keepFreed journals, oldest retired first', async (t) => {
  const { j } = journal({ keepFreed: 2 });
  for (const b of [1, 2, 3]) {
    j.begin(b, 'alloc', A, {});
    j.freed(b, A, { size: 1 });
  }
  t.equal(j.get(1), undefined, 'the oldest freed journal is gone');
  t.same(kinds(j, 2), ['alloc', 'free']);
  t.equal(j.get(3)!.live, false);
  t.same(j.stats(), { events: 4, live: 0, freed: 2, dropped: 0 });
  const none = journal({ keepFreed: 0 }).j;
  none.begin(1, 'alloc', A, {});
  none.freed(1, null, {});
  t.equal(none.get(1), undefined, 'keepFreed 0 keeps none');
  t.equal(none.stats().events, 0);
  none.freed(9, null, {});
  t.equal(none.get(9), undefined, 'a free without a journal records nothing');
});

t.test('global budget: freed journals go first, then new events are not kept', async (t) => {
  const { j } = journal({ maxEvents: 5, keepFreed: 10 });
  j.begin(1, 'alloc', A, {});
  j.freed(1, A, {});
  j.begin(2, 'alloc', A, {});
  j.record(2, 'dup', A, {});
  j.record(2, 'dup', A, {});
  t.same(j.stats().events, 5);
  j.record(2, 'close', A, {});
  t.equal(j.get(1), undefined, 'the freed journal made room');
  t.same(kinds(j, 2), ['alloc', 'dup', 'dup', 'close']);
  j.begin(3, 'alloc', A, {});
  j.record(3, 'dup', A, {});
  t.same(kinds(j, 3), ['alloc'], 'nothing freed left: the new event is not kept');
  t.equal(j.get(3)!.dropped, 1);
  t.same(j.stats(), { events: 5, live: 2, freed: 0, dropped: 1 });
});

t.test('a free during an op is recorded after the op, as done by its client', async (t) => {
  const { j } = journal();
  j.begin(1, 'alloc', A, {});
  j.hold(1);
  j.freed(1, null, { size: 4 });
  t.equal(j.get(1)!.live, true, 'still live while the op runs');
  j.record(1, 'close', B, { handle: 0 });
  j.release(1, B, 'close');
  t.same(kinds(j, 1), ['alloc', 'close', 'free']);
  t.match(flat(j.get(1)!.events[2]!), { client: 2, after: 'close', size: 4 });
  t.equal(j.get(1)!.live, false);
  j.release(1);
  j.release(42);
  j.hold(42);
  t.equal(j.get(42), undefined, 'holding a buffer without a journal makes none');
  // nested holds: the free waits for the last
  j.begin(5, 'alloc', A, {});
  j.hold(5);
  j.hold(5);
  j.freed(5, A, {});
  j.release(5, B, 'x');
  t.equal(j.get(5)!.live, true);
  j.release(5, B, 'y');
  t.match(flat(j.get(5)!.events.at(-1)!), { kind: 'free', client: 1, after: 'y' });
});

t.test('history off: nothing recorded, and what was kept is let go', async (t) => {
  const { j, lim } = journal();
  j.begin(1, 'alloc', A, {});
  lim.enabled = false;
  t.equal(j.enabled, false);
  t.equal(j.get(1), undefined);
  j.begin(2, 'alloc', A, {});
  j.record(2, 'dup', A, {});
  j.freed(2, A, {});
  t.same(j.stats(), { events: 0, live: 0, freed: 0, dropped: 0 });
  lim.enabled = true;
  j.record(2, 'dup', A, {});
  t.equal(j.get(2)!.partial, true, 'back on: a partial journal');
});

t.test('property: within every bound, whatever the sequence', async (t) => {
  const op = fc.oneof(
    fc.record({ t: fc.constant('alloc' as const), b: fc.integer({ min: 0, max: 30 }) }),
    fc.record({ t: fc.constant('rec' as const), b: fc.integer({ min: 0, max: 30 }) }),
    fc.record({ t: fc.constant('free' as const), b: fc.integer({ min: 0, max: 30 }) }),
  );
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), fc.integer({ min: 8, max: 16 }), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 5 }), (ops, perBuffer, maxEvents, keepFreed) => {
        const { j } = journal({ perBuffer, maxEvents, keepFreed });
        const live = new Set<number>();
        for (const o of ops) {
          if (o.t === 'alloc' && !live.has(o.b)) {
            live.add(o.b);
            j.begin(o.b, 'alloc', A, {});
          } else if (o.t === 'rec') j.record(o.b, 'dup', A, {});
          else if (o.t === 'free' && live.has(o.b)) {
            live.delete(o.b);
            j.freed(o.b, A, {});
          }
          const st = j.stats();
          let sum = 0;
          for (let b = 0; b <= 30; b++) {
            const x = j.get(b);
            if (x === undefined) continue;
            if (x.events.length > perBuffer) throw new Error(`buffer ${b}: ${x.events.length} events > ${perBuffer}`);
            for (let i = 1; i < x.events.length; i++) if (x.events[i]!.seq <= x.events[i - 1]!.seq) throw new Error('out of order');
            sum += x.events.length;
          }
          if (st.events !== sum) throw new Error(`count ${st.events} but ${sum} kept`);
          if (st.events > maxEvents) throw new Error(`${st.events} > maxEvents ${maxEvents}`);
          if (st.freed > keepFreed) throw new Error(`${st.freed} freed > ${keepFreed}`);
        }
      }),
    ),
  );
});

t.test('a new journal under the id of a retired one starts fresh (found by the property above)', async (t) => {
  const { j } = journal({ perBuffer: 8, maxEvents: 1, keepFreed: 1 });
  j.begin(13, 'alloc', A, {});
  j.freed(13, A, {});
  j.begin(13, 'alloc', A, {});
  t.equal(j.get(13)?.events.length, 1);
  t.equal(j.stats().events, 1, 'the retired journal was let go, not counted twice');
  t.equal(j.stats().freed, 0);
});
