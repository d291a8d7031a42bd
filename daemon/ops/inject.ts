/**
 * Fault-injection ops: inject.set, inject.clear, inject.list (admin only),
 * arming the points from the config file (at start and on reload), and the
 * `connection` point, which the server asks before it dispatches a request.
 * The injector itself is lib/faultinject.ts; each point is asked where its
 * real failure arises (alloc/pool.ts, memory/hugepages.ts, dma/iommu.ts,
 * dma/swiotlb.ts, dma/drivers.ts, buffers/tokens.ts).
 */
import type { RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { FaultSpec } from '../../protocol/ops/inject.js';
import type { FaultInjectionConfig } from '../config/config.js';
import type { Logger } from '../lib/log.js';
import type { Machine } from '../alloc/machine.js';
import type { DriverRegistry } from '../dma/drivers.js';
import type { TokenTable } from '../buffers/tokens.js';
import { FAULT_MEANING, FAULT_POINTS, FaultInjector, type FaultPoint } from '../lib/faultinject.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { ADMIN, requireCapability } from '../session/auth.js';

/** The daemon's injector, wired into every place a point is asked, armed from the config. */
export function createFaults(cfg: FaultInjectionConfig, log: Logger, parts: { machine: Machine; drivers: DriverRegistry; tokens: TokenTable }): FaultInjector {
  const f = new FaultInjector();
  // as the kernel's `verbose`: each injected failure is logged
  f.onFire = (p, site) => log.warn({ point: p.point, client: site.client ?? null, pool: site.pool ?? null, fired: p.fired, left: p.times }, `fault injected at '${p.point}'`);
  parts.machine.injectFaults(f);
  parts.drivers.faults = f;
  if (parts.drivers.swiotlb !== null) parts.drivers.swiotlb.faults = f;
  parts.tokens.faults = f;
  armFromConfig(f, cfg);
  return f;
}

/** Arm the file's points (source 'config'); points it armed before and no longer names are cleared. */
export function armFromConfig(f: FaultInjector, cfg: FaultInjectionConfig): FaultPoint[] {
  f.clear(undefined, 'config');
  const armed: FaultPoint[] = [];
  for (const p of FAULT_POINTS) {
    const spec = cfg[p];
    if (spec === undefined) continue;
    f.arm(p, spec, 'config');
    armed.push(p);
  }
  return armed;
}

/** The spec fields of a request (what inject.set and the config share). */
function specOf(req: RequestOf<'inject.set'>): FaultSpec {
  const spec: FaultSpec = {};
  for (const k of ['nth', 'probability', 'times', 'client', 'pool', 'seed'] as const) {
    if (req[k] !== undefined) (spec as Record<string, unknown>)[k] = req[k];
  }
  return spec;
}

export function set(ctx: DaemonContext, s: Session, req: RequestOf<'inject.set'>): ResultOf<'inject.set'> {
  requireCapability(s.capabilities, ADMIN, 'inject.set');
  if (req.pool !== undefined) ctx.machine.pool(req.pool); // ENOENT naming the pools
  const armed = ctx.faults.arm(req.point, specOf(req), 'op');
  s.log.info({ ...armed }, `fault point '${req.point}' armed`);
  return armed;
}

export function clear(ctx: DaemonContext, s: Session, req: RequestOf<'inject.clear'>): ResultOf<'inject.clear'> {
  requireCapability(s.capabilities, ADMIN, 'inject.clear');
  const cleared = ctx.faults.clear(req.point);
  if (cleared.length > 0) s.log.info({ cleared }, 'fault points disarmed');
  return { cleared };
}

export function list(ctx: DaemonContext, s: Session): ResultOf<'inject.list'> {
  requireCapability(s.capabilities, ADMIN, 'inject.list');
  return { ...ctx.faults.status(), points: FAULT_POINTS.map((point) => ({ point, meaning: FAULT_MEANING[point] })) };
}

/**
 * The `connection` point, asked for each request of an open session before
 * it is dispatched: true means drop the client (close its socket) instead.
 */
export function dropsConnection(ctx: DaemonContext, s: Session): boolean {
  return s.open && ctx.faults.isArmed('connection') && ctx.faults.shouldFail('connection', { client: s.name });
}
