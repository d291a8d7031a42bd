/**
 * The status object (protocol/status.ts is its contract), assembled from
 * each concept's own report.
 */
import { acceptList } from '../session/clients.js';
import type { Status } from '../../protocol/status.js';
import { PROTOCOL_VERSION } from '../../protocol/requests.js';
import type { DaemonContext } from '../session/context.js';

export function buildStatus(ctx: DaemonContext): Status {
  const now = ctx.now();
  const m = ctx.machine;
  const tlb = ctx.drivers.swiotlb;
  const regions = m.regionStatus();
  return {
    version: ctx.version,
    protocolVersion: PROTOCOL_VERSION,
    pid: process.pid,
    uptimeMs: Math.round(now),
    socket: ctx.socketPath,
    dashboard: ctx.dashboard,
    memory: {
      total: regions.reduce((a, r) => a + r.size, 0),
      free: regions.reduce((a, r) => a + r.free, 0),
      regions,
    },
    hugepages: m.hugepageStatus(),
    pools: m.poolStatus(),
    conversions: {
      total: m.attrs.total.conversions,
      bytes: m.attrs.total.convertedBytes,
      costUs: Math.round(m.attrs.total.costNs / 1000),
    },
    clients: ctx.clients.list().map((s) => ({
      id: s.id,
      name: s.name,
      handles: s.handles?.count ?? 0,
      principal: s.principal?.name ?? 'anonymous',
      capabilities: [...s.capabilities].sort(),
      bytes: s.bytes,
      principalBytes: s.principal?.usage.bytes ?? 0,
      maxBytes: s.principal?.maxBytes ?? null,
      connectedMs: Math.round(now - s.connectedAt),
      mappings: s.handles?.held.mappings ?? 0,
      registrations: s.handles?.held.registrations ?? 0,
      accept: acceptList(s.accept),
      eventsDropped: s.eventsDropped(),
      pid: s.peer?.pid ?? null,
      uid: s.peer?.uid ?? null,
      gid: s.peer?.gid ?? null,
    })),
    buffers: { live: ctx.buffers.size, tokensInFlight: ctx.tokens.size, tokensIssued: ctx.tokens.issued, tokensImported: ctx.tokens.imported, tokensExpired: ctx.tokens.expired },
    drivers: ctx.drivers.list().map((d) => ctx.drivers.status(d)),
    coherency: {
      mode: ctx.config.coherency.mode,
      prefetch: ctx.config.coherency.prefetch,
      cache: ctx.coherency.cache.snapshot(),
      violations: { total: ctx.coherency.total, byKind: ctx.coherency.countsByKind() },
    },
    events: { subscribers: ctx.bus.size, published: ctx.bus.published, dropped: ctx.bus.droppedSubscribers },
    dma: {
      leaks: ctx.drivers.totalLeaks,
      bounce: tlb === null ? null : { base: tlb.base, size: tlb.size, slots: tlb.nslots, used: tlb.usedSlots, full: tlb.full },
    },
    faults: ctx.faults.status(),
  };
}
