/**
 * The history journal in columns (session/history.ts, history-slots.ts,
 * history-codecs.ts) against the object journal it replaced
 * (test/helpers/history-model.ts): any sequence of allocations, op events
 * (through the codecs, as the daemon records them), frees (with a fields
 * object, or as the bus tells them), holds and releases, bound changes (a
 * reload) and history switched off and on gives the same readable events,
 * in the same key order, the same counts, the same readers and names — and
 * the slots in use are exactly the events kept.
 */
import t from 'tap';
import fc from 'fast-check';
import { HistoryJournal, flat, type Actor, type HistoryLimits } from '../../daemon/session/history.js';
import { OP_CODECS, type OpCodec } from '../../daemon/session/history-codecs.js';
import { NIL } from '../../daemon/session/history-slots.js';
import type { OpName } from '../../protocol/requests.js';
import { ObjectJournal } from '../helpers/history-model.js';

type Fields = Record<string, unknown>;
const C = OP_CODECS as { [K in OpName]: OpCodec<K> };
const RIGHTS = [['read'], ['read', 'write'], ['read', 'write', 'share'], [], ['write', 'share']];

/** Requests and results of the daemon's shapes, and what the event said before the columns (the old recipes' `says`). */
const SAMPLES: { op: OpName; q: Fields; r: Fields; i?: number; said: Fields; sender?: { from: number; fromName: string | null } }[] = [
  {
    op: 'alloc',
    q: { pool: 'default', size: 4096 },
    r: { handle: 3, buffer: 0, pool: 'default', cache: 'writeback', size: 4096, usize: 4096, placement: null, segments: [{ addr: 0x220000000, len: 4096 }] },
    said: { handle: 3, pool: 'default', cache: 'writeback', size: 4096, usize: 4096, placement: null, addr: 0x220000000 },
  },
  {
    op: 'alloc',
    q: { for: ['video'], size: 1 },
    r: { handle: 9, buffer: 0, pool: 'cma', cache: 'uncached', size: 1, usize: 4096, placement: { for: ['video'], pool: 'cma', reason: 'contiguous' }, segments: [] },
    said: { handle: 9, pool: 'cma', cache: 'uncached', size: 1, usize: 4096, placement: { for: ['video'], pool: 'cma', reason: 'contiguous' }, addr: null },
  },
  { op: 'dup', q: { handle: 3 }, r: { handle: 4, rights: RIGHTS[2] }, said: { handle: 3, newHandle: 4, rights: RIGHTS[2] } },
  { op: 'close', q: { handle: 4 }, r: { handle: 4, closed: true }, said: { handle: 4 } },
  { op: 'send', q: { handle: 4, to: 2 }, r: { to: 2, toName: 'beta', rights: RIGHTS[0] }, said: { handle: 4, to: 2, toName: 'beta', rights: RIGHTS[0] } },
  { op: 'send', q: { handle: 5, to: 3 }, r: { to: 3, toName: null, rights: RIGHTS[3] }, said: { handle: 5, to: 3, toName: null, rights: RIGHTS[3] } },
  { op: 'export', q: { handle: 4 }, r: { token: 'x', expiresInMs: 5000, rights: RIGHTS[1] }, said: { handle: 4, rights: RIGHTS[1], expiresInMs: 5000 } },
  { op: 'exportFd', q: { handle: 4, nonce: 1 }, r: { buffer: 0, size: 1, bytes: 1, rights: RIGHTS[4], readOnly: false }, said: { handle: 4, rights: RIGHTS[4], readOnly: false } },
  { op: 'importFd', q: { nonce: 2 }, r: { handle: 6, buffer: 0, rights: RIGHTS[0] }, said: { handle: 6, rights: RIGHTS[0] } },
  { op: 'import', q: { token: 't' }, r: { handle: 7, buffer: 0, rights: RIGHTS[1] }, said: { handle: 7, rights: RIGHTS[1] } },
  {
    op: 'import',
    q: { token: 't' },
    r: { handle: 8, buffer: 0, rights: RIGHTS[2] },
    sender: { from: 4, fromName: 'delta' },
    said: { handle: 8, rights: RIGHTS[2], from: 4, fromName: 'delta' },
  },
  { op: 'write', q: { handle: 3, offset: 10, data: new Uint8Array(2) }, r: { written: 2 }, said: { handle: 3, offset: 10, length: 2 } },
  { op: 'write', q: { mapping: 1, offset: 0, data: new Uint8Array(5) }, r: { written: 5 }, said: { mapping: 1, offset: 0, length: 5 } },
  { op: 'read', q: { mapping: 2, offset: 7, length: 3 }, r: { data: new Uint8Array(3) }, said: { mapping: 2, offset: 7, length: 3 } },
  {
    op: 'register',
    q: { handle: 3, driver: 'video' },
    r: { driver: 'video', deviceAddress: 0x1_0000_0000, iommu: null, bounced: 4 },
    said: { handle: 3, driver: 'video', deviceAddress: 0x1_0000_0000, iova: false, bounced: 4 },
  },
  { op: 'unregister', q: { driver: 'video', buffer: 1 }, r: { driver: 'video', buffer: 1, unregistered: true }, said: { driver: 'video' } },
  { op: 'device.write', q: { driver: 'd', handle: 3, offset: 1, data: new Uint8Array(1) }, r: { written: 1 }, said: { driver: 'd', offset: 1, length: 1 } },
  { op: 'device.read', q: { driver: 'd', handle: 3, offset: 2, length: 4 }, r: { data: new Uint8Array(4) }, said: { driver: 'd', offset: 2, length: 4 } },
  { op: 'device.fill', q: { driver: 'd', handle: 3, offset: 0, length: 9, value: 255 }, r: { filled: 9 }, said: { driver: 'd', offset: 0, length: 9, value: 255 } },
  { op: 'device.copy', q: { driver: 'd', src: 3, dst: 4 }, r: { copied: 16 }, i: 1, said: { driver: 'd', role: 'dst', length: 16 } },
  { op: 'device.copy', q: { driver: 'd', src: 3, dst: 4 }, r: { copied: 16 }, i: 0, said: { driver: 'd', role: 'src', length: 16 } },
  {
    op: 'sync',
    q: { handle: 3, phase: 'end', access: 'rw' },
    r: { phase: 'end', access: 'rw', cleaned: 2, invalidated: 3, flushed: 0 },
    said: { phase: 'end', access: 'rw', offset: 0, length: null, cleaned: 2, invalidated: 3 },
  },
  {
    op: 'sync',
    q: { handle: 3, phase: 'start', access: 'read', offset: 64, length: 128 },
    r: { phase: 'start', access: 'read', cleaned: 0, invalidated: 2, flushed: 0 },
    said: { phase: 'start', access: 'read', offset: 64, length: 128, cleaned: 0, invalidated: 2 },
  },
  { op: 'map', q: { handle: 3 }, r: { mapping: 1, cache: 'writeback', size: 1, rights: RIGHTS[1], bytes: 1, fd: true }, said: { handle: 3, mapping: 1, rights: RIGHTS[1], fd: true } },
  { op: 'unmap', q: { mapping: 1 }, r: { mapping: 1, unmapped: true }, said: { mapping: 1 } },
  { op: 'fence', q: { handle: 3 }, r: { flushed: 7 }, said: { flushed: 7 } },
];

