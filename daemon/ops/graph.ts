/**
 * The `graph` op: the ownership graph. Nodes are clients, buffers and
 * drivers; edges say who holds a buffer (handle numbers and rights), whom
 * it was passed to (from its history), which drivers it is registered with,
 * who maps it and which tokens in flight hold it. A buffer held only by a
 * token or only by registrations is marked with its `shape`: the usual
 * leaks.
 *
 * Bounded: at most `limit` buffers and about MAX_GRAPH_BYTES of answer
 * (`truncated` says when some were left out), built in slices
 * (lib/slices.ts) so a daemon with 100k buffers answers others meanwhile.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { GraphEdge, GraphNode, GraphResult } from '../../protocol/ops/history.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { rightsList, type SharedBuffer } from '../buffers/handles.js';
import { ADMIN, hasCapability } from '../session/auth.js';
import { sliced, type Work } from '../lib/slices.js';

/** About how many bytes of nodes and edges one answer carries (well under the 4 MiB frame). */
export const MAX_GRAPH_BYTES = 1024 * 1024;
/** Handle numbers listed on one holds edge (`count` has them all). */
const MAX_EDGE_HANDLES = 32;
/** Rough encoded sizes, for the answer's bound. */
const NODE_BYTES = 96;
const EDGE_BYTES = 112;

const cid = (id: number) => `client:${id}`;
const bid = (id: number) => `buffer:${id}`;
const did = (name: string) => `driver:${name}`;

export function graph(ctx: DaemonContext, s: Session, req: RequestOf<'graph'>): GraphResult | Promise<GraphResult> {
  return sliced(build(ctx, s, req), () => {
    if (s.closed) throw new BufferdError('ECONNRESET', `client ${s.id} disconnected during the operation`);
  });
}

/** The buffers a client holds a handle or a mapping on. */
function heldBy(c: Session): SharedBuffer[] {
  const set = new Set<SharedBuffer>();
  for (const h of c.handles?.all() ?? []) set.add(h.buffer);
  for (const m of c.mappings.values()) set.add(m.buffer);
  return [...set].sort((a, b) => a.id - b.id);
}

function* candidates(ctx: DaemonContext, s: Session, req: RequestOf<'graph'>): Work<{ list: SharedBuffer[]; more: boolean }> {
  const admin = hasCapability(s.capabilities, ADMIN);
  const limit = req.limit ?? 1000;
  let focus: Session | undefined;
  if (req.client !== undefined) {
    focus = typeof req.client === 'number' ? ctx.clients.byId(req.client) : ctx.clients.byName(req.client);
    if (focus === undefined) throw new BufferdError('ENOENT', `no connected client ${typeof req.client === 'number' ? req.client : `'${req.client}'`}`, { client: req.client });
  }
  if (req.buffer !== undefined) {
    const b = ctx.buffers.get(req.buffer);
    if (b === undefined) throw new BufferdError('ENOENT', `no live buffer ${req.buffer} (bufctl history shows a freed one's life)`, { buffer: req.buffer });
    if (!admin && !heldBy(s).includes(b)) throw new BufferdError('EPERM', `buffer ${req.buffer} is not held by client ${s.id}; only admins see every buffer`, { buffer: req.buffer });
    return { list: [b], more: false };
  }
  let pool: Iterable<SharedBuffer>;
  let related: ((b: SharedBuffer) => boolean) | null = null;
  if (!admin) {
    // a client sees the buffers it holds or maps, and of those, the ones `focus` touches
    pool = heldBy(s);
    if (focus !== undefined) related = touches(ctx, focus);
  } else {
    pool = ctx.buffers.values(); // in id order (ids only grow)
    if (focus !== undefined) related = touches(ctx, focus);
  }
  const list: SharedBuffer[] = [];
  let n = 0;
  for (const b of pool) {
    if (++n % 512 === 0) yield;
    if (related !== null && !related(b)) continue;
    if (list.length === limit) return { list, more: true };
    list.push(b);
  }
  return { list, more: false };
}

/** Does the client hold, map, have registered or have a token in flight on the buffer? */
function touches(ctx: DaemonContext, c: Session): (b: SharedBuffer) => boolean {
  const mine = new Set(heldBy(c));
  let tokens: ReturnType<typeof ctx.tokens.byBuffer> | undefined;
  return (b) =>
    mine.has(b) ||
    ctx.drivers.registrationsOf(b).some((r) => r.registrant === c.id) ||
    (b.refs.inflight > 0 && ((tokens ??= ctx.tokens.byBuffer()).get(b.id) ?? []).some((t) => t.from === c.id));
}

function* build(ctx: DaemonContext, s: Session, req: RequestOf<'graph'>): Work<GraphResult> {
  const { list, more } = yield* candidates(ctx, s, req);
  return yield* graphOf(ctx, list, more);
}

