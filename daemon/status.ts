/**
 * The status object (protocol/status.ts is its contract), assembled from
 * each concept's own report.
 */
import type { Status } from '../protocol/status.js';
import { PROTOCOL_VERSION } from '../protocol/requests.js';
import type { DaemonContext } from './context.js';

export function buildStatus(ctx: DaemonContext): Status {
  const now = ctx.now();
  const m = ctx.machine;
  const regions = m.regionStatus();
  return {
    version: ctx.version,
    protocolVersion: PROTOCOL_VERSION,
    pid: process.pid,
    uptimeMs: Math.round(now),
    socket: ctx.socketPath,
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
      bytes: s.principal?.usage.bytes ?? 0,
      maxBytes: s.principal?.maxBytes ?? null,
      connectedMs: Math.round(now - s.connectedAt),
    })),
    buffers: { live: ctx.buffers.size, tokensInFlight: ctx.tokens.size, tokensIssued: ctx.tokens.issued, tokensImported: ctx.tokens.imported, tokensExpired: ctx.tokens.expired },
    drivers: ctx.drivers.list().map((d) => ctx.drivers.status(d)),
    coherency: {
      mode: ctx.config.coherency.mode,
      prefetch: ctx.config.coherency.prefetch,
      cache: ctx.coherency.cache.snapshot(),
      violations: { total: ctx.coherency.total, byKind: ctx.coherency.countsByKind() },
    },
    dma: {
      leaks: ctx.drivers.totalLeaks,
      bounce: m.swiotlb === null ? null : { base: m.swiotlb.base, size: m.swiotlb.size, slots: m.swiotlb.nslots, used: m.swiotlb.usedSlots, full: m.swiotlb.full },
    },
  };
}
