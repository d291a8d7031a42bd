/**
 * Recording buffer histories (session/history.ts keeps them). Two hooks,
 * both in this file:
 *
 * - the op table, wrapped once (`recordHistory`): each op that concerns a
 *   buffer has a recipe — which buffers it touches, found before it runs (a
 *   close leaves nothing to look up after), and what its event says, from
 *   the request and the result. A refused op on a buffer is recorded as
 *   `refused` with its code, message and mismatches. With history off the
 *   wrapper only calls through.
 * - the event bus (`historyTap`): what happens outside any request or is
 *   only known inside one — frees (whoever dropped the last reference),
 *   violations, leaks, the sender of an imported token.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { OpName, RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { Topic } from '../session/events.js';
import type { Work } from '../lib/slices.js';

type Fields = Record<string, unknown>;
type AnyHandler = (ctx: DaemonContext, s: Session, req: never) => unknown;

interface Recipe<K extends OpName> {
  /** The buffers the op concerns, looked up before it runs (none: the op will fail on its own). */
  on?(ctx: DaemonContext, s: Session, req: RequestOf<K>): SharedBuffer[];
  /** A buffer the op made or found (alloc, importFd), from its result. */
  made?(ctx: DaemonContext, r: ResultOf<K>): SharedBuffer | undefined;
  /** What the event says about the i-th buffer; null: another hook records it. */
  says(req: RequestOf<K>, r: ResultOf<K>, i: number): Fields | null;
}

const NONE: SharedBuffer[] = [];

/** The buffer behind a handle of this session, or none (the op will answer EBADF itself). */
function byHandle(s: Session, fd: number): SharedBuffer[] {
  const t = s.handles;
  if (t === null) return [];
  try {
    return [t.get(fd).buffer];
  } catch {
    return [];
  }
}

const byMapping = (s: Session, id: number): SharedBuffer[] => {
  const m = s.mappings.get(id);
  return m === undefined ? [] : [m.buffer];
};

const handleOp = { on: (_c: DaemonContext, s: Session, req: { handle: number }) => byHandle(s, req.handle) };
const viaOf = (req: { handle?: number; mapping?: number }): Fields => (req.handle !== undefined ? { handle: req.handle } : { mapping: req.mapping });
const onVia = (_c: DaemonContext, s: Session, req: { handle?: number; mapping?: number }) =>
  req.handle !== undefined ? byHandle(s, req.handle) : req.mapping !== undefined ? byMapping(s, req.mapping) : [];

/** The sender of the token being imported: the bus tells it during the import, the recipe takes it after. */
let importing: { buffer: number; from: number; fromName: string | null } | null = null;

const RECIPES: { [K in OpName]?: Recipe<K> } = {
  alloc: {
    made: (ctx, r) => ctx.buffers.get(r.buffer),
    says: (_q, r) => ({ handle: r.handle, pool: r.pool, cache: r.cache, size: r.size, usize: r.usize, placement: r.placement, addr: r.segments[0]?.addr ?? null }),
  },
  importFd: {
    made: (ctx, r) => ctx.buffers.get(r.buffer),
    says: (_q, r) => ({ handle: r.handle, rights: r.rights }),
  },
  import: {
    made: (ctx, r) => ctx.buffers.get(r.buffer),
    says: (_q, r) => {
      const from = importing?.buffer === r.buffer ? { from: importing.from, fromName: importing.fromName } : {};
      importing = null;
      return { handle: r.handle, rights: r.rights, ...from };
    },
  },
  dup: { ...handleOp, says: (q, r) => ({ handle: q.handle, newHandle: r.handle, rights: r.rights }) },
  close: { ...handleOp, says: (q) => ({ handle: q.handle }) },
  send: { ...handleOp, says: (q, r) => ({ handle: q.handle, to: r.to, toName: r.toName, rights: r.rights }) },
  export: { ...handleOp, says: (q, r) => ({ handle: q.handle, rights: r.rights, expiresInMs: r.expiresInMs }) },
  exportFd: { ...handleOp, says: (q, r) => ({ handle: q.handle, rights: r.rights, readOnly: r.readOnly }) },
  write: { on: onVia, says: (q, r) => ({ ...viaOf(q), offset: q.offset, length: r.written }) },
  read: { on: onVia, says: (q, r) => ({ ...viaOf(q), offset: q.offset, length: r.data.length }) },
  register: {
    ...handleOp,
    says: (q, r) => ({ handle: q.handle, driver: r.driver, deviceAddress: r.deviceAddress, iova: r.iommu !== null, bounced: r.bounced }),
  },
  unregister: {
    on: (ctx, s, q) => (q.handle !== undefined ? byHandle(s, q.handle) : q.buffer !== undefined ? [ctx.buffers.get(q.buffer)].filter((b) => b !== undefined) : []),
    says: (q) => ({ driver: q.driver }),
  },
  'device.write': { ...handleOp, says: (q, r) => ({ driver: q.driver, offset: q.offset, length: r.written }) },
  'device.read': { ...handleOp, says: (q, r) => ({ driver: q.driver, offset: q.offset, length: r.data.length }) },
  'device.fill': { ...handleOp, says: (q, r) => ({ driver: q.driver, offset: q.offset, length: r.filled, value: q.value }) },
  'device.copy': {
    on: (_c, s, q) => [...byHandle(s, q.src), ...byHandle(s, q.dst)],
    says: (q, r, i) => ({ driver: q.driver, role: i === 0 ? 'src' : 'dst', length: r.copied }),
  },
  sync: {
    ...handleOp,
    says: (q, r) => ({ phase: r.phase, access: r.access, offset: q.offset ?? 0, length: q.length ?? null, cleaned: r.cleaned, invalidated: r.invalidated }),
  },
  map: { ...handleOp, says: (q, r) => ({ handle: q.handle, mapping: r.mapping, rights: r.rights, fd: r.fd }) },
  unmap: { on: (_c, s, q) => byMapping(s, q.mapping), says: (q) => ({ mapping: q.mapping }) },
  fence: { ...handleOp, says: (_q, r) => ({ flushed: r.flushed }) },
};

