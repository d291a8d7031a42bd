/**
 * Human views of daemon objects for bufctl.
 */
import type { Status, PoolStatus, HugepageStatus, PoolDetail, ClientStatus } from '../protocol/status.js';
import type { HugepagesSetResult } from '../protocol/results.js';
import { table, size, formatAddress, formatDuration, section, kindCounts, plural } from './format.js';
import { driversTable } from './views-drivers.js';

/** status.faults in one line (no newline): what is armed and how many failures were injected. */
export function faultsSummary(f: Status['faults']): string {
  const armed = f.armed.map((a) => `${a.point} (${a.fired}/${a.calls} failed)`).join(', ');
  return `Fault injection: ${armed !== '' ? `armed ${armed}` : 'nothing armed'}; ${plural(f.total, 'failure')} injected since start; details: bufctl inject`;
}

/** Is there anything to say about fault injection (something armed, or failures injected)? */
export function faultsActive(f: Status['faults'] | undefined): f is Status['faults'] {
  return f !== undefined && (f.armed.length > 0 || f.total > 0);
}

function faultsLine(f: Status['faults']): string {
  return `${faultsSummary(f)}\n`;
}

export function statusView(st: Status): string {
  const out: string[] = [];
  out.push(`bufferd ${st.version} (protocol ${st.protocolVersion})  pid ${st.pid}  up ${formatDuration(st.uptimeMs)}  socket ${st.socket}\n`);
  out.push(
    section(
      `Memory: ${size(st.memory.free)} free of ${size(st.memory.total)}`,
      table(st.memory.regions, [
        { header: 'REGION', get: (r) => r.name },
        { header: 'KIND', get: (r) => r.kind },
        { header: 'BASE', get: (r) => formatAddress(r.base) },
        { header: 'SIZE', get: (r) => size(r.size), align: 'right' },
        { header: 'FREE', get: (r) => size(r.free), align: 'right' },
        { header: 'LARGEST FREE', get: (r) => size(r.largestFree), align: 'right' },
      ]),
    ),
  );
  out.push(buddyView(st));
  out.push(section('Hugepages', hugepagesTable(st.hugepages)));
  out.push(section(`Pools (conversions: ${st.conversions.total}, ${size(st.conversions.bytes)}, simulated cost ${st.conversions.costUs} µs)`, poolsTable(st.pools)));
  out.push(section(`Clients (${plural(st.buffers.live, 'live buffer')}, ${plural(st.buffers.tokensInFlight, 'token')} in flight)`, clientsTable(st.clients)));
  const co = st.coherency;
  const kinds = kindCounts(co.violations.byKind);
  out.push(
    `Coherency: checker ${co.mode}, prefetch ${co.prefetch}; ${plural(co.violations.total, 'violation')}${kinds !== '' ? ` (${kinds})` : ''}\n` +
      `  cache: ${plural(co.cache.cachedLines, 'line')} cached (${co.cache.lineSize} B), ${co.cache.dirtyLines} dirty; ` +
      `cleans ${co.cache.cleans}, invalidates ${co.cache.invalidates}, prefetches ${co.cache.prefetches}, ` +
      `WC flushes ${co.cache.wcFlushes} (${co.cache.wcPendingLines} pending), evictions ${co.cache.evictions}\n`,
  );
  out.push(
    section(
      `Drivers (${plural(st.dma.leaks, 'leaked registration')}${st.dma.bounce !== null ? `; bounce pool ${st.dma.bounce.used}/${st.dma.bounce.slots} slots` : ''}; details: bufctl drivers)`,
      driversTable(st.drivers, { compact: true }),
    ),
  );
  // armed fault points make failures on purpose: say so, so nobody takes them for real ones
  if (faultsActive(st.faults)) out.push(faultsLine(st.faults));
  return out.join('\n');
}

/**
 * Free blocks per buddy order, one line per zone as /proc/buddyinfo: each
 * zone (DMA32 below 4 GiB, Normal above, split again at pools' maxAddress)
 * has its own buddy allocator, so a free block never spans two zones.
 */
