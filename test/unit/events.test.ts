/**
 * EventBus alone: fake subscribers, a fake clock, a fake snapshot function
 * and node:test's mock timers (the bus's 100 ms snapshot tick and 250 ms
 * aggregation timeout run only when the test advances them).
 */
import t, { type Test } from 'tap';
import { mock } from 'node:test';
import { EventBus, TOPICS, type Outgoing, type Subscriber, type Topic } from '../../daemon/session/events.js';
import { decodeValue } from '../../protocol/codec.js';
import type { Logger } from '../../daemon/lib/log.js';

type Ev = Record<string, unknown>;

interface FakeSub extends Subscriber {
  got: Ev[];
  outs: Outgoing[];
  buf: number;
  reasons: string[];
  activity(): Ev[];
  snapshots(): Ev[];
}

function fakeSub(label: string, o: { topics?: Topic[]; intervalMs?: number; maps?: boolean } = {}): FakeSub {
  const s: FakeSub = {
    label,
    topics: new Set(o.topics ?? TOPICS),
    intervalMs: o.intervalMs ?? 1000,
    maps: o.maps ?? false,
    got: [],
    outs: [],
    buf: 0,
    reasons: [],
    send(out) {
      s.outs.push(out);
      s.got.push(out.ev);
    },
    buffered: () => s.buf,
    dropped(reason) {
      s.reasons.push(reason);
    },
    activity: () => s.got.filter((e) => e['event'] === 'activity'),
    snapshots: () => s.got.filter((e) => e['event'] === 'snapshot'),
  };
  return s;
}

interface Rig {
  bus: EventBus;
  clock: { now: number };
  snaps: boolean[];
  warns: { obj: Ev; msg: string }[];
  /** Advance the fake clock and the mock timers together; then let microtasks run. */
  advance(ms: number): Promise<void>;
}

function rig(t: Test, o: { maxBuffered?: number; maxBufferedTotal?: number; allocRate?: number } = {}): Rig {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const clock = { now: 10_000 };
  const snaps: boolean[] = [];
  const warns: { obj: Ev; msg: string }[] = [];
  const log = { warn: (obj: Ev, msg: string) => warns.push({ obj, msg }), info: () => {}, debug: () => {}, error: () => {} } as unknown as Logger;
  const bus = new EventBus(
    {
      maxBuffered: o.maxBuffered ?? 1000,
      maxBufferedTotal: o.maxBufferedTotal ?? 1_000_000,
      allocRate: o.allocRate ?? 1000,
      now: () => clock.now,
      snapshot: (full) => {
        snaps.push(full);
        return { n: snaps.length, full, ...(full ? { maps: [] } : {}) };
      },
    },
    log,
  );
  t.teardown(() => {
    bus.close();
    mock.timers.reset();
  });
  const advance = async (ms: number) => {
    for (let done = 0; done < ms; done += 10) {
      clock.now += 10;
      mock.timers.tick(10);
      await Promise.resolve();
    }
  };
  return { bus, clock, snaps, warns, advance };
}

const flush = () => new Promise<void>((r) => setImmediate(r));

t.test('publish with no subscribers is free', async (t) => {
  const { bus, snaps, advance } = rig(t);
  for (let i = 0; i < 50; i++) bus.publish('alloc', 'alloc', { buffer: i, size: 4096 });
  bus.publish('clients', 'connect', { client: 1 });
  t.equal(bus.published, 0, 'nothing counted');
  t.equal(bus.size, 0);
  await advance(500);
  t.same(snaps, [], 'no snapshot taken');
});

