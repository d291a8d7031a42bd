/**
 * Driver ops: drivers, constraints, merge, register, unregister,
 * driver.attach, driver.detach; and choosing a pool for alloc {for}.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { MergeResult, RegistrationInfo, ResultOf } from '../../protocol/results.js';
import type { DriverStatus } from '../../protocol/status.js';
import { mergeConstraints, poolMisfits, validateConstraints, type MergedAttributes, type Constraints } from '../../protocol/attributes.js';
import { formatSize } from '../../protocol/units.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import type { Driver, Registration } from '../dma/drivers.js';
import { R_READ, R_WRITE, rightsList } from '../buffers/handles.js';
import { hasCapability, requireCapability } from '../session/auth.js';
import { handlesOf as table } from '../session/clients.js';
import { sliced, type Work } from '../lib/slices.js';
import { whileConnected } from './coherency.js';

export function drivers(ctx: DaemonContext): { drivers: DriverStatus[] } {
  return { drivers: ctx.drivers.list().map((d) => ctx.drivers.status(d)) };
}

export function constraints(ctx: DaemonContext, _s: Session, req: RequestOf<'constraints'>) {
  const d = ctx.drivers.get(req.driver);
  return { driver: d.name, kind: d.kind, description: d.description, constraints: d.constraints };
}

/** Merge the named drivers' constraints; EINVAL listing every conflict. */
function mergeOf(ctx: DaemonContext, names: string[]): MergedAttributes {
  const list = names.map((n) => ({ driver: n, constraints: ctx.drivers.get(n).constraints }));
  const { merged, conflicts } = mergeConstraints(list);
  if (conflicts.length > 0) {
    throw new BufferdError(
      'EINVAL',
      `the constraints of ${names.join(', ')} conflict: ${conflicts.map((c) => `${c.attribute}: ${c.message} (${c.wants.map((w) => `${w.driver} wants ${JSON.stringify(w.value)}`).join('; ')})`).join('; ')}`,
      { conflicts },
    );
  }
  return merged;
}

function poolsFor(ctx: DaemonContext, s: Session, merged: MergedAttributes): MergeResult['pools'] {
  return ctx.drivers.poolFacts().map((p) => {
    const cap = ctx.machine.pool(p.name).cfg.capability;
    const misfits = poolMisfits(merged, p);
    return { name: p.name, fits: misfits.length === 0, allowed: cap === null || hasCapability(s.capabilities, cap), misfits };
  });
}

export function merge(ctx: DaemonContext, s: Session, req: RequestOf<'merge'>): MergeResult {
  const merged = mergeOf(ctx, req.drivers);
  return { merged, pools: poolsFor(ctx, s, merged) };
}

const describeMerged = (m: MergedAttributes) =>
  [
    `cache in {${m.cache.join(', ')}}`,
    m.contiguous ? 'physically contiguous' : 'scatter-gather allowed',
    m.addressLimit !== null ? `below ${formatSize(m.addressLimit)}` : null,
    m.regions !== null ? `region in {${m.regions.join(', ')}}` : null,
    m.align > 1 ? `aligned to ${formatSize(m.align)}` : null,
  ]
    .filter((x) => x !== null)
    .join(', ');

/** Pools to try for alloc {for}, best first, with the reason; the merged alignment. */
export function planFor(ctx: DaemonContext, s: Session, names: string[]): { merged: MergedAttributes; candidates: { pool: string; reason: string }[] } {
  const merged = mergeOf(ctx, names);
  const pools = poolsFor(ctx, s, merged);
  const fitting = pools.filter((p) => p.fits);
  if (fitting.length === 0) {
    throw new BufferdError(
      'ENOENT',
      `no pool satisfies ${names.join(' + ')} (${describeMerged(merged)}): ${pools.map((p) => `${p.name}: ${p.misfits.map((m) => m.attribute).join(', ')}`).join('; ')}`,
      { merged, pools },
    );
  }
  const allowed = fitting.filter((p) => p.allowed);
  if (allowed.length === 0) {
    const cap = ctx.machine.pool(fitting[0]!.name).cfg.capability!;
    requireCapability(s.capabilities, cap, `allocating for ${names.join(' + ')} (pools that fit: ${fitting.map((p) => p.name).join(', ')})`);
  }
  const reason = `first pool in config order that satisfies ${names.join(' + ')}: ${describeMerged(merged)}`;
  return { merged, candidates: allowed.map((p) => ({ pool: p.name, reason })) };
}

export function registrationInfo(r: Registration): RegistrationInfo {
  const bounced = r.pieces.filter((p) => p.bounce).reduce((a, p) => a + p.len, 0);
  const entries: Record<string, number> = {};
  if (r.iommu !== null) for (const [k, v] of [...r.iommu.entries].sort((a, b) => a[0] - b[0])) entries[String(k)] = v;
  return {
    driver: r.driver.name,
    buffer: r.buffer.id,
    deviceAddress: r.deviceAddress,
    segments: r.segments.map((x) => ({ ...x })),
    iommu: r.iommu === null ? null : { entries, iova: r.iommu.base, iovaSize: r.iommu.size },
    bounced,
    direction: r.direction,
  };
}

