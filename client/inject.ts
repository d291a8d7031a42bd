/**
 * client.faults: fault injection (admin only). Arm a point so the daemon
 * fails there as it would for real (PROTOCOL.md, "Fault injection"):
 *
 *   await admin.faults.set('alloc', { nth: 3, times: 1 }); // the 3rd alloc fails with ENOMEM
 *   await admin.faults.clear();
 *
 * An injected failure rejects like the real one, with `details.injected`
 * true; the `connection` point drops the connection, which rejects every
 * pending call with ECONNRESET, as any lost connection does.
 */
import type { ResultOf } from '../protocol/results.js';
import type { FaultPoint, FaultSpec } from '../protocol/ops/inject.js';
import type { Requester } from './requester.js';

export type { FaultPoint, FaultSpec };

export class FaultsApi {
  constructor(private readonly c: Requester) {}

  /** Arm a point (re-arming restarts its counts): nth, probability (percent), times, client, pool, seed. */
  set(point: FaultPoint, spec: FaultSpec = {}): Promise<ResultOf<'inject.set'>> {
    return this.c.request('inject.set', { point, ...spec });
  }

  /** Disarm one point, or every point. */
  clear(point?: FaultPoint): Promise<ResultOf<'inject.clear'>> {
    return this.c.request('inject.clear', point === undefined ? {} : { point });
  }

  /** The armed points with their counts, failures injected per point since start, and what each point does. */
  list(): Promise<ResultOf<'inject.list'>> {
    return this.c.request('inject.list', {});
  }
}