t.test('topic filtering and the activity event shape', async (t) => {
  const { bus, clock } = rig(t);
  const a = fakeSub('a', { topics: ['alloc'] });
  const b = fakeSub('b', { topics: ['handles', 'clients'] });
  bus.subscribe(a);
  bus.subscribe(b);
  t.equal(bus.size, 2);
  clock.now = 12_345.6;
  bus.publish('handles', 'send', { buffer: 7, from: 1, to: 2 });
  bus.publish('alloc', 'alloc', { buffer: 8, size: 100, pool: 'default' });
  bus.publish('clients', 'connect', { client: 3, name: 'x' });
  bus.publish('drivers', 'register', { driver: 'gpu', buffer: 8 });
  t.same(a.activity(), [{ event: 'activity', topic: 'alloc', kind: 'alloc', timeMs: 12_346, buffer: 8, size: 100, pool: 'default' }]);
  t.same(b.activity(), [
    { event: 'activity', topic: 'handles', kind: 'send', timeMs: 12_346, buffer: 7, from: 1, to: 2 },
    { event: 'activity', topic: 'clients', kind: 'connect', timeMs: 12_346, client: 3, name: 'x' },
  ]);
  t.equal(bus.published, 4, 'every publish with subscribers is counted');
  await flush();
  t.same(a.snapshots(), [], 'no status topic: no snapshots');
  t.same(b.snapshots(), []);
});

t.test('allocations one by one up to allocRate per second, then a summary after 250 ms', async (t) => {
  const { bus, clock, advance } = rig(t, { allocRate: 3 });
  const s = fakeSub('s', { topics: ['alloc', 'handles'] });
  bus.subscribe(s);
  for (let i = 1; i <= 3; i++) bus.publish('alloc', 'alloc', { buffer: i, size: 100 });
  t.equal(s.activity().length, 3, 'the first allocRate are sent');
  t.same(s.activity().map((e) => e['kind']), ['alloc', 'alloc', 'alloc']);
  bus.publish('alloc', 'alloc', { buffer: 4, size: 1000 });
  bus.publish('alloc', 'alloc', { buffer: 5, size: 24 });
  bus.publish('alloc', 'free', { buffer: 1, size: 100 });
  bus.publish('alloc', 'free', { buffer: 2 });
  t.equal(s.activity().length, 3, 'above the rate: held back');
  // other topics are not limited
  for (let i = 0; i < 10; i++) bus.publish('handles', 'send', { buffer: i });
  t.equal(s.activity().filter((e) => e['topic'] === 'handles').length, 10, 'handles events are not aggregated');
  await advance(240);
  t.equal(s.activity().filter((e) => e['kind'] === 'summary').length, 0, 'no summary before 250 ms');
  await advance(20);
  const sums = s.activity().filter((e) => e['kind'] === 'summary');
  t.equal(sums.length, 1, 'one summary');
  t.match(sums[0], { event: 'activity', topic: 'alloc', kind: 'summary', windowMs: 250, allocs: 2, frees: 2, bytesAllocated: 1024, bytesFreed: 100 });
  t.type(sums[0]!['timeMs'], 'number');
  t.equal(bus.published, 17);
  // still within the second: more allocations go to a new summary
  bus.publish('alloc', 'alloc', { buffer: 6, size: 1 });
  await advance(260);
  const sums2 = s.activity().filter((e) => e['kind'] === 'summary');
  t.equal(sums2.length, 2);
  t.match(sums2[1], { allocs: 1, frees: 0, bytesAllocated: 1, bytesFreed: 0 });
  // a new second: one by one again
  clock.now += 1000;
  const before = s.activity().length;
  bus.publish('alloc', 'alloc', { buffer: 7, size: 5 });
  t.match(s.activity().slice(before), [{ kind: 'alloc', buffer: 7, size: 5 }], 'sent at once in a new window');
  await advance(300);
  t.equal(s.activity().filter((e) => e['kind'] === 'summary').length, 2, 'no empty summaries');
});

t.test('allocRate 0 aggregates everything', async (t) => {
  const { bus, advance } = rig(t, { allocRate: 0 });
  const s = fakeSub('s', { topics: ['alloc'] });
  bus.subscribe(s);
  for (let i = 0; i < 5; i++) bus.publish('alloc', 'alloc', { buffer: i, size: 10 });
  t.equal(s.activity().length, 0);
  await advance(260);
  t.match(s.activity(), [{ kind: 'summary', allocs: 5, bytesAllocated: 50, frees: 0 }]);
});

