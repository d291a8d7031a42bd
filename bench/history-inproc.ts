/**
 * The history bench's life (alloc 4 KiB → dup → send → close ×2, the
 * receiver closing its copy) through the daemon's real dispatcher, in one
 * process, no sockets, with history on or off: what it adds up is the CPU
 * time per life (process.cpuUsage) after a warm-up. Without the sockets'
 * system calls a life costs a third of the daemon's, so what recording
 * costs stands out ~3× more than in the daemons' figure.
 *
 * One side per process, as in the daemon (history.ts runs several of each,
 * alternating): two contexts in one process share the JIT's code and
 * feedback and each other's cache lines, and showed the recording's cost
 * about twice what it is alone.
 *
 *   node dist/bench/history-inproc.js on|off [LIVES]
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

const history = process.argv[2] !== 'off';
const lives = Number(process.argv[3] ?? 30_000);
const machine = JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Record<string, unknown>;
const log = createLogger('silent', 'json', process.stderr);

interface Side {
  a: Session;
  b: Session;
  call(s: Session, op: string, f: Record<string, unknown>): Record<string, unknown>;
  /** Handles sent to b, for it to close. */
  sent: number[];
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
  return { a, b, call, sent };
}

function life(s: Side): void {
  const h = s.call(s.a, 'alloc', { pool: 'default', size: 4096 });
  const d = s.call(s.a, 'dup', { handle: h['handle'] });
  s.call(s.a, 'send', { handle: d['handle'], to: s.b.id });
  for (const fd of s.sent.splice(0)) s.call(s.b, 'close', { handle: fd });
  s.call(s.a, 'close', { handle: d['handle'] });
  s.call(s.a, 'close', { handle: h['handle'] });
}

const s = side(history);
// warm-up: past the JIT's tiers and the journal's first growth (1000 freed buffers kept, then the ring turns)
for (let i = 0; i < Math.min(5000, lives); i++) life(s);
const c0 = process.cpuUsage();
for (let i = 0; i < lives; i++) life(s);
const c = process.cpuUsage(c0);
process.stdout.write(`${JSON.stringify({ history, usPerLife: (c.user + c.system) / lives })}\n`);