/** The graph around these buffers (`more`: others were left out). Also the dashboard's, for the newest buffers. */
export function* graphOf(ctx: DaemonContext, list: SharedBuffer[], more: boolean): Work<GraphResult> {
  const chosen = new Set(list.map((b) => b.id));
  // who holds and maps the chosen buffers: each holder's table read once
  const holds = new Map<number, Map<number, { handle: number; rights: number }[]>>(); // buffer → client → handles
  const maps = new Map<number, Map<number, number[]>>(); // buffer → client → mapping ids
  const holderIds = new Set<number>();
  for (const b of list) for (const c of b.holders.keys()) holderIds.add(c);
  const anyMapped = list.some((b) => b.refs.mappings > 0);
  let n = 0;
  for (const c of ctx.clients.list()) {
    if (holderIds.has(c.id)) {
      for (const h of c.handles?.all() ?? []) {
        if (++n % 512 === 0) yield;
        if (!chosen.has(h.buffer.id)) continue;
        const byClient = holds.get(h.buffer.id) ?? holds.set(h.buffer.id, new Map()).get(h.buffer.id)!;
        const l = byClient.get(c.id) ?? byClient.set(c.id, []).get(c.id)!;
        l.push({ handle: h.fd, rights: h.rights });
      }
    }
    if (anyMapped) {
      for (const m of c.mappings.values()) {
        if (++n % 512 === 0) yield;
        if (!chosen.has(m.buffer.id)) continue;
        const byClient = maps.get(m.buffer.id) ?? maps.set(m.buffer.id, new Map()).get(m.buffer.id)!;
        (byClient.get(c.id) ?? byClient.set(c.id, []).get(c.id)!).push(m.id);
      }
    }
  }
  const tokens = list.some((b) => b.refs.inflight > 0) ? ctx.tokens.byBuffer() : new Map<number, never[]>();

  const clients = new Map<number, string | null>();
  const seeClient = (id: number, name: string | null) => {
    if (!clients.has(id) || (clients.get(id) === null && name !== null)) clients.set(id, ctx.clients.byId(id)?.name ?? name);
  };
  const bufferNodes: GraphNode[] = [];
  const drivers = new Set<string>();
  const edges: GraphEdge[] = [];
  let bytes = 0;
  let truncated = more;
  for (const b of list) {
    if (++n % 64 === 0) yield;
    const mine: GraphEdge[] = [];
    const held = holds.get(b.id) ?? new Map<number, { handle: number; rights: number }[]>();
    for (const c of [...held.keys()].sort((x, y) => x - y)) {
      const hs = held.get(c)!.sort((x, y) => x.handle - y.handle);
      mine.push({ type: 'holds', from: cid(c), to: bid(b.id), handles: hs.slice(0, MAX_EDGE_HANDLES).map((h) => ({ handle: h.handle, rights: rightsList(h.rights) })), count: hs.length });
    }
    for (const t of tokens.get(b.id) ?? []) {
      mine.push({ type: 'token-in-flight', from: cid(t.from), to: bid(b.id), rights: rightsList(t.rights), expiresInMs: t.expiresInMs });
    }
    const regs = ctx.drivers.registrationsOf(b);
    for (const r of regs) mine.push({ type: 'registered-with', from: bid(b.id), to: did(r.driver.name), deviceAddress: r.deviceAddress, registrant: r.registrant });
    const mapped = maps.get(b.id);
    for (const c of [...(mapped?.keys() ?? [])].sort((x, y) => x - y)) mine.push({ type: 'mapped-by', from: bid(b.id), to: cid(c), mappings: mapped!.get(c)!.sort((x, y) => x - y) });
    // passed-to, from the journal: one edge per sender, receiver and way, with how many times
    const passes = new Map<string, GraphEdge & { type: 'passed-to' }>();
    for (const e of ctx.history.get(b.id)?.events ?? []) {
      let from: number, to: number, via: 'send' | 'import';
      const f = e.fields;
      if (e.kind === 'send' && typeof f['to'] === 'number' && e.client !== null) {
        [from, to, via] = [e.client, f['to'], 'send'];
        seeClient(from, e.clientName);
        seeClient(to, (f['toName'] as string | null) ?? null);
      } else if (e.kind === 'import' && typeof f['from'] === 'number' && e.client !== null) {
        [from, to, via] = [f['from'], e.client, 'import'];
        seeClient(from, (f['fromName'] as string | null) ?? null);
        seeClient(to, e.clientName);
      } else continue;
      const key = `${from} ${to} ${via}`;
      const p = passes.get(key);
      if (p !== undefined) p.count++;
      else passes.set(key, { type: 'passed-to', from: cid(from), to: cid(to), buffer: b.id, via, count: 1 });
    }
    mine.push(...passes.values());
    const cost = NODE_BYTES + mine.reduce((a, e) => a + EDGE_BYTES + (e.type === 'holds' ? e.handles.length * 24 : 0), 0);
    if (bytes + cost > MAX_GRAPH_BYTES && bufferNodes.length > 0) {
      truncated = true;
      break;
    }
    bytes += cost;
    for (const e of mine) {
      if (e.type === 'holds' || e.type === 'token-in-flight') seeClient(Number(e.from.slice(7)), null);
      if (e.type === 'mapped-by') seeClient(Number(e.to.slice(7)), null);
      if (e.type === 'registered-with') {
        drivers.add(e.to.slice(7));
        seeClient(e.registrant, null);
      }
    }
    edges.push(...mine);
    bufferNodes.push({ id: bid(b.id), type: 'buffer', buffer: b.id, pool: b.phys.pool.name, size: b.phys.size, shape: shapeOf(b, regs.filter((r) => r.driverHandle !== null).length) });
  }
  const nodes: GraphNode[] = [
    ...[...clients.keys()].sort((x, y) => x - y).map((id): GraphNode => ({ id: cid(id), type: 'client', client: id, name: clients.get(id)!, connected: ctx.clients.byId(id) !== undefined })),
    ...bufferNodes,
    ...[...drivers].sort().map((d): GraphNode => ({ id: did(d), type: 'driver', driver: d })),
  ];
  return { nodes, edges, truncated };
}

/**
 * The usual leak shapes: nothing but a token in flight keeps the buffer,
 * or nothing but registrations (and the handles they opened in client
 * drivers' tables).
 */
export function shapeOf(b: SharedBuffer, driverHandles: number): 'token-only' | 'registration-only' | null {
  if (b.refs.handles - driverHandles > 0 || b.refs.mappings > 0) return null;
  if (b.refs.inflight > 0 && b.refs.registrations === 0) return 'token-only';
  if (b.refs.registrations > 0 && b.refs.inflight === 0) return 'registration-only';
  return null;
}