export function buddyView(st: Status): string {
  const rows = st.memory.regions.flatMap((r) => r.zones.map((z) => ({ name: z.name, free: z.free, orders: z.freeByOrder })));
  const width = Math.max(1, ...rows.map((r) => r.orders.length));
  const cols = Array.from({ length: width }, (_, o) => ({ header: String(o), get: (r: { orders: number[] }) => r.orders[o] ?? 0, align: 'right' as const }));
  return section(
    'Free blocks per zone by buddy order, as /proc/buddyinfo (order n = 4 KiB << n)',
    table(rows, [{ header: 'ZONE', get: (r) => r.name }, { header: 'FREE', get: (r) => size(r.free), align: 'right' }, ...cols]),
  );
}

export function hugepagesTable(h: HugepageStatus[]): string {
  return table(h, [
    { header: 'SIZE', get: (x) => size(x.size) },
    { header: 'REGION', get: (x) => x.region },
    { header: 'TOTAL', get: (x) => x.total },
    { header: 'FREE', get: (x) => x.free },
    { header: 'RESERVED', get: (x) => x.reserved },
    { header: 'SURPLUS', get: (x) => x.surplus },
    { header: 'AVAILABLE', get: (x) => x.available },
    { header: 'IN USE', get: (x) => x.inUse },
    { header: 'NR', get: (x) => x.nr },
    { header: 'OVERCOMMIT', get: (x) => x.overcommit },
  ]);
}

export function poolsTable(p: PoolStatus[]): string {
  return table(p, [
    { header: 'POOL', get: (x) => x.name },
    { header: 'CACHE', get: (x) => x.cache },
    { header: 'PAGE', get: (x) => size(x.pageSize), align: 'right' },
    { header: 'REGION', get: (x) => x.region + (x.maxAddress !== null ? ` <${formatAddress(x.maxAddress)}` : '') },
    { header: 'CONTIG', get: (x) => (x.contiguous ? 'yes' : 'no') },
    { header: 'CAPABILITY', get: (x) => x.capability ?? '-' },
    { header: 'PAGES', get: (x) => x.pages, align: 'right' },
    { header: 'BUFFERS', get: (x) => x.buffers, align: 'right' },
    { header: 'ALLOCATED', get: (x) => size(x.allocated), align: 'right' },
    { header: 'ACTIVE', get: (x) => size(x.active), align: 'right' },
    { header: 'MAPPED', get: (x) => size(x.mapped), align: 'right' },
    { header: 'DIRTY', get: (x) => size(x.dirty), align: 'right' },
    { header: 'ACT/ALLOC', get: (x) => (x.allocated === 0 ? '-' : x.fragmentation.toFixed(2)), align: 'right' },
    { header: 'CONVERSIONS', get: (x) => x.conversions, align: 'right' },
  ]);
}

export function hugepagesSetView(r: HugepagesSetResult): string {
  const head =
    r.reached < r.requested
      ? `${size(r.size)} hugepages: asked for ${r.requested}, reached ${r.reached} (${r.reason ?? 'not enough contiguous memory'})\n`
      : `${size(r.size)} hugepages: nr_hugepages ${r.reached}, overcommit ${r.overcommit}\n`;
  return head + hugepagesTable([r.status]);
}