export function register(ctx: DaemonContext, s: Session, req: RequestOf<'register'>): RegistrationInfo | Promise<RegistrationInfo> {
  const t = table(s);
  const h = t.get(req.handle);
  const d = ctx.drivers.get(req.driver);
  // the registration keeps the buffer alive after close(handle): it takes a slot of the registrant's maxHandles
  t.ensureRoom();
  // a client driver gets its own handle on the buffer, which it did not ask for: make sure it has room before mapping anything
  const owner = d.owner !== null ? ctx.clients.byId(d.owner) : undefined;
  if (owner !== undefined && owner !== s) owner.handles!.ensureRoom(`driver '${d.name}' (client ${d.owner})`, true);
  if (owner === s) {
    // its own driver: the registration and the driver's handle both take a slot
    t.hold('registrations');
    try {
      t.ensureRoom();
    } finally {
      t.release('registrations');
    }
  }
  let r: Registration;
  try {
    // two buffers in one cache line (dma-debug's active cachelines): recorded, or refused in strict mode
    r = ctx.drivers.register(d, h.buffer, s.id, req.direction ?? 'bidirectional', (reg) => ctx.coherency.checkOverlap({ id: s.id, name: s.name }, reg, ctx.drivers.cachelines.overlaps(reg)));
  } catch (e) {
    if (e instanceof BufferdError) ctx.bus.publish('drivers', 'refuse', { driver: d.name, buffer: h.buffer.id, client: s.id, code: e.code, mismatches: e.details?.['mismatches'] ?? null });
    throw e;
  }
  t.hold('registrations');
  const bounced = r.pieces.filter((p) => p.bounce).reduce((a, p) => a + p.len, 0);
  ctx.bus.publish('drivers', 'register', { driver: d.name, buffer: h.buffer.id, client: s.id, deviceAddress: r.deviceAddress, bounced, direction: r.direction });
  const work = function* () {
    // dma_map: clean for the device, fill bounce slots, the device takes the buffer (sliced for big buffers)
    yield* ctx.coherency.mapped(r);
    if (owner !== undefined && !owner.closed && owner.handles !== null) {
      const dh = owner.handles.open(h.buffer, h.rights & (R_READ | R_WRITE));
      r.driverHandle = dh;
      owner.send({
        event: 'registration',
        driver: d.name,
        handle: dh.fd,
        buffer: h.buffer.id,
        size: h.buffer.phys.size,
        deviceAddress: r.deviceAddress,
        segments: r.segments,
        registrant: s.id,
        rights: rightsList(dh.rights),
        direction: r.direction,
      });
    }
    s.log.debug({ driver: d.name, buffer: h.buffer.id, deviceAddress: r.deviceAddress }, 'register');
    return registrationInfo(r);
  };
  // a registration dropped meanwhile (its client or driver left) is torn down by whoever dropped it
  return sliced(work(), () => {
    whileConnected(s)();
    if (!ctx.drivers.live(r)) throw new BufferdError('ENOENT', `the registration of buffer ${r.buffer.id} with '${d.name}' was dropped while it was being made`, { driver: d.name, buffer: r.buffer.id });
  });
}

/** Unregister (dma_unmap), closing a client driver's handle for it. Runs to its end once started. */
export function* dropRegistration(ctx: DaemonContext, r: Registration): Work<void> {
  const d = r.driver;
  r.dying = true;
  yield* ctx.coherency.unmapping(r);
  ctx.drivers.unregister(r);
  ctx.clients.byId(r.registrant)?.handles?.release('registrations');
  ctx.bus.publish('drivers', 'unregister', { driver: d.name, buffer: r.buffer.id, client: r.registrant });
  const owner = d.owner !== null ? ctx.clients.byId(d.owner) : undefined;
  if (owner !== undefined && r.driverHandle !== null) {
    const t = owner.handles!;
    const mine = r.driverHandle;
    // close the handle this registration opened, only if the driver has not closed it already
    const open = t.has(mine);
    if (open) t.close(mine.fd);
    owner.send({ event: 'unregistration', driver: d.name, handle: mine.fd, buffer: r.buffer.id, closed: open });
  }
}

