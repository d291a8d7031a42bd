/**
 * The history bench's life (alloc 4 KiB → dup → send → close ×2, the
 * receiver closing its copy) through the daemon's real dispatcher, in one
 * process, no sockets: two daemon contexts, history on and off, run in
 * alternating short blocks so whatever else the machine does falls on both.
 * What it adds up: the CPU time per life (process.cpuUsage) of each side.
 * Without the sockets' system calls a life is ~25–40 µs instead of
 * ~130–150 µs, so what recording costs stands out ~4× more than in the
 * daemons' figure; the two sides share the JIT's code, so a difference is
 * the recording's own work, not one process's luck.
 *
 *   node dist/bench/history-inproc.js [ROUNDS] [LIVES-PER-BLOCK]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createContext } from '../daemon/server/context.js';
import { createDispatcher } from '../daemon/server/dispatch.js';
import { newSession, type Session } from '../daemon/session/clients.js';
import { createLogger } from '../daemon/lib/log.js';
import { buildConfig } from '../daemon/config/config.js';
import { encodeValue } from '../protocol/codec.js';
import { ROOT } from './harness.js';

const rounds = Number(process.argv[2] ?? 400);
const lives = Number(process.argv[3] ?? 50);
const machine = JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Record<string, unknown>;
const log = createLogger('silent', 'json', process.stderr);

interface Side {
  a: Session;
  b: Session;
  call(s: Session, op: string, f: Record<string, unknown>): Record<string, unknown>;
  /** Handles sent to b, for it to close. */
  sent: number[];
  cpuUs: number;
}

function side(history: boolean): Side {
  const ctx = createContext(buildConfig(history ? machine : { ...machine, history: { enabled: false } }, 'bench'), log, '/nonexistent');
  const dispatch = createDispatcher(ctx);
  const peer = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
  const sent: number[] = [];
  const io = (mine: boolean) => ({
    send: (e: Record<string, unknown>) => void (mine && e['event'] === 'handle' && sent.push(e['handle'] as number)),
    stream() {},
    dropStream() {},
    buffered: () => 0,
    eventsDropped: () => 0,
  });
  const a = newSession(1, 0, peer, log, io(false) as never);
  const b = newSession(2, 0, peer, log, io(true) as never);
  ctx.clients.add(a);
  ctx.clients.add(b);
  let id = 1;
  const call = (s: Session, op: string, f: Record<string, unknown>) => {
    const r = dispatch(s, encodeValue({ op, id: id++, ...f }));
    if (r instanceof Promise || 'error' in r) throw new Error(`${op}: ${JSON.stringify(r)}`);
    return r.result as Record<string, unknown>;
  };
  call(a, 'hello', { version: 1, name: 'bench-a' });
  call(b, 'hello', { version: 1, name: 'bench-b', accept: ['bench-a'] });
  return { a, b, call, sent, cpuUs: 0 };
}

function life(s: Side): void {
  const h = s.call(s.a, 'alloc', { pool: 'default', size: 4096 });
  const d = s.call(s.a, 'dup', { handle: h['handle'] });
  s.call(s.a, 'send', { handle: d['handle'], to: s.b.id });
  for (const fd of s.sent.splice(0)) s.call(s.b, 'close', { handle: fd });
  s.call(s.a, 'close', { handle: d['handle'] });
  s.call(s.a, 'close', { handle: h['handle'] });
}

const on = side(true);
const off = side(false);
// warm-up: past the JIT's tiers and the journal's first growth (1000 freed buffers kept)
for (let i = 0; i < Math.min(3000, rounds * lives); i++) for (const s of [on, off]) life(s);
for (let r = 0; r < rounds; r++) {
  for (const s of r % 2 === 0 ? [on, off] : [off, on]) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < lives; i++) life(s);
    const c = process.cpuUsage(c0);
    s.cpuUs += c.user + c.system;
  }
}
const n = rounds * lives;
process.stdout.write(`${JSON.stringify({ onUsPerLife: on.cpuUs / n, offUsPerLife: off.cpuUs / n })}\n`);
