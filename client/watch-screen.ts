/**
 * `bufctl watch`: what the screen shows, as lines of text. Levels (memory,
 * buffers, bytes) as the last snapshot has them; counters (allocations,
 * frees, events, registrations, violations) as rates per second between
 * the last two snapshots. On a terminal the screen is fitted: every line
 * cut to the width (never wrapped), the sections sharing the height, and a
 * section that doesn't fit says how many of its rows it shows. Pure: no I/O.
 */
import type { Status, ClientStatus, DriverStatus, PoolStatus } from '../protocol/status.js';
import { table, size, formatDuration, plural, type Column } from './format.js';
import { faultsActive, faultsSummary } from './views.js';

/** One snapshot and when the daemon took it. */
export interface Sample {
  status: Status;
  timeMs: number;
}

/** The orders the clients table cycles through (key s). */
export const SORTS = ['bytes', 'bytes/s', 'handles', 'id', 'name'] as const;
export type SortKey = (typeof SORTS)[number];

export interface ScreenState {
  cur: Sample | null;
  /** The snapshot before `cur` from the same daemon (null: no rates yet). */
  prev: Sample | null;
  /** Activity lines, newest last. */
  activity: string[];
  sort: SortKey;
  /** Shown above everything (e.g. "daemon gone, reconnecting…"). */
  notice: string | null;
  /** What the keys do, for the clients title ("" when there are none). */
  keys: string;
}

/** A titled block of rows; `tail` keeps the newest (last) rows when cut. */
interface Block {
  title: string;
  header: string | null;
  rows: string[];
  tail?: boolean;
  /** Lower goes first when the height can't hold every block. */
  priority: number;
}

/** Per-second rate of a counter between two samples, or null. */
function per(cur: number, prev: number | undefined, dtMs: number | null): number | null {
  if (dtMs === null || dtMs <= 0 || prev === undefined) return null;
  return ((cur - prev) * 1000) / dtMs;
}

/** 0.5 → "0.5", 37.2 → "37", 12345 → "12.3k"; null → "-". */
export function rate(n: number | null): string {
  if (n === null) return '-';
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (a >= 10 || n === 0) return String(Math.round(n));
  return n.toFixed(1);
}

/** A byte rate with its sign: "+1.5 MiB/s", "-4 KiB/s", "0 B/s", "-". */
function byteRate(n: number | null): string {
  if (n === null) return '-';
  const r = Math.round(n);
  return `${r > 0 ? '+' : r < 0 ? '-' : ''}${size(Math.abs(r))}/s`;
}

/** Cut a line to `width` columns (code points; the screen uses no wide characters). */
export function cut(line: string, width: number): string {
  const cps = [...line];
  return cps.length <= width ? line : cps.slice(0, width).join('');
}

/** The rates between two samples of one daemon. */
function rates(cur: Sample, prev: Sample | null) {
  const dt = prev === null || prev.status.pid !== cur.status.pid ? null : cur.timeMs - prev.timeMs;
  const p = dt === null ? null : prev!.status;
  const sum = (st: Status | null, f: (x: PoolStatus) => number) => (st === null ? undefined : st.pools.reduce((a, x) => a + f(x), 0));
  const c = cur.status;
  return {
    allocs: per(sum(c, (x) => x.nmalloc)!, sum(p, (x) => x.nmalloc), dt),
    frees: per(sum(c, (x) => x.ndalloc)!, sum(p, (x) => x.ndalloc), dt),
    events: per(c.events.published, p?.events.published, dt),
    violations: per(c.coherency.violations.total, p?.coherency.violations.total, dt),
    pool: (x: PoolStatus) => {
      const o = p?.pools.find((y) => y.name === x.name);
      return { allocs: per(x.nmalloc, o?.nmalloc, dt), frees: per(x.ndalloc, o?.ndalloc, dt), conversions: per(x.conversions, o?.conversions, dt) };
    },
    client: (x: ClientStatus) => per(x.bytes, p?.clients.find((y) => y.id === x.id)?.bytes, dt),
    driver: (x: DriverStatus) => {
      const o = p?.drivers.find((y) => y.name === x.name);
      return { registered: per(x.registered, o?.registered, dt), refused: per(x.refused, o?.refused, dt), leaks: per(x.leaks, o?.leaks, dt) };
    },
  };
}

