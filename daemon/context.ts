/**
 * What op handlers see of the daemon: configuration, logger, clock and the
 * state of each concept. The server builds one and passes it to every
 * handler; unit tests can build one without any socket.
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ClientRegistry } from './clients.js';
import { VERSION } from './version.js';

export interface DaemonContext {
  readonly config: Config;
  readonly log: Logger;
  readonly version: string;
  readonly socketPath: string;
  readonly clients: ClientRegistry;
  /** Monotonic milliseconds since the daemon started. */
  now(): number;
}

export function createContext(config: Config, log: Logger, socketPath: string): DaemonContext {
  const t0 = performance.now();
  return {
    config,
    log,
    version: VERSION,
    socketPath,
    clients: new ClientRegistry(),
    now: () => performance.now() - t0,
  };
}