const ACTORS: Actor[] = [null, { id: 1, name: 'alpha' }, { id: 2, name: null }, { id: 3, name: 'gamma' }, { id: 4, name: 'delta' }];

type Step =
  | { t: 'alloc' | 'free' | 'freeBus' | 'hold' | 'release' | 'generic'; b: number; a: number }
  | { t: 'op'; b: number; a: number; k: number; also: boolean }
  | { t: 'limits'; perBuffer: number; maxEvents: number; keepFreed: number }
  | { t: 'toggle' };

const B = 5;
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constantFrom('alloc' as const, 'free' as const, 'freeBus' as const, 'hold' as const, 'release' as const, 'generic' as const), b: fc.nat(B), a: fc.nat(ACTORS.length - 1) }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('op' as const), b: fc.nat(B), a: fc.nat(ACTORS.length - 1), k: fc.nat(SAMPLES.length - 1), also: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('limits' as const), perBuffer: fc.integer({ min: 1, max: 12 }), maxEvents: fc.nat(40), keepFreed: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'toggle' as const }) },
);

/** Both journals, the same bounds and clocks; an error naming the first difference. */
function compare(steps: Step[]): void {
  const lim: HistoryLimits = { enabled: true, perBuffer: 8, maxEvents: 30, keepFreed: 3 };
  let c1 = 0;
  let c2 = 0;
  const cols = new HistoryJournal(() => lim, () => (c1 += 0.3337));
  const model = new ObjectJournal(() => lim, () => (c2 += 0.3337));
  for (const [n, s] of steps.entries()) {
    if (s.t === 'limits') Object.assign(lim, { perBuffer: s.perBuffer, maxEvents: s.maxEvents, keepFreed: s.keepFreed });
    else if (s.t === 'toggle') lim.enabled = !lim.enabled;
    else {
      const who = ACTORS[s.a]!;
      if (s.t === 'alloc') {
        cols.begin(s.b, 'alloc', who, { n });
        model.begin(s.b, 'alloc', who, { n });
      } else if (s.t === 'generic') {
        cols.record(s.b, 'refused', who, { op: 'dup', code: 'EBADF' }, 9);
        model.record(s.b, 'refused', who, { op: 'dup', code: 'EBADF' }, 9);
      } else if (s.t === 'free') {
        cols.freed(s.b, who, { n });
        model.freed(s.b, who, { n });
      } else if (s.t === 'freeBus') {
        cols.freedFrom(s.b, 'default', 4096 + n);
        model.freed(s.b, null, { pool: 'default', size: 4096 + n });
      } else if (s.t === 'hold') {
        cols.hold(s.b);
        model.hold(s.b);
      } else if (s.t === 'release') {
        cols.release(s.b, who, 'close');
        model.release(s.b, who, 'close');
      } else if (s.t === 'op') {
        const x = SAMPLES[s.k]!;
        const begin = x.op === 'alloc';
        const also = s.also ? 2 : undefined;
        const e = cols.open(s.b, C[x.op].id, who, begin, also);
        if (e !== NIL) {
          C[x.op].put(cols.slots, e, x.q as never, x.r as never, x.i ?? 0);
          if (x.sender !== undefined) {
            cols.slots.v[2]![e] = x.sender.from;
            cols.slots.v[3]![e] = x.sender.fromName;
          }
        }
        if (begin) model.begin(s.b, 'alloc', who, x.said);
        else model.record(s.b, x.op, who, x.said, also);
      }
    }
    const a = cols.stats();
    const m = model.stats();
    if (JSON.stringify(a) !== JSON.stringify(m)) throw new Error(`step ${n}: stats ${JSON.stringify(a)} ≠ ${JSON.stringify(m)}`);
    if (cols.slots.used !== a.events) throw new Error(`step ${n}: ${cols.slots.used} slots in use for ${a.events} events`);
    for (let b = 0; b <= B; b++) {
      const x = cols.get(b);
      const y = model.get(b);
      const fx = x && JSON.stringify({ ...x, events: x.events.map(flat) });
      const fy = y && JSON.stringify({ buffer: y.buffer, events: y.events.map(flat), dropped: y.dropped, partial: y.partial, live: y.live });
      if (fx !== fy) throw new Error(`step ${n}, buffer ${b}:\n  columns ${fx}\n  objects ${fy}`);
      for (let c = 0; c <= 9; c++) {
        if (cols.involved(b, c) !== model.involved(b, c)) throw new Error(`step ${n}, buffer ${b}: involved(${c})`);
        if (cols.nameOf(b, c) !== model.nameOf(b, c)) throw new Error(`step ${n}, buffer ${b}: nameOf(${c})`);
      }
    }
  }
}

