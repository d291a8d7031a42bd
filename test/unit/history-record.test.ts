/**
 * The recording wrapper alone (ops/history-record.ts): handlers stubbed as
 * the daemon's are (a result, a promise, a typed error, an internal error),
 * a real handle table and journal. Each op's outcome is recorded once, in
 * order; a refusal with its code; an op on a handle that is not open
 * records nothing; with history off the wrapper only calls through.
 */
import t from 'tap';
import { BufferdError } from '../../protocol/errors.js';
import { recordHistory } from '../../daemon/ops/history-record.js';
import { HistoryJournal, flat, type HistoryLimits } from '../../daemon/session/history.js';
import { HandleTable, SharedBuffer, R_ALL } from '../../daemon/buffers/handles.js';
import type { DaemonContext } from '../../daemon/session/context.js';
import type { Session } from '../../daemon/session/clients.js';

type Fn = (ctx: DaemonContext, s: Session, req: Record<string, unknown>) => unknown;

function setup() {
  const lim: HistoryLimits = { enabled: true, perBuffer: 64, maxEvents: 1000, keepFreed: 10 };
  const history = new HistoryJournal(() => lim, () => 1);
  const ctx = { history, buffers: new Map(), clients: { byId: () => undefined } } as unknown as DaemonContext;
  const table = new HandleTable(1, 100);
  const b = new SharedBuffer({ id: 5 } as never, 1, () => history.freed(5, null, { pool: 'p', size: 1 }));
  history.begin(5, 'alloc', { id: 1, name: 'u' }, {});
  const h = table.open(b, R_ALL);
  const s = { id: 1, name: 'u', handles: table, mappings: new Map() } as unknown as Session;
  let calls = 0;
  const stubs: Record<string, Fn> = {
    dup: (_c, _s, q) => (calls++, Promise.resolve({ handle: 1, rights: ['read'], of: q['handle'] })),
    close: (_c, _s, q) => (calls++, table.close(q['handle'] as number), Promise.resolve({ handle: q['handle'], closed: true })),
    fence: () => (calls++, Promise.reject(new BufferdError('EBUSY', 'busy now'))),
    sync: () => {
      calls++;
      throw new Error('boom');
    },
    send: () => {
      calls++;
      throw new BufferdError('EPERM', 'not accepted', { mismatches: 'not a list' });
    },
    ping: () => (calls++, { uptimeMs: 1 }),
  };
  const w = recordHistory(stubs) as Record<string, Fn>;
  return { lim, history, ctx, s, h, w, calls: () => calls };
}

t.test('outcomes, sync and async, recorded in order', async (t) => {
  const { history, ctx, s, h, w, calls } = setup();
  t.same(await w['dup']!(ctx, s, { handle: h.fd }), { handle: 1, rights: ['read'], of: h.fd });
  await t.rejects(w['fence']!(ctx, s, { handle: h.fd }) as Promise<unknown>, { code: 'EBUSY' });
  t.throws(() => w['sync']!(ctx, s, { handle: h.fd, phase: 'start', access: 'rw' }), { message: 'boom' });
  t.throws(() => w['send']!(ctx, s, { handle: h.fd, to: 2 }), { code: 'EPERM' });
  t.same(w['ping']!(ctx, s, {}), { uptimeMs: 1 }, 'an op without a recipe is the handler itself');
  t.throws(() => w['sync']!(ctx, s, { handle: 77, phase: 'start', access: 'rw' }), { message: 'boom' }, 'a handle not open: the error, nothing recorded');
  await w['close']!(ctx, s, { handle: h.fd });
  const ev = history.get(5)!.events.map(flat);
  t.same(ev.map((e) => e.kind), ['alloc', 'dup', 'refused', 'refused', 'refused', 'close', 'free']);
  t.match(ev[1], { handle: h.fd, newHandle: 1, rights: ['read'] });
  t.match(ev[2], { op: 'fence', code: 'EBUSY', message: 'busy now' });
  t.match(ev[3], { op: 'sync', code: 'EIO', message: 'boom' });
  t.match(ev[4], { op: 'send', code: 'EPERM' });
  t.notOk('mismatches' in ev[4]!, 'details that are not a mismatch list are left out');
  t.match(ev[6], { kind: 'free', client: 1, after: 'close' }, 'the free the close caused, after it');
  t.equal(calls(), 7);
});

t.test('history off: the handlers alone', async (t) => {
  const { lim, history, ctx, s, h, w } = setup();
  lim.enabled = false;
  t.same(await w['dup']!(ctx, s, { handle: h.fd }), { handle: 1, rights: ['read'], of: h.fd });
  lim.enabled = true;
  t.equal(history.get(5), undefined, 'nothing kept, nothing recorded');
});

t.test('device.copy: each buffer in its role, a handle not open leaves the other in its own', async (t) => {
  const { history, ctx, s, h } = setup();
  const w = recordHistory({
    'device.copy': (_c: DaemonContext, _s: Session, q: Record<string, unknown>) => {
      if (q['src'] === 77) throw new BufferdError('EBADF', 'handle 77 is not open on this connection');
      return { copied: 16 };
    },
  }) as Record<string, Fn>;
  w['device.copy']!(ctx, s, { driver: 'gpu', src: h.fd, dst: h.fd, length: 16 });
  t.throws(() => w['device.copy']!(ctx, s, { driver: 'gpu', src: 77, dst: h.fd, length: 16 }), { code: 'EBADF' });
  const ev = history.get(5)!.events.map(flat);
  t.same(ev.map((e) => e.kind), ['alloc', 'device.copy', 'device.copy', 'refused']);
  t.match(ev[1], { role: 'src', length: 16 });
  t.match(ev[2], { role: 'dst', length: 16 });
  t.match(ev[3], { op: 'device.copy', code: 'EBADF' }, 'the destination that was open has the refusal; the source, not open, nothing');
});
