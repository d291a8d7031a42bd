/**
 * Operations ops: subscribe, unsubscribe, reload.
 */
import { drain } from '../lib/slices.js';
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { ResultOf } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { TOPICS, type Topic } from '../session/events.js';
import { ADMIN, requireCapability } from '../session/auth.js';
import { reloadConfig } from './reload.js';
import { ConfigError } from '../config/config.js';
import { MachineConfigError } from '../config/machine-config.js';
import { reportLeaks } from './drivers.js';

export function subscribe(ctx: DaemonContext, s: Session, req: RequestOf<'subscribe'>): ResultOf<'subscribe'> {
  const topics = new Set<Topic>((req.topics as Topic[] | undefined) ?? TOPICS);
  const intervalMs = req.intervalMs ?? 1000;
  if (s.subscription !== null) ctx.bus.unsubscribe(s.subscription);
  s.subscription = {
    label: `client ${s.id}`,
    topics,
    intervalMs,
    maps: false,
    send: (out) => s.stream(out.frame()),
    buffered: () => s.buffered(),
    dropped: (reason) => {
      // free what waits for the client at once; it learns why when it reads again
      s.subscription = null;
      s.dropStream();
      s.stream({ event: 'subscription-dropped', reason });
    },
  };
  ctx.bus.subscribe(s.subscription);
  return { topics: [...topics], intervalMs };
}

export function unsubscribe(ctx: DaemonContext, s: Session): ResultOf<'unsubscribe'> {
  const had = s.subscription !== null;
  if (had) ctx.bus.unsubscribe(s.subscription!);
  s.subscription = null;
  return { unsubscribed: had };
}

/** An invalid file refused by a reload (already logged); EINVAL on the wire. */
export class ReloadRejected extends BufferdError {}

/** Reload the config file the daemon was started with; an invalid file changes nothing (ReloadRejected). */
export function doReload(ctx: DaemonContext): ResultOf<'reload'> {
  const path = ctx.config.source.startsWith('(') ? undefined : ctx.config.source;
  try {
    // a removed driver's registrations are torn down at once (an admin's rare act)
    const r = reloadConfig(ctx, path, (driver) => drain(reportLeaks(ctx, { driver: ctx.drivers.get(driver) }, 'driver removed by a reload')));
    ctx.log.info({ applied: r.applied, ignored: r.ignored }, 'configuration reloaded');
    return r;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof MachineConfigError) {
      ctx.log.error({ err: e.message }, 'reload rejected: the old configuration stays');
      throw new ReloadRejected('EINVAL', `reload rejected, the running configuration is unchanged: ${e.message}`);
    }
    throw e;
  }
}

export function reload(ctx: DaemonContext, s: Session): ResultOf<'reload'> {
  requireCapability(s.capabilities, ADMIN, 'reload');
  return doReload(ctx);
}
