/**
 * Heap bytes per kept history event: record N events of the daemon's
 * shapes (alloc, dup, send, close, free over buffers of 8 events each) into
 * a HistoryJournal with room for all, and weigh the heap before and after.
 *
 *   node --expose-gc dist/bench/history-child.js [N]
 */
import { HistoryJournal } from '../daemon/session/history.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const n = Number(process.argv[2] ?? 200_000);
const lim = { enabled: true, perBuffer: 256, maxEvents: n + 16, keepFreed: n };
let clock = 0;
const j = new HistoryJournal(() => lim, () => (clock += 0.37));
const who = { id: 12, name: 'decoder' };
/** Buffers' lives of 8 events each into a journal until n events. */
function lives(j: HistoryJournal, n: number, from: number): number {
  let made = 0;
  for (let b = from; made < n; b++) {
    j.begin(b, 'alloc', who, { handle: 3, pool: 'default', cache: 'writeback', size: 4096, usize: 4096, placement: null, addr: 0x220000000 + b * 4096 });
    j.record(b, 'dup', who, { handle: 3, newHandle: 4, rights: ['read', 'write', 'share'] });
    j.record(b, 'send', who, { handle: 4, to: 13, toName: 'display', rights: ['read'] }, 13);
    j.record(b, 'register', who, { handle: 3, driver: 'video', deviceAddress: 0x100000 + b * 4096, iova: true, bounced: 0 });
    j.record(b, 'sync', who, { phase: 'end', access: 'write', offset: 0, length: null, cleaned: 64, invalidated: 0 });
    j.record(b, 'unregister', who, { driver: 'video' });
    j.record(b, 'close', who, { handle: 4 });
    j.freed(b, who, { pool: 'default', size: 4096 });
    made += 8;
  }
  return made;
}

gc();
const before = process.memoryUsage().heapUsed;
const made = lives(j, n, 1);
gc();
const after = process.memoryUsage().heapUsed;
if (j.stats().events !== made) throw new Error(`kept ${j.stats().events} of ${made}`);

// time per event in the steady state of the default bounds: the freed ring full, old journals retired as new ones come
const steady = new HistoryJournal(() => ({ enabled: true, perBuffer: 256, maxEvents: 200_000, keepFreed: 1000 }), () => (clock += 0.37));
lives(steady, 20_000, 1);
const t0 = process.hrtime.bigint();
const timed = lives(steady, n, 1_000_000);
const ns = Number(process.hrtime.bigint() - t0) / timed;
process.stdout.write(`${JSON.stringify({ events: made, bytesPerEvent: Math.round((after - before) / made), recordNsPerEvent: Math.round(ns) })}\n`);
