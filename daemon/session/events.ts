/**
 * The live event bus: what happens in the daemon, pushed to subscribers
 * (clients on the Unix socket with `subscribe`, dashboard WebSockets).
 *
 * - Topics: alloc (allocations and frees), handles (passes), drivers
 *   (registrations, refusals, leaks, attach/detach), violations, hugepages
 *   (resizes), clients (connects, disconnects), status (periodic snapshots).
 * - Allocations and frees are sent one by one up to `allocRate` per second;
 *   above it they are aggregated into one summary every 250 ms.
 * - A subscriber whose unsent bytes pass `maxBuffered` is dropped, and when
 *   all subscribers together pass `maxBufferedTotal` the one with the most
 *   is: a slow or stuck watcher never slows the daemon, and what the daemon
 *   holds for watchers is bounded (the transport frees a dropped one's queue).
 */
import type { Logger } from '../lib/log.js';
import { TOPIC_NAMES } from '../../protocol/ops/events.js';
import { encodeFrame } from '../../protocol/frame.js';

export const TOPICS = TOPIC_NAMES;
export type Topic = (typeof TOPICS)[number];

/**
 * One event on its way to every subscriber: encoded at most once per
 * transport (a MessagePack frame for the Unix socket, JSON for WebSockets),
 * however many subscribers take it.
 */
export class Outgoing {
  private f: Buffer | null = null;
  private j: string | null = null;
  constructor(readonly ev: Record<string, unknown>) {}
  frame(): Buffer {
    return (this.f ??= encodeFrame(this.ev));
  }
  json(): string {
    return (this.j ??= JSON.stringify(this.ev));
  }
}

export interface Subscriber {
  /** For logs: "client 7" or "ws 127.0.0.1:50612". */
  readonly label: string;
  topics: Set<Topic>;
  /** Snapshot interval for the status topic, ms. */
  intervalMs: number;
  /** Snapshots include the pool maps (the dashboard). */
  maps: boolean;
  /** Queue one event; the transport's own buffering applies. */
  send(out: Outgoing): void;
  /** Bytes queued and not yet taken by the peer. */
  buffered(): number;
  /** Called once when the bus drops the subscriber. */
  dropped(reason: string): void;
}

export interface BusOptions {
  /** Unsent bytes after which one subscriber is dropped. */
  maxBuffered: number;
  /** Unsent bytes of all subscribers together after which the slowest is dropped. */
  maxBufferedTotal: number;
  allocRate: number;
  now(): number;
  /** The snapshot a `status` subscriber gets; `full` adds the dashboard's pool maps. */
  snapshot(full: boolean): Record<string, unknown>;
}

export class EventBus {
  private readonly subs = new Set<Subscriber>();
  private readonly lastSnap = new Map<Subscriber, number>();
  private timer: NodeJS.Timeout | null = null;
  private windowStart = 0;
  private windowCount = 0;
  private agg: { allocs: number; frees: number; bytesAllocated: number; bytesFreed: number } | null = null;
  private aggTimer: NodeJS.Timeout | null = null;
  published = 0;
  droppedSubscribers = 0;
  /** Sees every happening, subscribers or not (the history journal's hook). */
  tap: ((topic: Exclude<Topic, 'status'>, kind: string, data: Record<string, unknown>) => void) | null = null;

  constructor(
    private readonly opts: BusOptions,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.subs.size;
  }

  subscribe(s: Subscriber): void {
    this.subs.add(s);
    this.lastSnap.set(s, -Infinity);
    this.arm();
  }

  unsubscribe(s: Subscriber): void {
    this.subs.delete(s);
    this.lastSnap.delete(s);
    if (this.subs.size === 0) this.stopTimers();
  }

  private deliver(topic: Topic, ev: Record<string, unknown>): void {
    const out = new Outgoing(ev);
    for (const s of this.overLimit()) if (s.topics.has(topic)) s.send(out);
  }

  /**
   * Drop the subscribers past maxBuffered, then, while all together pass
   * maxBufferedTotal, the one holding the most; returns those that remain.
   */
  private overLimit(): Subscriber[] {
    const kept: { s: Subscriber; bytes: number }[] = [];
    let total = 0;
    for (const s of [...this.subs]) {
      const b = s.buffered();
      if (b > this.opts.maxBuffered) {
        this.drop(s, `more than ${this.opts.maxBuffered} bytes of events unsent`);
        continue;
      }
      kept.push({ s, bytes: b });
      total += b;
    }
    if (total > this.opts.maxBufferedTotal) {
      kept.sort((a, b) => b.bytes - a.bytes);
      while (total > this.opts.maxBufferedTotal && kept.length > 0) {
        const k = kept.shift()!;
        total -= k.bytes;
        this.drop(k.s, `all subscribers together have more than ${this.opts.maxBufferedTotal} bytes of events unsent, this one the most`);
      }
    }
    return kept.map((k) => k.s);
  }

  private drop(s: Subscriber, reason: string): void {
    this.unsubscribe(s);
    this.droppedSubscribers++;
    this.log.warn({ subscriber: s.label, reason }, 'event subscriber dropped');
    s.dropped(reason);
  }

  /** Publish one happening. Allocations and frees are aggregated above the rate limit. */
  publish(topic: Exclude<Topic, 'status'>, kind: string, data: Record<string, unknown>): void {
    this.tap?.(topic, kind, data);
    if (this.subs.size === 0) return;
    this.published++;
    const now = this.opts.now();
    if (topic === 'alloc') {
      if (now - this.windowStart >= 1000) {
        this.windowStart = now;
        this.windowCount = 0;
      }
      if (++this.windowCount > this.opts.allocRate) {
        this.aggregate(kind, data);
        return;
      }
    }
    this.deliver(topic, { event: 'activity', topic, kind, timeMs: Math.round(now), ...data });
  }

  private aggregate(kind: string, data: Record<string, unknown>): void {
    this.agg ??= { allocs: 0, frees: 0, bytesAllocated: 0, bytesFreed: 0 };
    const size = typeof data['size'] === 'number' ? data['size'] : 0;
    if (kind === 'free') {
      this.agg.frees++;
      this.agg.bytesFreed += size;
    } else {
      this.agg.allocs++;
      this.agg.bytesAllocated += size;
    }
    if (this.aggTimer === null) {
      this.aggTimer = setTimeout(() => {
        this.aggTimer = null;
        const a = this.agg;
        this.agg = null;
        if (a !== null) this.deliver('alloc', { event: 'activity', topic: 'alloc', kind: 'summary', timeMs: Math.round(this.opts.now()), windowMs: 250, ...a });
      }, 250);
      this.aggTimer.unref();
    }
  }

  /** Snapshots at each subscriber's interval (one timer ticking at the shortest). */
  private arm(): void {
    if (this.timer !== null) return;
    const tick = () => {
      const now = this.opts.now();
      const cache: Record<string, Outgoing> = {};
      for (const s of this.overLimit()) {
        if (!s.topics.has('status') || now - this.lastSnap.get(s)! < s.intervalMs - 5) continue;
        const full = s.maps;
        cache[String(full)] ??= new Outgoing({ event: 'snapshot', timeMs: Math.round(now), status: this.opts.snapshot(full) });
        this.lastSnap.set(s, now);
        s.send(cache[String(full)]!);
      }
    };
    this.timer = setInterval(tick, 100);
    this.timer.unref();
    queueMicrotask(tick);
  }

  private stopTimers(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.stopTimers();
    if (this.aggTimer !== null) clearTimeout(this.aggTimer);
    this.subs.clear();
  }
}
