/**
 * `bufctl watch`'s screen (client/watch-screen.ts): rates per second from
 * two snapshots, the clients' sort orders, and the fit to a terminal —
 * never wider or taller than it, a cut section saying how much it shows.
 */
import t from 'tap';
import fc from 'fast-check';
import { screen, rate, cut, SORTS, type ScreenState, type Sample } from '../../client/watch-screen.js';
import type { Status, ClientStatus, PoolStatus, DriverStatus } from '../../protocol/status.js';

const MiB = 2 ** 20;

function clientRow(id: number, name: string | null, bytes: number, handles: number): ClientStatus {
  return {
    id, name, handles, principal: 'anonymous', capabilities: [], bytes, principalBytes: bytes * 2, maxBytes: null, connectedMs: 1000,
    mappings: 0, registrations: 0, accept: 'none', eventsDropped: 0, pid: 1000 + id, uid: 1000, gid: 1000,
  };
}

function poolRow(name: string, nmalloc: number, ndalloc: number, buffers: number): PoolStatus {
  return {
    name, cache: 'writeback', pageSize: 4096, region: 'dram', contiguous: false, maxAddress: null, capability: null, maxBytes: null, arena: 'per-client',
    dirtyDecayMs: 10_000, pages: buffers, requested: 0, allocated: buffers * 4096, active: 0, mapped: buffers * 4096, resident: 0, dirty: 0, retained: 0, metadata: 0,
    purges: 0, nmalloc, ndalloc, fragmentation: 1, arenas: 1, buffers, directBuffers: 0, conversions: 0, conversionCostUs: 0,
  };
}

function driverRow(name: string, registered: number, registrations: number): DriverStatus {
  return {
    name, kind: 'builtin', owner: null, description: '', coherent: true, iommu: false, registrations, bytes: registrations * MiB, iovaUsed: 0, iovaTotal: 0,
    iommuEntries: {}, bounceSlots: { used: 0, total: 0 }, registered, refused: 0, leaks: 0,
  };
}

function status(o: { pid?: number; clients: ClientStatus[]; pools: PoolStatus[]; drivers?: DriverStatus[]; published?: number; violations?: number }): Status {
  return {
    version: '0.1.0', protocolVersion: 1, pid: o.pid ?? 4242, uptimeMs: 60_000, socket: '/run/user/1000/bufferd.sock', dashboard: null,
    memory: { total: 8 * 1024 * MiB, free: 6 * 1024 * MiB, regions: [] },
    hugepages: [{ size: 2 * MiB, region: 'dram', total: 256, free: 250, reserved: 0, surplus: 0, nr: 256, overcommit: 0, available: 250, inUse: 6, requested: 256, largestFreeRun: 250 }],
    pools: o.pools, conversions: { total: 0, bytes: 0, costUs: 0 }, clients: o.clients,
    buffers: { live: 3, tokensInFlight: 0, tokensIssued: 0, tokensImported: 0, tokensExpired: 0 },
    drivers: o.drivers ?? [],
    coherency: {
      mode: 'warn', prefetch: 'none',
      cache: { lineSize: 64, cachedLines: 0, dirtyLines: 0, cleans: 0, invalidates: 0, prefetches: 0, wcFlushes: 0, wcPendingLines: 0, evictions: 0 },
      violations: { total: o.violations ?? 0, byKind: {} },
    },
    events: { subscribers: 1, published: o.published ?? 0, dropped: 0 },
    dma: { leaks: 0, bounce: null },
    faults: { armed: [], injected: { alloc: 0, hugepage: 0, iova: 0, bounce: 0, register: 0, token: 0, connection: 0 }, total: 0 },
  };
}

const state = (cur: Sample | null, prev: Sample | null, extra: Partial<ScreenState> = {}): ScreenState => ({ cur, prev, activity: [], sort: 'bytes', notice: null, keys: 's: sort, q: quit', ...extra });