t.test('a subscriber past maxBuffered is dropped once; the others are still served', async (t) => {
  const { bus, warns } = rig(t, { maxBuffered: 100 });
  const slow = fakeSub('slow one', { topics: ['clients'] });
  const ok = fakeSub('ok', { topics: ['clients'] });
  const edge = fakeSub('edge', { topics: ['clients'] });
  bus.subscribe(slow);
  bus.subscribe(ok);
  bus.subscribe(edge);
  edge.buf = 100; // at the limit, not past it
  bus.publish('clients', 'connect', { client: 1 });
  t.equal(slow.activity().length, 1);
  slow.buf = 101;
  bus.publish('clients', 'connect', { client: 2 });
  bus.publish('clients', 'connect', { client: 3 });
  t.equal(slow.reasons.length, 1, 'dropped() called once');
  t.match(slow.reasons[0], /100 bytes/, 'the reason names the limit');
  t.equal(slow.activity().length, 1, 'nothing more sent to it');
  t.equal(ok.activity().length, 3, 'the others get every event');
  t.equal(edge.activity().length, 3, 'exactly maxBuffered is not dropped');
  t.equal(bus.droppedSubscribers, 1);
  t.equal(bus.size, 2);
  t.match(warns, [{ msg: 'event subscriber dropped', obj: { subscriber: 'slow one' } }]);
});

t.test('past maxBufferedTotal together, the subscriber with the most unsent is dropped', async (t) => {
  const { bus } = rig(t, { maxBuffered: 100, maxBufferedTotal: 150 });
  const a = fakeSub('a', { topics: ['clients'] });
  const b = fakeSub('b', { topics: ['clients'] });
  const c = fakeSub('c', { topics: ['clients'] });
  for (const s of [a, b, c]) bus.subscribe(s);
  a.buf = 40;
  b.buf = 60;
  c.buf = 30; // 130: under the total
  bus.publish('clients', 'connect', { client: 1 });
  t.equal(bus.droppedSubscribers, 0, 'under the total: nobody dropped');
  c.buf = 55; // 155: over
  bus.publish('clients', 'connect', { client: 2 });
  t.equal(bus.droppedSubscribers, 1, 'one dropped');
  t.equal(b.reasons.length, 1, 'the one with the most');
  t.match(b.reasons[0], /150 bytes/);
  t.same([a.reasons.length, c.reasons.length], [0, 0], 'the others stay');
  t.equal(bus.size, 2);
  bus.publish('clients', 'connect', { client: 3 });
  t.equal(bus.droppedSubscribers, 1, '95 bytes together: no more drops');
  t.equal(a.activity().length, 3);
});

t.test('maxBufferedTotal also holds when only snapshots flow', async (t) => {
  const { bus, advance } = rig(t, { maxBuffered: 100, maxBufferedTotal: 150 });
  const subs = [fakeSub('a', { topics: ['status'], intervalMs: 100 }), fakeSub('b', { topics: ['status'], intervalMs: 100 }), fakeSub('c', { topics: ['status'], intervalMs: 100 })];
  for (const s of subs) bus.subscribe(s);
  await advance(10);
  subs[0]!.buf = 60;
  subs[1]!.buf = 90;
  subs[2]!.buf = 60; // 210 together, each under 100
  await advance(500);
  t.equal(bus.droppedSubscribers, 1, 'the slowest is dropped');
  t.equal(subs[1]!.reasons.length, 1);
});

t.test('a subscriber past maxBuffered at snapshot time is dropped', async (t) => {
  const { bus, advance } = rig(t, { maxBuffered: 100 });
  const s = fakeSub('s', { topics: ['status'], intervalMs: 100 });
  const o = fakeSub('o', { topics: ['status'], intervalMs: 100 });
  bus.subscribe(s);
  bus.subscribe(o);
  await advance(10);
  s.buf = 5000;
  await advance(300);
  t.equal(s.reasons.length, 1);
  t.equal(bus.droppedSubscribers, 1);
  t.equal(bus.size, 1);
  t.ok(o.snapshots().length > s.snapshots().length, 'the other keeps getting snapshots');
});