/** Rows of an aligned table: [header, rows]; no rows: [null, ["(none)"]]. */
function tableRows<R>(rows: R[], cols: Column<R>[]): [string | null, string[]] {
  const lines = table(rows, cols).replace(/\n$/, '').split('\n');
  return rows.length === 0 ? [null, lines] : [lines[0]!, lines.slice(1)];
}

const clientName = (c: ClientStatus) => {
  const n = c.name ?? '-';
  return n.length > 20 ? `${n.slice(0, 19)}~` : n;
};

function clientsBlock(st: Status, r: ReturnType<typeof rates>, s: ScreenState): Block {
  const withRate = st.clients.map((c) => ({ c, bps: r.client(c) }));
  const by: Record<SortKey, (a: (typeof withRate)[number], b: (typeof withRate)[number]) => number> = {
    bytes: (a, b) => b.c.bytes - a.c.bytes,
    'bytes/s': (a, b) => (b.bps ?? -Infinity) - (a.bps ?? -Infinity),
    handles: (a, b) => b.c.handles - a.c.handles,
    id: (a, b) => a.c.id - b.c.id,
    name: (a, b) => (a.c.name ?? '\uffff').localeCompare(b.c.name ?? '\uffff'),
  };
  withRate.sort((a, b) => by[s.sort](a, b) || a.c.id - b.c.id);
  const mark = (key: SortKey, h: string) => (s.sort === key ? `*${h}` : h);
  const [header, rows] = tableRows(withRate, [
    { header: mark('id', 'ID'), get: (x) => x.c.id, align: 'right' },
    { header: mark('name', 'NAME'), get: (x) => clientName(x.c) },
    { header: 'PID', get: (x) => x.c.pid ?? '-', align: 'right' },
    { header: mark('handles', 'HANDLES'), get: (x) => x.c.handles, align: 'right' },
    { header: mark('bytes', 'BYTES'), get: (x) => size(x.c.bytes), align: 'right' },
    { header: mark('bytes/s', 'BYTES/s'), get: (x) => byteRate(x.bps), align: 'right' },
    { header: 'PRINCIPAL', get: (x) => x.c.principal },
    { header: 'PRINCIPAL TOTAL', get: (x) => size(x.c.principalBytes), align: 'right' },
  ]);
  const keys = s.keys === '' ? '' : `  (${s.keys})`;
  return { title: `Clients ${st.clients.length}, sorted by ${s.sort}${keys}`, header, rows, priority: 0 };
}

function poolsBlock(st: Status, r: ReturnType<typeof rates>): Block {
  const pools = st.pools.filter((p) => p.pages > 0 || p.buffers > 0);
  const [header, rows] = tableRows(
    pools.map((p) => ({ p, r: r.pool(p) })),
    [
      { header: 'POOL', get: (x) => x.p.name },
      { header: 'BUFFERS', get: (x) => x.p.buffers, align: 'right' },
      { header: 'ALLOCATED', get: (x) => size(x.p.allocated), align: 'right' },
      { header: 'MAPPED', get: (x) => size(x.p.mapped), align: 'right' },
      { header: 'ALLOC/s', get: (x) => rate(x.r.allocs), align: 'right' },
      { header: 'FREE/s', get: (x) => rate(x.r.frees), align: 'right' },
      { header: 'CONV/s', get: (x) => rate(x.r.conversions), align: 'right' },
    ],
  );
  return { title: `Pools in use (${pools.length} of ${st.pools.length})`, header, rows, priority: 1 };
}

function driversBlock(st: Status, r: ReturnType<typeof rates>): Block {
  const ds = st.drivers.map((d) => ({ d, r: r.driver(d) })).filter((x) => x.d.registrations > 0 || x.d.kind === 'client' || [x.r.registered, x.r.refused, x.r.leaks].some((v) => v !== null && v !== 0));
  const [header, rows] = tableRows(ds, [
    { header: 'DRIVER', get: (x) => x.d.name },
    { header: 'REGISTRATIONS', get: (x) => x.d.registrations, align: 'right' },
    { header: 'BYTES', get: (x) => size(x.d.bytes), align: 'right' },
    { header: 'REG/s', get: (x) => rate(x.r.registered), align: 'right' },
    { header: 'REFUSED/s', get: (x) => rate(x.r.refused), align: 'right' },
    { header: 'LEAKS/s', get: (x) => rate(x.r.leaks), align: 'right' },
  ]);
  return { title: 'Drivers in use', header, rows, priority: 3 };
}

