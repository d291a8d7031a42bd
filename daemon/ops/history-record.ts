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
import { rightsList, type SharedBuffer } from '../buffers/handles.js';
import type { ExpiredToken } from '../buffers/tokens.js';
import type { Topic } from '../session/events.js';
import type { Work } from '../lib/slices.js';
import type { HistoryJournal } from '../session/history.js';
import { NIL, type EventSlots } from '../session/history-slots.js';
import { OP_CODECS, type OpCodec } from '../session/history-codecs.js';

type Fields = Record<string, unknown>;
type AnyHandler = (ctx: DaemonContext, s: Session, req: never) => unknown;

interface Recipe<K extends OpName> {
  /** The buffer the op concerns, looked up before it runs (none: the op will fail on its own). */
  on?(ctx: DaemonContext, s: Session, req: RequestOf<K>): SharedBuffer | undefined;
  /** A second one (device.copy's destination; no op concerns more). */
  on2?(ctx: DaemonContext, s: Session, req: RequestOf<K>): SharedBuffer | undefined;
  /** A buffer the op made or found (alloc, importFd), from its result. */
  made?(ctx: DaemonContext, r: ResultOf<K>): SharedBuffer | undefined;
  /** What the event keeps (session/history-codecs.ts): the readable event is made when someone reads. */
  codec: OpCodec<K>;
  /** More the event keeps, known here only (an import's sender). */
  then?(slots: EventSlots, e: number, r: ResultOf<K>): void;
}

/** The buffer behind a handle of this session, or none (the op will answer EBADF itself). */
const byHandle = (s: Session, fd: number): SharedBuffer | undefined => s.handles?.find(fd)?.buffer;

const byMapping = (s: Session, id: number): SharedBuffer | undefined => s.mappings.get(id)?.buffer;

const byReqHandle = (_c: DaemonContext, s: Session, req: { handle: number }) => byHandle(s, req.handle);
const onVia = (_c: DaemonContext, s: Session, req: { handle?: number; mapping?: number }) =>
  req.handle !== undefined ? byHandle(s, req.handle) : req.mapping !== undefined ? byMapping(s, req.mapping) : undefined;

/** The sender of the token being imported: the bus tells it during the import, the recipe takes it after. */
let importing: { buffer: number; from: number; fromName: string | null } | null = null;

const C = OP_CODECS as { [K in OpName]: OpCodec<K> };
const handleOp = <K extends OpName>(codec: OpCodec<K>) => ({ on: byReqHandle as unknown as Recipe<K>['on'], codec });

const RECIPES: { [K in OpName]?: Recipe<K> } = {
  alloc: { made: (ctx, r) => ctx.buffers.get(r.buffer), codec: C.alloc },
  importFd: { made: (ctx, r) => ctx.buffers.get(r.buffer), codec: C.importFd },
  import: {
    made: (ctx, r) => ctx.buffers.get(r.buffer),
    codec: C.import,
    then: (sl, e, r) => {
      if (importing?.buffer === r.buffer) {
        sl.v[2]![e] = importing.from;
        sl.v[3]![e] = importing.fromName;
      }
    },
  },
  dup: handleOp(C.dup),
  close: handleOp(C.close),
  send: handleOp(C.send),
  export: handleOp(C.export),
  exportFd: handleOp(C.exportFd),
  write: { on: onVia, codec: C.write },
  read: { on: onVia, codec: C.read },
  register: handleOp(C.register),
  unregister: {
    on: (ctx, s, q) => (q.handle !== undefined ? byHandle(s, q.handle) : q.buffer !== undefined ? ctx.buffers.get(q.buffer) : undefined),
    codec: C.unregister,
  },
  'device.write': handleOp(C['device.write']),
  'device.read': handleOp(C['device.read']),
  'device.fill': handleOp(C['device.fill']),
  'device.copy': { on: (_c, s, q) => byHandle(s, q.src), on2: (_c, s, q) => byHandle(s, q.dst), codec: C['device.copy'] },
  sync: handleOp(C.sync),
  map: handleOp(C.map),
  unmap: { on: (_c, s, q) => byMapping(s, q.mapping), codec: C.unmap },
  fence: handleOp(C.fence),
};

/**
 * A recipe as the wrapper reads it: every one made by this one literal, its
 * absent parts null, so all share one hidden class and the wrapper's reads
 * (one closure's code for every op) stay monomorphic instead of going
 * through V8's megamorphic stub cache (see history-codecs.ts' `add`).
 */
interface Prepared {
  readonly on: NonNullable<Recipe<OpName>['on']> | null;
  readonly on2: NonNullable<Recipe<OpName>['on2']> | null;
  readonly made: NonNullable<Recipe<OpName>['made']> | null;
  readonly codec: OpCodec<OpName>;
  readonly then: NonNullable<Recipe<OpName>['then']> | null;
}

const prepared = (r: Recipe<OpName>): Prepared => ({ on: r.on ?? null, on2: r.on2 ?? null, made: r.made ?? null, codec: r.codec, then: r.then ?? null });