t.test('property: the columns journal answers as the object journal did', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(step, { maxLength: 200, size: 'max' }), compare), { numRuns: 300 }));
});

t.test('every op codec reads back what its event said, keys in order', async (t) => {
  for (const x of SAMPLES) {
    const j = new HistoryJournal(() => ({ enabled: true, perBuffer: 8, maxEvents: 100, keepFreed: 1 }), () => 1);
    const e = j.open(3, C[x.op].id, { id: 1, name: 'alpha' }, x.op === 'alloc');
    // a reused slot holds another event's values: none of them may show through
    for (const col of j.slots.v) col[e] = 'stale';
    j.slots.x[e] = 5;
    C[x.op].put(j.slots, e, x.q as never, x.r as never, x.i ?? 0);
    if (x.sender !== undefined) {
      j.slots.v[2]![e] = x.sender.from;
      j.slots.v[3]![e] = x.sender.fromName;
    }
    const ev = j.get(3)!.events[0]!;
    t.equal(ev.kind, x.op, x.op);
    t.equal(JSON.stringify(ev.fields), JSON.stringify(x.said), `${x.op}: ${JSON.stringify(x.said)}`);
  }
});

t.test('switched off, the columns go; a kept object is let go with its slot', async (t) => {
  const lim: HistoryLimits = { enabled: true, perBuffer: 8, maxEvents: 100, keepFreed: 0 };
  const j = new HistoryJournal(() => lim, () => 1);
  const details = { message: 'x'.repeat(100) };
  j.begin(1, 'alloc', null, details);
  const slot = 0; // fresh columns hand out their lowest slot first
  j.freed(1, null, {});
  t.equal(j.get(1), undefined, 'keepFreed 0: gone at the free');
  t.equal(j.slots.used, 0);
  t.equal(j.slots.v[1]![slot], undefined, 'the fields object is not held by the free slot');
  for (let b = 0; b < 100; b++) j.begin(b, 'alloc', null, {});
  t.ok(j.slots.capacity >= 100);
  lim.enabled = false;
  t.equal(j.enabled, false);
  t.equal(j.slots.capacity, 0, 'history off: the columns are let go');
  t.same(j.stats(), { events: 0, live: 0, freed: 0, dropped: 0 });
});

t.test('a free during an op, as the bus tells it, recorded after the op', async (t) => {
  const steps: Step[] = [
    { t: 'alloc', b: 1, a: 1 },
    { t: 'hold', b: 1, a: 0 },
    { t: 'freeBus', b: 1, a: 0 },
    { t: 'op', b: 1, a: 2, k: 3, also: false },
    { t: 'release', b: 1, a: 2 },
  ];
  t.doesNotThrow(() => compare(steps));
});