export function unregister(ctx: DaemonContext, s: Session, req: RequestOf<'unregister'>): ResultOf<'unregister'> | Promise<ResultOf<'unregister'>> {
  const d = ctx.drivers.get(req.driver);
  if ((req.handle === undefined) === (req.buffer === undefined)) {
    throw new BufferdError('EINVAL', "give either 'handle' or 'buffer' (exactly one) (op 'unregister')");
  }
  let r: Registration;
  if (req.handle !== undefined) {
    const b = table(s).get(req.handle).buffer;
    const found = d.registrations.get(b.id);
    if (found === undefined || found.dying) {
      // dma-debug: unmap of something that was never mapped
      ctx.coherency.violate(b, { id: s.id, name: s.name }, 'unregister-not-registered', 'unregister', 0, b.phys.size, d.name, `client ${s.id} unregistered buffer ${b.id} from '${d.name}', which it is not registered with`, true);
      throw new BufferdError('ENOENT', `buffer ${b.id} is not registered with driver '${d.name}'`, { driver: d.name, buffer: b.id });
    }
    r = found;
  } else {
    const found = d.registrations.get(req.buffer!);
    if (found === undefined || found.dying || found.registrant !== s.id) {
      throw new BufferdError('ENOENT', `no registration of buffer ${req.buffer} with driver '${d.name}' made by this client`, { driver: d.name, buffer: req.buffer });
    }
    r = found;
  }
  const id = r.buffer.id;
  const work = function* () {
    // the check may refuse (strict mode) before anything changes; once the teardown starts it runs to its end
    yield* ctx.coherency.checkUnmap({ id: s.id, name: s.name }, r);
    if (!ctx.drivers.live(r)) throw new BufferdError('ENOENT', `buffer ${id} is not registered with driver '${d.name}' (dropped meanwhile)`, { driver: d.name, buffer: id });
    yield* dropRegistration(ctx, r);
    return { driver: d.name, buffer: id, unregistered: true as const };
  };
  return sliced(work());
}

/** Drop registrations as leaks: log, count, tell the buffer's holders; returns how many. */
export function* reportLeaks(ctx: DaemonContext, which: { driver?: Driver; registrant?: number }, reason: string): Work<number> {
  const leaks = ctx.drivers.dropLeaks(which, reason);
  for (const { reg } of leaks) reg.dying = true;
  for (const { reg, leak } of leaks) {
    // told once the registration is gone (the drop is sliced: status in between still shows it), to whoever held the buffer before
    const holders = [...reg.buffer.holders.keys()];
    yield* dropRegistration(ctx, reg);
    ctx.log.warn({ ...leak }, `DMA registration leaked: buffer ${leak.buffer} still registered with '${leak.driver}' (${reason})`);
    ctx.bus.publish('drivers', 'leak', { ...leak, client: leak.registrant });
    for (const holder of holders) ctx.clients.byId(holder)?.send({ event: 'leak', ...leak }, true);
  }
  return leaks.length;
}

/**
 * The daemon is stopping: drop registrations without calling them leaks.
 * The daemon ends these sessions, not the clients, so nothing was
 * forgotten; they are released as an unregister would (debug log only).
 */
export function* releaseAtShutdown(ctx: DaemonContext, which: { driver?: Driver; registrant?: number }): Work<number> {
  const regs = ctx.drivers.inForce(which);
  for (const r of regs) r.dying = true;
  for (const r of regs) {
    ctx.log.debug({ driver: r.driver.name, buffer: r.buffer.id, registrant: r.registrant }, 'registration released at shutdown');
    yield* dropRegistration(ctx, r);
  }
  return regs.length;
}

export function attach(ctx: DaemonContext, s: Session, req: RequestOf<'driver.attach'>): { name: string; constraints: Constraints } {
  requireCapability(s.capabilities, 'driver', 'driver.attach');
  const bad = validateConstraints(req.constraints);
  for (const r of req.constraints.regions ?? []) if (!ctx.machine.cfg.regions.some((x) => x.name === r)) bad.push(`no region named '${r}'`);
  if (bad.length > 0) throw new BufferdError('EINVAL', `field 'constraints': ${bad.join('; ')} (op 'driver.attach')`);
  if (req.constraints.bounce === true && ctx.drivers.swiotlb === null) {
    throw new BufferdError('EINVAL', "field 'constraints.bounce': this machine has no bounce pool (op 'driver.attach')");
  }
  const d = ctx.drivers.attach(s.id, req.name, req.constraints);
  s.log.info({ driver: d.name }, 'client attached as a driver');
  ctx.bus.publish('drivers', 'attach', { driver: d.name, client: s.id });
  return { name: d.name, constraints: d.constraints };
}

export function detach(ctx: DaemonContext, s: Session, req: RequestOf<'driver.detach'>): { name: string; leaks: number } | Promise<{ name: string; leaks: number }> {
  const d = ctx.drivers.get(req.name);
  if (d.owner !== s.id) throw new BufferdError('EPERM', `driver '${d.name}' is not attached by this connection`, { driver: d.name });
  const work = function* () {
    const leaks = yield* reportLeaks(ctx, { driver: d }, 'driver detached');
    ctx.drivers.detach(d);
    ctx.bus.publish('drivers', 'detach', { driver: d.name, client: s.id, leaks });
    return { name: d.name, leaks };
  };
  return sliced(work());
}
