/**
 * systemd readiness and watchdog notification (sd_notify protocol).
 *
 * When NOTIFY_SOCKET is set, messages go through bufferd-notify, a tiny C
 * helper built with the package that stays alive as the daemon's child (so
 * the service manager can attribute every message to the unit; see
 * sd_notify(3)). Without it (no C compiler at build time) each message is
 * sent with the systemd-notify binary, which is racy for the reason above;
 * the unit sets NotifyAccess=all for both. WATCHDOG=1 is sent every half
 * WATCHDOG_USEC when WATCHDOG_PID is unset or ours. BUFFERD_NOTIFY_HELPER=0
 * forces the systemd-notify fallback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../lib/log.js';

export const HELPER = join(dirname(fileURLToPath(import.meta.url)), '..', 'bufferd-notify');

export class Notifier {
  private helper: ChildProcess | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  /** systemd-notify fallback: messages in order, one process at a time. */
  private queue: Promise<void> = Promise.resolve();
  readonly enabled: boolean;
  readonly via: 'helper' | 'systemd-notify' | 'none';

  constructor(
    private readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.enabled = (env['NOTIFY_SOCKET'] ?? '') !== '';
    if (!this.enabled) {
      this.via = 'none';
      return;
    }
    // BUFFERD_NOTIFY_HELPER=0 forces systemd-notify (tests, or a helper that doesn't run here)
    if (existsSync(HELPER) && env['BUFFERD_NOTIFY_HELPER'] !== '0') {
      this.helper = spawn(HELPER, [], { stdio: ['pipe', 'ignore', 'inherit'], env: { ...env } });
      this.helper.on('error', (err) => log.warn({ err: err.message }, 'bufferd-notify failed'));
      this.helper.stdin!.on('error', () => {});
      this.via = 'helper';
    } else {
      this.via = 'systemd-notify';
      log.warn(
        existsSync(HELPER)
          ? 'BUFFERD_NOTIFY_HELPER=0: sending with systemd-notify per message, which systemd may fail to attribute'
          : 'bufferd-notify was not built (no C compiler?): falling back to systemd-notify per message, which systemd may fail to attribute',
      );
    }
  }

  /** Send one notification made of VAR=VALUE assignments. */
  send(...assignments: string[]): void {
    if (!this.enabled) return;
    if (this.helper !== null) {
      this.helper.stdin!.write(`${assignments.join('\t')}\n`);
      return;
    }
    // one systemd-notify at a time, so RELOADING=1 is read before its READY=1
    this.queue = this.queue.then(
      () =>
        new Promise<void>((resolve) => {
          const p = spawn('systemd-notify', assignments, { stdio: 'ignore', env: { ...this.env } });
          p.on('error', (err) => {
            this.log.warn({ err: err.message }, 'systemd-notify failed');
            resolve();
          });
          p.on('exit', () => resolve());
        }),
    );
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

  /** Stop the watchdog and let the helper exit once its queue is written. */
  close(): Promise<void> {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    const h = this.helper;
    if (h === null) return this.queue;
    if (h.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        h.kill();
        resolve();
      }, 1000);
      t.unref();
      h.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      h.stdin!.end();
    });
  }
}
