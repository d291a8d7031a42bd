/**
 * Reloading the configuration without dropping clients (SIGHUP, or the
 * `reload` op). What can change at runtime is applied; structural changes
 * are listed as needing a restart and the running values stay. A file that
 * fails validation is rejected whole: nothing changes.
 */
import { loadConfig, type Config } from '../config/config.js';
import type { DaemonContext } from '../session/context.js';
import type { PoolConfig } from '../alloc/pool.js';
import { formatSize } from '../../protocol/units.js';
import { armFromConfig } from './inject.js';

/** "1 token", "2 tokens". */
const count = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

export interface ReloadResult {
  source: string;
  applied: string[];
  ignored: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const STRUCTURAL: (keyof PoolConfig)[] = ['cache', 'pageSize', 'region', 'contiguous', 'maxAddress', 'arena'];

/** Load the file again and apply it; throws ConfigError (nothing changed) when it is invalid. */
export function reloadConfig(ctx: DaemonContext, path: string | undefined, onLeaks: (driver: string) => number): ReloadResult {
  const next = loadConfig(path);
  const old = ctx.config;
  const applied: string[] = [];
  const ignored: string[] = [];
  const m = ctx.machine;

  if (!same(next.machine.regions, old.machine.regions)) ignored.push('memory regions (restart to change)');
  if (!same(next.machine.bounce, old.machine.bounce)) ignored.push('bounce pool (restart to change)');
  for (const k of ['lineSize', 'prefetch', 'prefetchRate', 'seed', 'eviction', 'cacheLines', 'wcLines', 'ringSize'] as const) {
    if (next.coherency[k] !== old.coherency[k]) ignored.push(`coherency.${k} (restart to change)`);
  }

  for (const h of next.machine.hugepages) {
    const o = old.machine.hugepages.find((x) => x.size === h.size);
    if (o === undefined || o.region !== h.region) {
      ignored.push(`hugepages ${formatSize(h.size)}: a new size or region needs a restart`);
      continue;
    }
    if (o.nr === h.nr && o.overcommit === h.overcommit) continue;
    const r = m.setHugepages(h.size, h.nr, h.overcommit);
    ctx.bus.publish('hugepages', 'resize', { size: r.size, requested: r.requested, reached: r.reached, overcommit: r.overcommit, reload: true });
    applied.push(`hugepages ${formatSize(h.size)}: nr ${o.nr} → ${h.nr} (reached ${r.reached}), overcommit ${o.overcommit} → ${r.overcommit}`);
    o.nr = h.nr;
    o.overcommit = r.overcommit;
  }
  for (const o of old.machine.hugepages) if (!next.machine.hugepages.some((x) => x.size === o.size)) ignored.push(`hugepages ${formatSize(o.size)}: removing a size needs a restart`);

  for (const p of next.machine.pools) {
    const pool = m.pools.get(p.name);
    if (pool === undefined) {
      ignored.push(`pool '${p.name}': adding a pool needs a restart`);
      continue;
    }
    const cfg = pool.cfg;
    const changed = STRUCTURAL.filter((k) => !same(cfg[k], p[k]));
    if (changed.length > 0) ignored.push(`pool '${p.name}': ${changed.join(', ')} (restart to change)`);
    if (cfg.maxBytes !== p.maxBytes) applied.push(`pool '${p.name}': maxBytes ${cfg.maxBytes ?? 'none'} → ${p.maxBytes ?? 'none'}`);
    if (cfg.capability !== p.capability) applied.push(`pool '${p.name}': capability ${cfg.capability ?? 'none'} → ${p.capability ?? 'none'}`);
    if (cfg.coherency !== p.coherency) applied.push(`pool '${p.name}': coherency ${cfg.coherency ?? 'global'} → ${p.coherency ?? 'global'}`);
    if (cfg.dirtyDecayMs !== p.dirtyDecayMs) {
      applied.push(`pool '${p.name}': dirtyDecayMs ${cfg.dirtyDecayMs} → ${p.dirtyDecayMs}`);
      pool.setDecay(p.dirtyDecayMs);
      ctx.armDecay(); // a shorter decay brings the dirty chunks' deadlines closer
    }
    cfg.maxBytes = p.maxBytes;
    cfg.capability = p.capability;
    cfg.coherency = p.coherency;
  }
  for (const name of m.pools.keys()) if (!next.machine.pools.some((x) => x.name === name)) ignored.push(`pool '${name}': removing a pool needs a restart`);

  for (const dc of next.machine.drivers) {
    const d = ctx.drivers.list().find((x) => x.name === dc.name);
    if (d !== undefined && d.kind === 'client') {
      ignored.push(`driver '${dc.name}': a client driver holds that name`);
      continue;
    }
    if (d !== undefined && same(d.constraints, dc.constraints) && d.description === dc.description) continue;
    if (d !== undefined && d.registrations.size > 0) {
      ignored.push(`driver '${dc.name}': ${count(d.registrations.size, 'registration')} ${d.registrations.size === 1 ? 'holds' : 'hold'} it; unregister ${d.registrations.size === 1 ? 'it' : 'them'} to redefine it`);
      continue;
    }
    ctx.drivers.setBuiltin(dc);
    ctx.bus.publish('drivers', d === undefined ? 'add' : 'redefine', { driver: dc.name, reload: true });
    applied.push(`driver '${dc.name}' ${d === undefined ? 'added' : 'redefined'}`);
  }
  for (const d of ctx.drivers.list()) {
    if (d.kind !== 'builtin' || next.machine.drivers.some((x) => x.name === d.name)) continue;
    const leaks = onLeaks(d.name);
    ctx.drivers.detach(d);
    ctx.bus.publish('drivers', 'remove', { driver: d.name, leaks, reload: true });
    applied.push(`driver '${d.name}' removed${leaks > 0 ? ` (${count(leaks, 'registration')} reported as ${leaks === 1 ? 'a leak' : 'leaks'})` : ''}`);
  }

  if (!same(next.auth.anonymous, old.auth.anonymous) || !same(next.auth.tokens, old.auth.tokens) || !same(next.fileTokens, old.fileTokens) || !same(next.auth.users, old.auth.users) || !same(next.auth.groups, old.auth.groups)) {
    applied.push(`capabilities and tokens (${count(next.auth.tokens.length + next.fileTokens.length, 'token')}; connected clients keep theirs)`);
  }
  if (!same(next.auth.names, old.auth.names)) applied.push(`client names bound to principals (${Object.keys(next.auth.names).length}; connected clients keep their names)`);
  ctx.auth.reload(next.auth, next.fileTokens, next.limits);
  if (next.auth.cookie !== old.auth.cookie) ignored.push('auth.cookie (restart to change)');
  if (next.coherency.mode !== old.coherency.mode) applied.push(`coherency.mode ${old.coherency.mode} → ${next.coherency.mode}`);
  for (const k of ['maxConnections', 'frameTimeoutMs', 'helloTimeoutMs', 'maxUnsentBytes', 'shutdownTimeoutMs', 'maxFrameBytes'] as const) {
    if (next.server[k] !== old.server[k]) applied.push(`server.${k} ${old.server[k]} → ${next.server[k]} (new connections)`);
  }
  if (next.server.socketMode !== old.server.socketMode) ignored.push('server.socketMode (restart to change)');
  if (next.server.http !== old.server.http) ignored.push('server.http (restart to change)');
  for (const k of ['maxBuffered', 'maxBufferedTotal', 'allocRate', 'pingMs'] as const) {
    if (next.events[k] !== old.events[k]) applied.push(`events.${k} ${old.events[k]} → ${next.events[k]}`);
  }
  for (const k of ['enabled', 'perBuffer', 'maxEvents', 'keepFreed'] as const) {
    if (next.history[k] !== old.history[k]) applied.push(`history.${k} ${old.history[k]} → ${next.history[k]}`);
  }
  if (next.limits.maxHandles !== old.limits.maxHandles) applied.push(`limits.maxHandles ${old.limits.maxHandles} → ${next.limits.maxHandles} (new connections)`);
  if (next.limits.maxTokens !== old.limits.maxTokens) applied.push(`limits.maxTokens ${old.limits.maxTokens} → ${next.limits.maxTokens}`);

  if (!same(next.faultInjection, old.faultInjection)) {
    const armed = armFromConfig(ctx.faults, next.faultInjection);
    applied.push(`faultInjection: ${armed.length > 0 ? `${armed.join(', ')} armed afresh` : 'no point armed'} (points armed by inject.set stay unless the file names them)`);
  }
  // the running configuration: the new file where it was applied, the old values where a restart is needed
  const effective: Config = {
    ...next,
    machine: { ...old.machine, drivers: next.machine.drivers },
    server: { ...next.server, socketMode: old.server.socketMode, http: old.server.http },
    auth: { ...next.auth, cookie: old.auth.cookie },
    coherency: { ...old.coherency, mode: next.coherency.mode },
  };
  ctx.config = effective;
  return { source: next.source, applied, ignored };
}
