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
  const buffersByOwner = new Map<number, number>();
  for (const b of m.allBuffers()) buffersByOwner.set(b.owner, (buffersByOwner.get(b.owner) ?? 0) + 1);
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
      handles: buffersByOwner.get(s.id) ?? 0,
      connectedMs: Math.round(now - s.connectedAt),
    })),
    drivers: [],
  };
}
