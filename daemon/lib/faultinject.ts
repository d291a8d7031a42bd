/**
 * Fault injection, modelled on the kernel's fault-injection framework
 * (torvalds/linux Documentation/fault-injection/fault-injection.rst, and
 * should_fail_ex() in lib/fault-inject.c): named points where a real failure
 * can arise, each armed with an attribute set of its own:
 *
 * - `nth` N (the kernel's `interval`): only every Nth matching call may fail
 *   — calls N, 2N, 3N, ... counted from arming (1: every call);
 * - `probability` P: percent, 0 to 100 (as the kernel's `probability`); a
 *   call that passed `nth` fails with this chance, drawn from a seeded RNG
 *   (lib/rng.ts) so a run can be repeated exactly (default 100);
 * - `times` K: at most K failures, then the point stays armed but inert
 *   (the kernel's `times`; absent: no limit, the kernel's -1);
 * - `client` / `pool`: only calls on behalf of that client name, or about
 *   that pool, count at all (the kernel's task-filter, by name).
 *
 * should_fail() checks in the kernel's order: filter, times left, interval,
 * probability. So `nth: 3, times: 1` fails the 3rd call and only it (the
 * newer per-task fail-nth file), `nth: 1` fails every call.
 *
 * Pure: the caller names the point and the site; the injector decides and
 * counts. Whoever owns the real failure path asks it at the point where the
 * real failure arises, so an injected failure takes that path and unwinds as
 * the real one does; the error it raises carries `details.injected: true`.
 */
import { BufferdError } from '../../protocol/errors.js';
import { FAULT_POINTS, MAX_FAULT_COUNT, type ArmedFault, type FaultPoint, type FaultSpec, type FaultStatus } from '../../protocol/ops/inject.js';
import { rng } from './rng.js';

export { FAULT_POINTS, type FaultPoint, type FaultSpec };

/** What the real failure at each point is (PROTOCOL.md and `inject.list` repeat it). */
export const FAULT_MEANING: Record<FaultPoint, string> = {
  alloc: 'a pool allocation fails with ENOMEM, as when its memory has run out',
  hugepage: 'no surplus hugepage can be had (overcommit reached): the allocation fails with ENOMEM',
  iova: "the device's IOVA space is exhausted: register fails with ENOMEM",
  bounce: 'the swiotlb bounce pool is full: register fails with ENOMEM',
  register: "the device refuses the buffer: register fails with EATTR (mismatch 'injected')",
  token: 'import of a valid token fails as if it had expired (ENOENT); the token is gone',
  connection: 'the daemon drops the client (closes its socket) instead of answering the request',
};

/** Where a call comes from: the client it is made for, the pool it is about. */
export interface FaultSite {
  client?: string | null;
  pool?: string | null;
}

export type ArmedPoint = ArmedFault;

interface Armed extends ArmedPoint {
  random: () => number;
}


/** Check a spec; EINVAL naming the field and the limit. */
export function checkFaultSpec(point: string, spec: FaultSpec): FaultPoint {
  if (!(FAULT_POINTS as readonly string[]).includes(point)) {
    throw new BufferdError('EINVAL', `field 'point' must be one of ${FAULT_POINTS.join(', ')} (got '${point}')`, { point, points: [...FAULT_POINTS] });
  }
  const int = (v: number | undefined, field: string, min: number, max: number) => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < min || v > max)) {
      throw new BufferdError('EINVAL', `field '${field}' must be an integer from ${min} to ${max} (got ${v})`, { field, min, max });
    }
  };
  int(spec.nth, 'nth', 1, MAX_FAULT_COUNT);
  int(spec.times, 'times', 1, MAX_FAULT_COUNT);
  int(spec.seed, 'seed', 0, 0xffffffff);
  const p = spec.probability;
  if (p !== undefined && (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > 100)) {
    throw new BufferdError('EINVAL', `field 'probability' must be a percentage from 0 to 100 (got ${p})`, { field: 'probability', min: 0, max: 100 });
  }
  return point as FaultPoint;
}

