/**
 * The decay clock of the daemon: one timer armed for the earliest moment a
 * dirty chunk becomes due, re-armed after every op. The purge itself is the
 * pure Machine.purgeExpired().
 */
import type { Machine } from './machine.js';
import type { Logger } from './log.js';

export class DecayScheduler {
  private timer: NodeJS.Timeout | null = null;
  private due = Infinity;
  private stopped = false;

  constructor(
    private readonly machine: Machine,
    private readonly log: Logger,
  ) {}

  /** Arm (or re-arm earlier) the timer for the next deadline. */
  arm(): void {
    if (this.stopped) return;
    const d = this.machine.nextDecayDeadline();
    if (d === null || d >= this.due) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.due = d;
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.ceil(d - this.machine.now())));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    this.due = Infinity;
    const pages = this.machine.purgeExpired();
    if (pages > 0) this.log.debug({ pages }, 'decay purged dirty chunks');
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }
}