/** The lines above the sections. */
function headLines(st: Status, r: ReturnType<typeof rates>): string[] {
  const hp = st.hugepages.map((h) => `${size(h.size)} ${h.inUse}/${h.total} in use`).join(', ');
  return [
    `bufferd ${st.version}  pid ${st.pid}  up ${formatDuration(st.uptimeMs)}  ${st.socket}`,
    `memory ${size(st.memory.total - st.memory.free)} used of ${size(st.memory.total)}  ${plural(st.buffers.live, 'buffer')}  ${plural(st.clients.length, 'client')}  ${plural(st.buffers.tokensInFlight, 'token')} in flight`,
    `per second: ${rate(r.allocs)} allocs  ${rate(r.frees)} frees  ${rate(r.events)} events  ${rate(r.violations)} violations (checker ${st.coherency.mode})`,
    `Hugepages: ${hp === '' ? 'none' : hp}`,
    // armed fault injection changes what every client sees: said above everything else
    ...(faultsActive(st.faults) ? [faultsSummary(st.faults)] : []),
  ];
}

/**
 * The screen as lines. `fitTo` (a terminal): at most `rows` lines of at
 * most `columns` columns. Without it (piped): every row, blank lines
 * between sections, activity only when `withActivity`.
 */
export function screen(s: ScreenState, fitTo: { columns: number; rows: number } | null, withActivity = true): string[] {
  const notice = s.notice === null ? [] : [s.notice];
  if (s.cur === null) return finish([...notice, 'waiting for the first snapshot…'], fitTo);
  const st = s.cur.status;
  const r = rates(s.cur, s.prev);
  const blocks: Block[] = [clientsBlock(st, r, s), poolsBlock(st, r), driversBlock(st, r)];
  if (withActivity) blocks.push({ title: 'Activity (newest last)', header: null, rows: s.activity.length === 0 ? ['  (none yet)'] : s.activity.map((l) => `  ${l}`), tail: true, priority: 2 });
  const head = [...notice, ...headLines(st, r)];
  if (fitTo === null) return [...head, ...blocks.flatMap((b) => ['', b.title, ...(b.header === null ? [] : [b.header]), ...b.rows])];
  return finish([...head, ...fitBlocks(blocks, fitTo.rows - head.length)], fitTo);
}

function finish(lines: string[], fitTo: { columns: number; rows: number } | null): string[] {
  if (fitTo === null) return lines;
  return lines.slice(0, Math.max(0, fitTo.rows)).map((l) => cut(l, Math.max(0, fitTo.columns)));
}

/**
 * Share `height` lines between the blocks: each gets its title, header and
 * one row first (the lowest priorities dropped when even that doesn't fit),
 * then one more row each in turn; blank lines between blocks if room is left.
 */
function fitBlocks(blocks: Block[], height: number): string[] {
  const base = (b: Block) => 1 + (b.header === null ? 0 : 1) + 1;
  const kept = new Set<Block>();
  let used = 0;
  for (const b of [...blocks].sort((x, y) => x.priority - y.priority)) {
    if (used + base(b) > height) continue;
    kept.add(b);
    used += base(b);
  }
  const shown = new Map<Block, number>([...kept].map((b) => [b, 1]));
  let room = height - used;
  for (let grew = true; room > 0 && grew; ) {
    grew = false;
    for (const b of blocks) {
      const n = shown.get(b);
      if (n === undefined || n >= b.rows.length || room === 0) continue;
      shown.set(b, n + 1);
      room--;
      grew = true;
    }
  }
  const out: string[] = [];
  for (const b of blocks) {
    const n = shown.get(b);
    if (n === undefined) continue;
    if (room > 0) {
      out.push('');
      room--;
    }
    const cutNote = n < b.rows.length ? ` [${n} of ${b.rows.length} shown${b.tail === true ? ', the newest' : ''}]` : '';
    out.push(b.title + cutNote);
    if (b.header !== null) out.push(b.header);
    out.push(...(b.tail === true ? b.rows.slice(b.rows.length - n) : b.rows.slice(0, n)));
  }
  return out;
}