export class FaultInjector {
  private readonly armed = new Map<FaultPoint, Armed>();
  /** Failures injected since start, by point (kept across re-arming). */
  readonly totals: Record<FaultPoint, number> = Object.fromEntries(FAULT_POINTS.map((p) => [p, 0])) as Record<FaultPoint, number>;
  /** Failures injected since start, all points: a caller compares it before and after a call to know one fired inside. */
  fired = 0;
  /**
   * The site of the work under way (the request being handled; the pool
   * allocating), merged into each call's site. A point that fired inside it
   * keeps failing until it ends, uncounted: one request is one call, so the
   * real path's own retry (a pool purges and tries again) fails too.
   */
  current: { client: string | null; pool: string | null; failed: Set<FaultPoint> | null } = { client: null, pool: null, failed: null };
  /** Told of each injected failure (the daemon logs it, as the kernel's `verbose`). */
  onFire: ((p: ArmedPoint, site: FaultSite) => void) | null = null;

  /** Arm a point (re-arming restarts its counts and its RNG). EINVAL for a bad spec; nothing changes then. */
  arm(point: string, spec: FaultSpec, source: 'config' | 'op' = 'op'): ArmedPoint {
    const p = checkFaultSpec(point, spec);
    const seed = spec.seed ?? 1;
    const a: Armed = {
      point: p,
      nth: spec.nth ?? 1,
      probability: spec.probability ?? 100,
      times: spec.times ?? null,
      client: spec.client ?? null,
      pool: spec.pool ?? null,
      seed,
      source,
      calls: 0,
      fired: 0,
      random: rng(seed),
    };
    this.armed.set(p, a);
    return view(a);
  }

  /** Disarm one point (or every point); returns the points disarmed. */
  clear(point?: FaultPoint, source?: 'config' | 'op'): FaultPoint[] {
    const out: FaultPoint[] = [];
    for (const a of [...this.armed.values()]) {
      if ((point !== undefined && a.point !== point) || (source !== undefined && a.source !== source)) continue;
      this.armed.delete(a.point);
      out.push(a.point);
    }
    return out;
  }

  list(): ArmedPoint[] {
    return FAULT_POINTS.flatMap((p) => {
      const a = this.armed.get(p);
      return a === undefined ? [] : [view(a)];
    });
  }

  /** The armed points and the failures injected per point since start (status.faults). */
  status(): FaultStatus {
    return { armed: this.list(), injected: { ...this.totals }, total: this.fired };
  }

  isArmed(point: FaultPoint): boolean {
    return this.armed.has(point);
  }

  /**
   * Should this call fail? should_fail_ex()'s order: the filter (client,
   * pool), times left, the interval (nth), the probability.
   */
  shouldFail(point: FaultPoint, site: FaultSite = {}): boolean {
    const a = this.armed.get(point);
    if (a === undefined) return false;
    if (this.current.failed?.has(point) === true) return true;
    const client = site.client !== undefined ? site.client : this.current.client;
    const pool = site.pool !== undefined ? site.pool : this.current.pool;
    if (a.client !== null && a.client !== client) return false;
    if (a.pool !== null && a.pool !== pool) return false;
    if (a.times === 0) return false;
    a.calls++;
    if (a.nth > 1 && a.calls % a.nth !== 0) return false;
    // drawn only when it matters, so probability 100 uses no randomness
    if (a.probability < 100 && !(a.random() * 100 < a.probability)) return false;
    if (a.times !== null) a.times--;
    a.fired++;
    this.totals[point]++;
    this.fired++;
    this.current.failed?.add(point);
    this.onFire?.(view(a), { client, pool });
    return true;
  }

  /** Run fn with `current` set (restored after, even when fn throws). */
  within<T>(site: FaultSite, fn: () => T): T {
    // every request runs through here: with nothing armed there is nothing to remember
    if (this.armed.size === 0) return fn();
    const prev = this.current;
    this.current = { client: site.client !== undefined ? site.client : prev.client, pool: site.pool !== undefined ? site.pool : prev.pool, failed: new Set() };
    try {
      return fn();
    } finally {
      this.current = prev;
    }
  }
}

function view(a: Armed): ArmedPoint {
  const { random: _r, ...rest } = a;
  return { ...rest };
}

/** Mark an error as injected (details.injected: true); other errors pass unchanged. */
export function markInjected(e: unknown): unknown {
  if (e instanceof BufferdError) (e as { details: Record<string, unknown> | undefined }).details = { ...(e.details ?? {}), injected: true };
  return e;
}

/** Run fn; if it throws after an injection fired inside it, mark the error injected. */
export function tagInjected<T>(f: FaultInjector | null, fn: () => T): T {
  if (f === null) return fn();
  const before = f.fired;
  try {
    return fn();
  } catch (e) {
    if (f.fired !== before) markInjected(e);
    throw e;
  }
}
