/**
 * Building the daemon's context (session/context.ts says what it is): the
 * machine, drivers, cache and coherency model, principals, tokens, the
 * event bus, the deadline timers, and the teardown of a departed client.
 */
import type { Config } from '../config/config.js';
import type { Logger } from '../lib/log.js';
import { ClientRegistry } from '../session/clients.js';
import { VERSION } from '../lib/version.js';
import { Machine } from '../alloc/machine.js';
import type { Session } from '../session/clients.js';
import { DeadlineTimer } from '../lib/timers.js';
import { Authenticator } from '../session/auth.js';
import { TokenTable } from '../buffers/tokens.js';
import { SharedBuffer } from '../buffers/handles.js';
import { DriverRegistry } from '../dma/drivers.js';
import { CpuCache } from '../dma/cache.js';
import { Coherency } from '../dma/coherency.js';
import { SharedMemory } from '../dma/shared.js';
import { EventBus } from '../session/events.js';
import { onSessionClose } from '../ops/index.js';
import { HistoryJournal } from '../session/history.js';
import { historyTap, recordDeparture, recordTokenExpiry } from '../ops/history-record.js';
import { snapshot } from '../ops/dashboard.js';
import { createFaults } from '../ops/inject.js';
import { Background, type Work } from '../lib/slices.js';
import { native, nativeReason } from '../lib/native.js';
import type { DaemonContext } from '../session/context.js';

export type { DaemonContext } from '../session/context.js';

/** `clock` replaces the monotonic clock (a replay runs on the recorded one, server/replay.ts). */
export function createContext(config: Config, log: Logger, socketPath: string, clock?: () => number): DaemonContext {
  const t0 = performance.now();
  const now = clock ?? (() => performance.now() - t0);
  const sys = native();
  if (sys === null) log.warn({ reason: nativeReason() }, 'no shared memory: buffers live in the daemon alone (map and exportFd answer ENOTSUP)');
  const machine = new Machine(config.machine, now, sys);
  for (const w of machine.warnings) log.warn(w);
  const auth = new Authenticator(config.auth, config.limits, config.fileTokens);
  const tokens = new TokenTable(now);
  const buffers = new Map<number, SharedBuffer>();
  const clients = new ClientRegistry();
  const drivers = new DriverRegistry(machine, config.machine.drivers, config.coherency.lineSize);
  const cc = config.coherency;
  const cache = new CpuCache(machine.mem.store, { lineSize: cc.lineSize, capacityLines: cc.cacheLines, eviction: cc.eviction, wcLines: cc.wcLines, seed: cc.seed });
  const shared = new SharedMemory(sys, machine.mem.store, nativeReason(), cc.lineSize);
  const faults = createFaults(config.faultInjection, log, { machine, drivers, tokens });
  const coherency = new Coherency(cache, machine.mem.store, { mode: cc.mode, prefetch: cc.prefetch, prefetchRate: cc.prefetchRate, ringSize: cc.ringSize }, {
    registrations: (b) => drivers.registrationsOf(b),
    modeFor: (b) => b.phys.pool.cfg.coherency ?? ctx.config.coherency.mode,
    report: (v, b) => {
      bus.publish('violations', v.kind, { ...v });
      log.warn({ violation: v.kind, client: v.client.id, buffer: v.buffer, driver: v.driver, op: v.op, mode: v.mode }, v.message);
      // the buffer's holders, and the offending client even if it only holds a mapping
      for (const id of new Set([...b.holders.keys(), v.client.id])) clients.byId(id)?.send({ event: 'violation', ...v }, true);
    },
    now,
  }, shared);
  machine.onPages = (segs) => coherency.forget(segs);
  const bus = new EventBus(
    {
      // read at each use, so a reload applies at once
      get maxBuffered() {
        return ctx.config.events.maxBuffered;
      },
      get maxBufferedTotal() {
        return ctx.config.events.maxBufferedTotal;
      },
      get allocRate() {
        return ctx.config.events.allocRate;
      },
      now,
      snapshot: (full) => snapshot(ctx, full),
    },
    log,
  );
  // Deadlines only come earlier where they are made: a dirty chunk when a
  // buffer is freed (share's release below, whoever drops the last
  // reference: an op, an expired token, a closed connection) or when a
  // reload shortens the decay; a token when one is issued. A deadline that
  // moves later (a chunk reused, a token taken) just fires early and re-arms.
  const decay = new DeadlineTimer('decay', () => machine.nextDecayDeadline(), () => machine.purgeExpired(), now, log);
  const expiry = new DeadlineTimer('token expiry', () => tokens.nextExpiry(), () => tokens.sweep(), now, log);
  const timers: DeadlineTimer[] = [decay, expiry];
  const background = new Background((err) => log.error({ err }, 'error in background work'));
  /** What a departed client leaves: registrations (leaks, unless the daemon is stopping), its drivers, brackets, mappings, handles, arenas. */
  function* teardown(s: Session): Work<void> {
    yield* recordDeparture(ctx, s);
    yield* onSessionClose(ctx, s);
    yield* coherency.clientGone(s.id);
    for (const m of s.mappings.values()) m.buffer.unref('mappings');
    s.mappings.clear();
    if (s.handles !== null) yield* s.handles.closeAllWork();
    machine.ownerGone(s.id);
    // once per disconnect, after the arenas are settled (the frees above armed it already)
    decay.arm();
  }
  const ctx: DaemonContext = {
    config,
    log,
    version: VERSION,
    socketPath,
    clients,
    machine,
    now,
    timers,
    auth,
    tokens,
    buffers,
    drivers,
    coherency,
    shared,
    bus,
    history: new HistoryJournal(() => ctx.config.history, now),
    dashboard: null,
    fdbox: null,
    faults,
    journal: null,
    stopping: false,
    background,
    sessionClosed: (s) => {
      if (s.subscription !== null) bus.unsubscribe(s.subscription);
      if (s.open) bus.publish('clients', 'disconnect', { client: s.id, name: s.name });
      // the rest may be long (big registrations, many handles): in slices, in the background
      background.run(teardown(s));
    },
    armDecay: () => decay.arm(),
    armTokens: () => expiry.arm(),
    share: (phys, creator) => {
      // the quota charge travels with the buffer: released when it is freed, even after its creator left
      const usage = creator.principal!.usage;
      const b = new SharedBuffer(phys, creator.id, (x) => {
        buffers.delete(x.id);
        bus.publish('alloc', 'free', { buffer: x.id, pool: x.phys.pool.name, size: x.phys.size });
        // a mapped buffer's frames go back to their region first (processes keep their memfd copy)
        shared.release(x);
        machine.free(x.phys);
        usage.bytes -= x.phys.usize;
        creator.bytes -= x.phys.usize;
        // the freed pages may leave a chunk dirty: a new decay deadline
        decay.arm();
      });
      usage.bytes += phys.usize;
      creator.bytes += phys.usize;
      buffers.set(b.id, b);
      bus.publish('alloc', 'alloc', { buffer: b.id, pool: phys.pool.name, size: phys.size, client: creator.id, name: creator.name });
      return b;
    },
  };
  bus.tap = historyTap(ctx);
  tokens.onExpire = (t) => recordTokenExpiry(ctx, t);
  return ctx;
}
