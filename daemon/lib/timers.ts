/**
 * Deadline timers of the daemon: one Node timer armed for the earliest
 * deadline a pure module reports (dirty chunks decaying, tokens expiring),
 * re-armed where that deadline can come earlier (a buffer freed or the decay
 * time changed; a token issued). The work itself stays in the pure modules.
 */
import type { Logger } from './log.js';

export class DeadlineTimer {
  private timer: NodeJS.Timeout | null = null;
  private due = Infinity;
  private stopped = false;

  constructor(
    private readonly name: string,
    /** Next deadline on the `now` clock, or null. */
    private readonly next: () => number | null,
    /** Do the due work; returns how much was done (for the log). */
    private readonly fire: () => number,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {}

  /** Arm (or re-arm earlier) the timer for the next deadline. */
  arm(): void {
    if (this.stopped) return;
    const d = this.next();
    if (d === null || d >= this.due) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.due = d;
    this.timer = setTimeout(() => this.run(), Math.max(0, Math.ceil(d - this.now())));
    this.timer.unref();
  }

  private run(): void {
    this.timer = null;
    this.due = Infinity;
    const n = this.fire();
    if (n > 0) this.log.debug({ timer: this.name, done: n }, `${this.name} deadline passed`);
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }
}