/** A refusal as the journal keeps it: the code, the sentence, and a driver's mismatches (bounded). */
function refusal(op: string, e: unknown): Fields {
  if (!(e instanceof BufferdError)) return { op, code: 'EIO', message: String((e as Error)?.message ?? e).slice(0, 200) };
  const f: Fields = { op, code: e.code, message: e.message.slice(0, 400) };
  const m = e.details?.['mismatches'];
  if (Array.isArray(m)) f['mismatches'] = m.slice(0, 16);
  return f;
}

/** Record an op's outcome on the buffers it concerned: its event, or `refused`; then let a free it caused be recorded. */
function finish(ctx: DaemonContext, s: Session, op: OpName, r: Recipe<OpName>, req: never, on: SharedBuffer[], res: unknown, err: unknown): void {
  const h = ctx.history;
  const actor = { id: s.id, name: s.name };
  if (err === undefined) {
    const made = r.made?.(ctx, res as never);
    const bufs = made !== undefined ? [made] : on;
    for (let i = 0; i < bufs.length; i++) {
      const f = r.says(req, res as never, i);
      if (f === null) continue;
      if (op === 'alloc') h.begin(bufs[i]!.id, 'alloc', actor, f);
      else h.record(bufs[i]!.id, op, actor, f, op === 'send' ? (res as { to: number }).to : undefined);
    }
  } else {
    for (const b of on) h.record(b.id, 'refused', actor, refusal(op, err));
  }
  for (const b of on) h.release(b.id, actor, op);
}

/** The op table with each buffer op's outcome recorded (when history is on). */
export function recordHistory<T extends Record<string, unknown>>(table: T): T {
  const out: Record<string, unknown> = { ...table };
  for (const op of Object.keys(RECIPES) as OpName[]) {
    const inner = table[op] as AnyHandler;
    const r = RECIPES[op] as unknown as Recipe<OpName>;
    out[op] = (ctx: DaemonContext, s: Session, req: never) => {
      if (!ctx.history.enabled) return inner(ctx, s, req);
      const on = r.on?.(ctx, s, req) ?? NONE;
      for (const b of on) ctx.history.hold(b.id);
      let res: unknown;
      try {
        res = inner(ctx, s, req);
      } catch (e) {
        finish(ctx, s, op, r, req, on, undefined, e);
        throw e;
      }
      if (res instanceof Promise) {
        return res.then(
          (v: unknown) => {
            finish(ctx, s, op, r, req, on, v, undefined);
            return v;
          },
          (e: unknown) => {
            finish(ctx, s, op, r, req, on, undefined, e);
            throw e;
          },
        );
      }
      finish(ctx, s, op, r, req, on, res, undefined);
      return res;
    };
  }
  return out as T;
}

/** The bus hook: frees, violations, leaks, and who sent an imported token. */
export function historyTap(ctx: DaemonContext): (topic: Exclude<Topic, 'status'>, kind: string, d: Fields) => void {
  return (topic, kind, d) => {
    const buffer = d['buffer'];
    if (typeof buffer !== 'number') return;
    const h = ctx.history;
    if (topic === 'alloc' && kind === 'free') {
      h.freed(buffer, null, { pool: d['pool'], size: d['size'] });
    } else if (topic === 'handles' && kind === 'import') {
      importing = { buffer, from: d['from'] as number, fromName: (d['fromName'] as string | null) ?? null };
    } else if (topic === 'violations') {
      const c = d['client'] as { id: number; name: string | null };
      h.record(buffer, 'violation', { id: c.id, name: c.name }, { violation: kind, op: d['op'], driver: d['driver'], range: d['range'], mode: d['mode'], message: d['message'] });
    } else if (topic === 'drivers' && kind === 'leak') {
      const reg = d['registrant'] as number;
      h.record(buffer, 'leak', { id: reg, name: ctx.clients.byId(reg)?.name ?? h.nameOf(buffer, reg) }, { driver: d['driver'], reason: d['reason'] });
    }
  };
}

/** Handle numbers a departure event lists (`count` has them all). */
const DEPARTURE_HANDLES = 16;

/**
 * A client is gone: on each buffer it still held or mapped, a `disconnect`
 * event with the handles and mappings its teardown is about to drop (the
 * teardown closes them one by one; the free that may follow is the
 * daemon's). In slices, before the teardown: a client may hold many.
 */
export function* recordDeparture(ctx: DaemonContext, s: Session): Work<void> {
  if (!ctx.history.enabled) return;
  const held = new Map<number, { handles: number[]; count: number; mappings: number }>();
  const entry = (id: number) => held.get(id) ?? held.set(id, { handles: [], count: 0, mappings: 0 }).get(id)!;
  let n = 0;
  for (const h of s.handles?.all() ?? []) {
    const e = entry(h.buffer.id);
    if (e.handles.length < DEPARTURE_HANDLES) e.handles.push(h.fd);
    e.count++;
    if (++n % 256 === 0) yield;
  }
  for (const m of s.mappings.values()) entry(m.buffer.id).mappings++;
  const actor = { id: s.id, name: s.name };
  for (const [buffer, e] of held) {
    ctx.history.record(buffer, 'disconnect', actor, e);
    if (++n % 256 === 0) yield;
  }
}