t.test('snapshots at each subscriber\'s interval; maps only for maps subscribers', async (t) => {
  const { bus, snaps, advance } = rig(t);
  const fast = fakeSub('fast', { topics: ['status'], intervalMs: 100 });
  const fast2 = fakeSub('fast2', { topics: ['status', 'alloc'], intervalMs: 100 });
  const dash = fakeSub('dash', { intervalMs: 300, maps: true });
  const none = fakeSub('none', { topics: ['alloc'], intervalMs: 100 });
  bus.subscribe(fast);
  bus.subscribe(fast2);
  bus.subscribe(dash);
  bus.subscribe(none);
  await flush();
  t.equal(fast.snapshots().length, 1, 'a first snapshot at once');
  t.equal(dash.snapshots().length, 1);
  t.same(snaps.slice().sort(), [false, true], 'one snapshot built per kind per tick');
  await advance(600);
  t.equal(fast.snapshots().length, 7, 'every 100 ms');
  t.equal(fast2.snapshots().length, 7);
  t.equal(dash.snapshots().length, 3, 'every 300 ms');
  t.same(none.snapshots(), [], 'no status topic: none');
  t.equal(snaps.filter((f) => !f).length, 7, 'the plain snapshot is shared by the subscribers of a tick');
  t.equal(snaps.filter((f) => f).length, 3);
  for (const e of fast.snapshots()) t.notOk((e['status'] as Ev)['full'], 'plain status for a non-maps subscriber');
  for (const e of dash.snapshots()) t.match(e, { event: 'snapshot', status: { full: true, maps: [] } });
  t.type(fast.snapshots()[0]!['timeMs'], 'number');
  // an interval change takes effect
  fast.intervalMs = 200;
  const n = fast.snapshots().length;
  await advance(400);
  t.equal(fast.snapshots().length - n, 2, 'now every 200 ms');
});

t.test('unsubscribe stops delivery and the timers; close() ends everything', async (t) => {
  const { bus, snaps, advance } = rig(t, { allocRate: 0 });
  const a = fakeSub('a', { intervalMs: 100 });
  const b = fakeSub('b', { intervalMs: 100 });
  bus.subscribe(a);
  bus.subscribe(b);
  await advance(200);
  bus.unsubscribe(a);
  t.equal(bus.size, 1);
  const na = a.got.length;
  const nb = b.snapshots().length;
  await advance(200);
  t.equal(a.got.length, na, 'nothing after unsubscribe');
  t.ok(b.snapshots().length > nb, 'the other still gets snapshots');
  bus.unsubscribe(b);
  t.equal(bus.size, 0);
  const taken = snaps.length;
  await advance(1000);
  t.equal(snaps.length, taken, 'no snapshot built once nobody listens');
  t.equal((bus as unknown as { timer: unknown }).timer, null, 'the tick timer is stopped');
  // subscribe again: the timer comes back
  const c = fakeSub('c', { intervalMs: 100 });
  bus.subscribe(c);
  await advance(200);
  t.ok(c.snapshots().length >= 2, 'ticking again');
  // a pending summary is cancelled by close()
  bus.publish('alloc', 'alloc', { buffer: 1, size: 1 });
  bus.close();
  t.equal(bus.size, 0);
  const nc = c.got.length;
  await advance(1000);
  t.equal(c.got.length, nc, 'nothing after close: no snapshot, no summary');
  t.equal(c.reasons.length, 0, 'close is not a drop');
  // publish after close is free
  const p = bus.published;
  bus.publish('clients', 'connect', { client: 1 });
  t.equal(bus.published, p);
});

t.test('an event is encoded once however many subscribers take it', async (t) => {
  const { bus } = rig(t);
  const subs = [fakeSub('a'), fakeSub('b'), fakeSub('c', { topics: ['alloc'] })];
  for (const s of subs) bus.subscribe(s);
  bus.publish('handles', 'send', { buffer: 7, from: 1, to: 2 });
  const [a, b] = [subs[0]!.outs.at(-1)!, subs[1]!.outs.at(-1)!];
  t.equal(a, b, 'one Outgoing for both subscribers');
  t.equal(subs[2]!.outs.length, 0, 'not sent off-topic');
  const f = a.frame();
  t.equal(b.frame(), f, 'the frame is built once');
  t.equal(b.json(), a.json(), 'and the JSON once');
  t.equal(f.readUInt32BE(0), f.length - 4, 'a length-prefixed frame');
  t.same(decodeValue(f.subarray(4)), a.ev, 'holding the event');
  t.same(JSON.parse(a.json()), a.ev);
});