/** A refusal as the journal keeps it: the code, the sentence, and a driver's mismatches (bounded). */
function refusal(op: string, e: unknown): Fields {
  if (!(e instanceof BufferdError)) return { op, code: 'EIO', message: String((e as Error)?.message ?? e).slice(0, 200) };
  const f: Fields = { op, code: e.code, message: e.message.slice(0, 400) };
  const m = e.details?.['mismatches'];
  if (Array.isArray(m)) f['mismatches'] = m.slice(0, 16);
  return f;
}

/** One event of a successful op on a buffer it made (`begin`: the buffer's first), or on the i-th it held (journal slot `j`). */
function note(h: HistoryJournal, r: Prepared, b: SharedBuffer, j: number, s: Session, begin: boolean, also: number | undefined, req: never, res: never, i: number): void {
  const e = j === MADE ? h.open(b.id, r.codec.id, s, begin, also) : h.openHeld(j, b.id, r.codec.id, s, also);
  if (e === NIL) return;
  r.codec.put(h.slots, e, req, res, i);
  if (r.then !== null) r.then(h.slots, e, res);
}

/** `note`'s slot for a buffer the op made (not held: it did not exist before). */
const MADE = -2;

/**
 * Record an op's outcome on the buffers it concerned (`b0`, `b1`, each
 * maybe none): its event, or `refused`; then let a free it caused be
 * recorded. `j0`, `j1`: the journal slots `hold` gave them.
 */
function finish(ctx: DaemonContext, s: Session, op: OpName, r: Prepared, req: never, b0: SharedBuffer | undefined, b1: SharedBuffer | undefined, j0: number, j1: number, res: unknown, err: unknown): void {
  const h = ctx.history;
  if (err === undefined) {
    const made = r.made !== null ? r.made(ctx, res as never) : undefined;
    if (made !== undefined) note(h, r, made, MADE, s, op === 'alloc', undefined, req, res as never, 0);
    else {
      const also = op === 'send' ? (res as { to: number }).to : undefined;
      if (b0 !== undefined) note(h, r, b0, j0, s, false, also, req, res as never, 0);
      if (b1 !== undefined) note(h, r, b1, j1, s, false, also, req, res as never, 1);
    }
    if (op === 'import') importing = null;
  } else {
    if (b0 !== undefined) h.record(b0.id, 'refused', s, refusal(op, err));
    if (b1 !== undefined) h.record(b1.id, 'refused', s, refusal(op, err));
  }
  if (b0 !== undefined) h.releaseAt(j0, b0.id, s, op);
  if (b1 !== undefined) h.releaseAt(j1, b1.id, s, op);
}

/** The op table with each buffer op's outcome recorded (when history is on). */
export function recordHistory<T extends Record<string, unknown>>(table: T): T {
  const out: Record<string, unknown> = { ...table };
  for (const op of Object.keys(RECIPES) as OpName[]) {
    const inner = table[op] as AnyHandler;
    const r = prepared(RECIPES[op] as unknown as Recipe<OpName>);
    out[op] = (ctx: DaemonContext, s: Session, req: never) => {
      const h = ctx.history;
      if (!h.enabled) return inner(ctx, s, req);
      const b0 = r.on !== null ? r.on(ctx, s, req) : undefined;
      const b1 = r.on2 !== null ? r.on2(ctx, s, req) : undefined;
      const j0 = b0 !== undefined ? h.hold(b0.id) : NIL;
      const j1 = b1 !== undefined ? h.hold(b1.id) : NIL;
      let res: unknown;
      try {
        res = inner(ctx, s, req);
      } catch (e) {
        finish(ctx, s, op, r, req, b0, b1, j0, j1, undefined, e);
        throw e;
      }
      if (res instanceof Promise) {
        return res.then(
          (v: unknown) => {
            finish(ctx, s, op, r, req, b0, b1, j0, j1, v, undefined);
            return v;
          },
          (e: unknown) => {
            finish(ctx, s, op, r, req, b0, b1, j0, j1, undefined, e);
            throw e;
          },
        );
      }
      finish(ctx, s, op, r, req, b0, b1, j0, j1, res, undefined);
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
      h.freedFrom(buffer, d['pool'] as string, d['size'] as number);
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

/**
 * A token expired unimported (tokens.ts onExpire): an `expire` event on its
 * buffer, by the daemon, before the free its in-flight reference may have
 * been keeping back — so the free that follows has its reason.
 */
export function recordTokenExpiry(ctx: DaemonContext, t: ExpiredToken): void {
  if (!ctx.history.enabled) return;
  ctx.history.record(t.buffer.id, 'expire', null, { from: t.from, fromName: t.fromName, rights: rightsList(t.rights) });
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
  for (const [buffer, e] of held) {
    ctx.history.record(buffer, 'disconnect', s, e);
    if (++n % 256 === 0) yield;
  }
}