/** The rows of a section (indented, up to the next title or blank line), the column header first. */
function section(lines: string[], title: string): string[] {
  const i = lines.findIndex((l) => l.startsWith(title));
  if (i < 0) return [];
  const end = lines.findIndex((l, j) => j > i && !l.startsWith(' '));
  return lines.slice(i + 1, end < 0 ? undefined : end);
}

t.test('rates per second between two snapshots of one daemon, not running totals', async (t) => {
  const prev = { timeMs: 10_000, status: status({ clients: [clientRow(1, 'cam', 1 * MiB, 2)], pools: [poolRow('default', 100, 40, 60)], drivers: [driverRow('gpu', 5, 1)], published: 500, violations: 3 }) };
  const cur = { timeMs: 12_000, status: status({ clients: [clientRow(1, 'cam', 5 * MiB, 2)], pools: [poolRow('default', 140, 50, 90)], drivers: [driverRow('gpu', 9, 3)], published: 700, violations: 4 }) };
  const lines = screen(state(cur, prev), null);
  t.match(lines.join('\n'), 'per second: 20 allocs  5.0 frees  100 events  0.5 violations (checker warn)', '40 allocs, 10 frees, 200 events, 1 violation in 2 s');
  const pool = section(lines, 'Pools in use');
  t.match(pool[0], /POOL\s+BUFFERS\s+ALLOCATED\s+MAPPED\s+ALLOC\/s\s+FREE\/s\s+CONV\/s/);
  t.match(pool[1], /default\s+90\s+360 KiB\s+360 KiB\s+20\s+5\.0\s+0$/);
  t.match(section(lines, 'Clients')[1], /cam\s+1001\s+2\s+5 MiB\s+\+2 MiB\/s\s+anonymous\s+10 MiB$/, 'bytes, bytes/s, then the principal total labelled apart');
  t.match(section(lines, 'Drivers in use')[1], /gpu\s+3\s+3 MiB\s+2\.0\s+0\s+0$/);

  const first = screen(state(cur, null), null).join('\n');
  t.match(first, 'per second: - allocs  - frees  - events  - violations', 'one snapshot: no rates yet');
  const restarted = { timeMs: 13_000, status: status({ pid: 999, clients: [], pools: [poolRow('default', 1, 0, 1)] }) };
  t.match(screen(state(restarted, cur), null).join('\n'), 'per second: - allocs', 'another daemon (pid): no rates across it');
  t.equal(rate(0), '0');
  t.equal(rate(0.25), '0.3');
  t.equal(rate(123.4), '123');
  t.equal(rate(12_345), '12.3k');
  t.equal(rate(null), '-');
});

t.test('the sort keys order the clients and mark their column', async (t) => {
  const cs = [clientRow(3, 'zed', 1 * MiB, 9), clientRow(1, 'amy', 4 * MiB, 1), clientRow(2, 'bob', 2 * MiB, 5)];
  const prev = { timeMs: 0, status: status({ clients: cs.map((c) => ({ ...c, bytes: c.id === 3 ? 0 : c.bytes })), pools: [] }) };
  const cur = { timeMs: 1000, status: status({ clients: cs, pools: [] }) };
  const want: Record<string, [string, number[]]> = {
    bytes: ['*BYTES', [1, 2, 3]],
    'bytes/s': ['*BYTES/s', [3, 1, 2]],
    handles: ['*HANDLES', [3, 2, 1]],
    id: ['*ID', [1, 2, 3]],
    name: ['*NAME', [1, 2, 3]],
  };
  t.same([...SORTS], Object.keys(want), 'the cycle');
  for (const sort of SORTS) {
    const lines = screen(state(cur, prev, { sort }), { columns: 200, rows: 50 });
    const rows = section(lines, 'Clients');
    t.match(lines.find((l) => l.startsWith('Clients')), `Clients 3, sorted by ${sort}  (s: sort, q: quit)`);
    t.ok(rows[0]!.split(/\s+/).includes(want[sort]![0]), `${sort}: ${want[sort]![0]} marks the column`);
    t.equal(rows[0]!.split('*').length, 2, `${sort}: one column marked`);
    t.same(rows.slice(1).map((r) => Number(r.trim().split(/\s+/)[0])), want[sort]![1], `${sort}: order`);
  }
});

