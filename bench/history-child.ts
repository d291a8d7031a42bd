/**
 * Bytes per kept history event: record N events the way the daemon does
 * (ops/history-record.ts: each op's codec puts its request and result into
 * a slot; the free comes from the bus during the last close) over buffers
 * of 9 events each — alloc, dup, send, register, sync, unregister, close,
 * close, free — into a HistoryJournal with room for all, and weigh the
 * heap and the typed arrays' backing stores (the slots' columns live
 * there, off the JS heap) before and after.
 *
 *   node --expose-gc dist/bench/history-child.js [N]
 */
import { HistoryJournal, type Actor } from '../daemon/session/history.js';
import { OP_CODECS, type OpCodec } from '../daemon/session/history-codecs.js';
import { NIL } from '../daemon/session/history-slots.js';
import type { OpName } from '../protocol/requests.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const n = Number(process.argv[2] ?? 200_000);
const lim = { enabled: true, perBuffer: 256, maxEvents: n + 16, keepFreed: n };
let clock = 0;
const j = new HistoryJournal(() => lim, () => (clock += 0.37));
const who: Actor = { id: 12, name: 'decoder' };
const C = OP_CODECS as { [K in OpName]: OpCodec<K> };

/** An op's event as the recording wrapper makes it (the request and result are the daemon's shapes, made fresh per life as the daemon makes them). */
function op<K extends OpName>(j: HistoryJournal, b: number, c: OpCodec<K>, q: unknown, r: unknown, begin = false, also?: number): void {
  const e = j.open(b, c.id, who, begin, also);
  if (e !== NIL) c.put(j.slots, e, q as never, r as never, 0);
}

/** Buffers' lives of 9 events each into a journal until n events. */
function lives(j: HistoryJournal, n: number, from: number): number {
  let made = 0;
  for (let b = from; made < n; b++) {
    const all = ['read', 'write', 'share'];
    op(j, b, C.alloc, { pool: 'default', size: 4096 }, { handle: 3, buffer: b, pool: 'default', cache: 'writeback', size: 4096, usize: 4096, placement: null, segments: [{ addr: 0x220000000 + b * 4096, size: 4096 }] }, true);
    op(j, b, C.dup, { handle: 3 }, { handle: 4, rights: all });
    op(j, b, C.send, { handle: 4, to: 13 }, { to: 13, toName: 'display', rights: ['read'] }, false, 13);
    op(j, b, C.register, { handle: 3, driver: 'video' }, { driver: 'video', deviceAddress: 0x100000 + b * 4096, iommu: { iova: 1 }, bounced: 0 });
    op(j, b, C.sync, { handle: 3, phase: 'end', access: 'write' }, { phase: 'end', access: 'write', cleaned: 64, invalidated: 0, flushed: 0 });
    op(j, b, C.unregister, { driver: 'video', handle: 3 }, { driver: 'video', buffer: b, unregistered: true });
    op(j, b, C.close, { handle: 4 }, { handle: 4, closed: true });
    // the last close frees the buffer: the bus tells the free during the op, recorded after it
    j.hold(b);
    j.freedFrom(b, 'default', 4096);
    op(j, b, C.close, { handle: 3 }, { handle: 3, closed: true });
    j.release(b, who, 'close');
    made += 9;
  }
  return made;
}

const weigh = () => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const before = weigh();
const made = lives(j, n, 1);
const after = weigh();
if (j.stats().events !== made) throw new Error(`kept ${j.stats().events} of ${made}`);

// time per event in the steady state of the default bounds: the freed ring full, old journals retired as new ones come
const steady = new HistoryJournal(() => ({ enabled: true, perBuffer: 256, maxEvents: 200_000, keepFreed: 1000 }), () => (clock += 0.37));
lives(steady, 20_000, 1);
const t0 = process.hrtime.bigint();
const timed = lives(steady, n, 1_000_000);
const ns = Number(process.hrtime.bigint() - t0) / timed;
process.stdout.write(`${JSON.stringify({ events: made, bytesPerEvent: Math.round((after - before) / made), recordNsPerEvent: Math.round(ns) })}\n`);
