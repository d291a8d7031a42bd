/**
 * The status object (protocol/status.ts is its contract), assembled from
 * each concept's own report.
 */
import type { Status } from '../protocol/status.js';
import { PROTOCOL_VERSION } from '../protocol/requests.js';
import type { DaemonContext } from './context.js';

export function buildStatus(ctx: DaemonContext): Status {
  const now = ctx.now();
  const regions = ctx.config.machine.regions.map((r) => ({
    name: r.name,
    kind: r.kind,
    base: r.base,
    size: r.size,
    free: r.size,
    largestFree: r.size,
    freeByOrder: [],
  }));
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
    hugepages: [],
    pools: [],
    clients: ctx.clients.list().map((s) => ({
      id: s.id,
      name: s.name,
      handles: 0,
      connectedMs: Math.round(now - s.connectedAt),
    })),
    drivers: [],
  };
}