t.test('fitted to a terminal: never wider or taller; a cut section says so', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => clientRow(i + 1, `client-with-a-long-name-${i}`, (i + 1) * MiB, i));
  const pools = Array.from({ length: 8 }, (_, i) => poolRow(`pool${i}`, 10 * i, i, i + 1));
  const cur = { timeMs: 1000, status: status({ clients: many, pools, drivers: [driverRow('gpu', 2, 2)] }) };
  const activity = Array.from({ length: 30 }, (_, i) => `   0:${String(i).padStart(2, '0')}  buffer ${i}: 4 KiB from default by somebody with a very long name indeed (#${i})`);
  const lines = screen(state(cur, null, { activity, notice: 'daemon gone, reconnecting… (connection lost)' }), { columns: 80, rows: 24 });
  t.equal(lines.length, 24, 'exactly the height: every row used');
  t.ok(lines.every((l) => [...l].length <= 80), 'no line wider than 80 columns');
  t.ok(lines.some((l) => [...l].length === 80), 'long lines cut at 80, not wrapped');
  t.equal(lines[0], 'daemon gone, reconnecting… (connection lost)', 'the notice first');
  t.match(lines.find((l) => l.startsWith('Clients')), /\[\d+ of 40 shown\]/, 'the clients title says how many it shows');
  t.match(lines.find((l) => l.startsWith('Activity')), /\[\d+ of 30 shown, the newest\]/);
  const act = section(lines, 'Activity');
  t.match(act.at(-1), 'buffer 29:', 'the newest activity line last');
  t.match(section(lines, 'Clients')[1], /^\s+40\s+client-with-a-long-~/, 'the largest client first; long names shortened');

  fc.assert(
    fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 80 }), fc.integer({ min: 0, max: 40 }), (columns, rows, n) => {
      const st = { timeMs: 1000, status: status({ clients: many.slice(0, n), pools: pools.slice(0, n % 9), drivers: [] }) };
      const out = screen(state(st, null, { activity: activity.slice(0, n) }), { columns, rows });
      return out.length <= rows && out.every((l) => [...l].length <= columns);
    }),
  );
  t.same(screen(state(null, null), { columns: 10, rows: 3 }), ['waiting fo'], 'before any snapshot, fitted too');
  t.equal(cut('abcdef', 3), 'abc');
  t.equal(cut('ab', 3), 'ab');
});

t.test('piped: every row, no cut', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => clientRow(i + 1, `c${i}`, MiB, 1));
  const cur = { timeMs: 1000, status: status({ clients: many, pools: [] }) };
  const lines = screen(state(cur, null, { activity: ['x'] }), null, false);
  t.equal(section(lines, 'Clients').length, 41, 'header and 40 rows');
  t.notOk(lines.some((l) => l.startsWith('Activity')), 'no activity section (piped, activity lines are streamed)');
  t.notOk(lines.some((l) => l.includes(' shown]')), 'nothing cut');
});

t.test('armed fault injection is said in the head lines; nothing when nothing is armed or injected', async (t) => {
  const st = status({ clients: [], pools: [] });
  const quiet = screen(state({ timeMs: 1000, status: st }, null), null, false);
  t.notOk(quiet.some((l) => l.startsWith('Fault injection')), 'nothing armed, nothing injected: no line');
  const armed = { ...st, faults: { ...st.faults, armed: [{ point: 'alloc' as const, calls: 3, fired: 1, times: null, nth: 2, probability: 1, seed: 1, client: null, pool: null, source: 'op' as const }], total: 1 } };
  const lines = screen(state({ timeMs: 1000, status: armed as Status }, null), null, false);
  t.ok(lines.slice(0, 6).includes('Fault injection: armed alloc (1/3 failed); 1 failure injected since start; details: bufctl inject'), lines.slice(0, 6).join('\n'));
});