/** One pool's allocator state: totals, arenas, bins (bufctl status --pool NAME). */
export function poolDetailView(p: PoolStatus, d: PoolDetail): string {
  const out: string[] = [];
  out.push(
    `Pool ${p.name}: ${p.cache}, ${size(p.pageSize)} pages, region ${p.region}, arena ${p.arena}, dirtyDecayMs ${p.dirtyDecayMs}, direct from ${size(d.directThreshold)}\n` +
      `  requested ${size(p.requested)}  allocated ${size(p.allocated)}  active ${size(p.active)}  mapped ${size(p.mapped)}  ` +
      `dirty ${size(p.dirty)}  retained ${size(p.retained)}  metadata ${size(p.metadata)}\n` +
      `  fragmentation (active/allocated) ${p.allocated === 0 ? '-' : p.fragmentation.toFixed(3)}  buffers ${p.buffers} (direct ${p.directBuffers})  purges ${p.purges}  nmalloc ${p.nmalloc}  ndalloc ${p.ndalloc}\n`,
  );
  out.push(
    section(
      'Arenas',
      table(d.arenas, [
        { header: 'ARENA', get: (a) => a.id, align: 'right' },
        { header: 'OWNER', get: (a) => (a.owner === 0 ? 'shared' : `client ${a.owner}`) },
        { header: 'LIVE', get: (a) => a.live, align: 'right' },
        { header: 'ALLOCATED', get: (a) => size(a.allocated), align: 'right' },
        { header: 'ACTIVE', get: (a) => size(a.active), align: 'right' },
        { header: 'MAPPED', get: (a) => size(a.mapped), align: 'right' },
        { header: 'DIRTY', get: (a) => size(a.dirty), align: 'right' },
        { header: 'RETAINED', get: (a) => size(a.retained), align: 'right' },
        { header: 'CHUNKS', get: (a) => a.chunks, align: 'right' },
        { header: 'PURGES', get: (a) => a.purges, align: 'right' },
        { header: 'NMALLOC', get: (a) => a.nmalloc, align: 'right' },
        { header: 'NDALLOC', get: (a) => a.ndalloc, align: 'right' },
      ]),
    ),
  );
  out.push(
    section(
      'Bins (small size classes in use)',
      table(d.bins, [
        { header: 'SIZE', get: (b) => b.size, align: 'right' },
        { header: 'IND', get: (b) => b.ind, align: 'right' },
        { header: 'SLAB', get: (b) => size(b.slabSize), align: 'right' },
        { header: 'REGS', get: (b) => b.nregs, align: 'right' },
        { header: 'CURREGS', get: (b) => b.curregs, align: 'right' },
        { header: 'CURSLABS', get: (b) => b.curslabs, align: 'right' },
        { header: 'NONFULL', get: (b) => b.nonfull, align: 'right' },
        { header: 'UTIL', get: (b) => (b.curslabs === 0 ? '-' : (b.curregs / (b.curslabs * b.nregs)).toFixed(3)), align: 'right' },
        { header: 'NMALLOC', get: (b) => b.nmalloc, align: 'right' },
        { header: 'NDALLOC', get: (b) => b.ndalloc, align: 'right' },
      ]),
    ),
  );
  return out.join('\n');
}

/**
 * The clients with their own handles and bytes, then their principals: a
 * quota belongs to the principal and is shared by all its connections, so
 * its use and limit are shown once per principal, not on every client.
 */
export function clientsTable(cs: ClientStatus[]): string {
  const clients = table(cs, [
    { header: 'ID', get: (c) => c.id, align: 'right' },
    { header: 'NAME', get: (c) => c.name },
    { header: 'PID', get: (c) => c.pid ?? '-', align: 'right' },
    { header: 'UID', get: (c) => c.uid ?? '-', align: 'right' },
    { header: 'GID', get: (c) => c.gid ?? '-', align: 'right' },
    { header: 'PRINCIPAL', get: (c) => c.principal },
    { header: 'HANDLES', get: (c) => c.handles, align: 'right' },
    { header: 'BYTES', get: (c) => size(c.bytes), align: 'right' },
    { header: 'CONNECTED', get: (c) => formatDuration(c.connectedMs), align: 'right' },
    { header: 'CAPABILITIES', get: (c) => c.capabilities.join(',') || '-' },
  ]);
  if (cs.length === 0) return clients;
  return `${clients}\n  Principals (each quota is shared by all the principal's clients)\n${principalsTable(cs)}`;
}

/** One row per principal of the connected clients: clients, bytes against quota. */
export function principalsTable(cs: ClientStatus[]): string {
  const by = new Map<string, { principal: string; clients: number; bytes: number; maxBytes: number | null }>();
  for (const c of cs) {
    const p = by.get(c.principal);
    if (p === undefined) by.set(c.principal, { principal: c.principal, clients: 1, bytes: c.principalBytes, maxBytes: c.maxBytes });
    else p.clients++;
  }
  return table([...by.values()], [
    { header: 'PRINCIPAL', get: (p) => p.principal },
    { header: 'CLIENTS', get: (p) => p.clients, align: 'right' },
    { header: 'BYTES', get: (p) => size(p.bytes), align: 'right' },
    { header: 'QUOTA', get: (p) => (p.maxBytes === null ? 'none' : size(p.maxBytes)), align: 'right' },
    { header: 'USED', get: (p) => (p.maxBytes === null || p.maxBytes === 0 ? '-' : `${Math.round((100 * p.bytes) / p.maxBytes)}%`), align: 'right' },
  ]);
}
