/**
 * systemd readiness and watchdog notification (the sd_notify protocol):
 * when NOTIFY_SOCKET is set, each message is one datagram the daemon itself
 * sends there (sendto through daemon/lib/native.ts), so the service manager
 * attributes it to the main process and the unit can say NotifyAccess=main.
 * WATCHDOG=1 goes every half WATCHDOG_USEC when WATCHDOG_PID is unset or
 * ours. Without the native calls nothing is sent and a warning says why
 * (Type=notify would then time out: use Type=simple there).
 */
import type { Logger } from '../lib/log.js';
import { native, nativeReason } from '../lib/native.js';

export class Notifier {
  private watchdog: NodeJS.Timeout | null = null;
  private readonly socket: string | null;
  readonly enabled: boolean;
  readonly via: 'datagram' | 'none';

  constructor(
    private readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    const path = env['NOTIFY_SOCKET'] ?? '';
    this.enabled = path !== '' && native() !== null;
    // sd_notify: an address starting with '@' is in the abstract namespace
    this.socket = this.enabled ? path : null;
    this.via = this.enabled ? 'datagram' : 'none';
    if (path !== '' && !this.enabled) log.warn({ reason: nativeReason() }, 'NOTIFY_SOCKET is set but datagrams cannot be sent: no readiness or watchdog notification');
  }

  /** Send one notification made of VAR=VALUE assignments. */
  send(...assignments: string[]): void {
    if (this.socket === null) return;
    try {
      native()!.sendDatagram(this.socket, Buffer.from(assignments.join('\n')));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, notify: assignments[0] }, 'sd_notify failed');
    }
  }

  ready(status: string): void {
    this.send('READY=1', `STATUS=${status}`, `MAINPID=${process.pid}`);
  }

  reloading(): void {
    this.send('RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`);
  }

  stopping(): void {
    this.send('STOPPING=1');
  }

  /** Ping the watchdog at half WATCHDOG_USEC, if systemd asked for it. */
  startWatchdog(): number | null {
    const usec = Number(this.env['WATCHDOG_USEC'] ?? '');
    const pid = this.env['WATCHDOG_PID'];
    if (!this.enabled || !Number.isFinite(usec) || usec <= 0 || (pid !== undefined && pid !== '' && Number(pid) !== process.pid)) return null;
    const every = Math.max(1, Math.floor(usec / 2000));
    this.watchdog = setInterval(() => this.send('WATCHDOG=1'), every);
    this.watchdog.unref();
    return every;
  }

  /** Stop the watchdog. */
  close(): Promise<void> {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    return Promise.resolve();
  }
}
