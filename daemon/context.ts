/**
 * What op handlers see of the daemon: configuration, logger, clock and the
 * state of each concept. The server builds one and passes it to every
 * handler; unit tests can build one without any socket.
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ClientRegistry } from './clients.js';
import { VERSION } from './version.js';
import { Machine } from './machine.js';
import type { Session } from './clients.js';
import { DecayScheduler } from './decay.js';

export interface DaemonContext {
  readonly config: Config;
  readonly log: Logger;
  readonly version: string;
  readonly socketPath: string;
  readonly clients: ClientRegistry;
  readonly machine: Machine;
  /** Monotonic milliseconds since the daemon started. */
  now(): number;
  /** Called once when a session's connection closes: release what it held. */
  sessionClosed(s: Session): void;
  /** Called after every op: re-arm timers (decay). */
  afterOp(): void;
  readonly decay: DecayScheduler;
}

export function createContext(config: Config, log: Logger, socketPath: string): DaemonContext {
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const machine = new Machine(config.machine, now);
  for (const w of machine.warnings) log.warn(w);
  const decay = new DecayScheduler(machine, log);
  const ctx: DaemonContext = {
    config,
    log,
    version: VERSION,
    socketPath,
    clients: new ClientRegistry(),
    machine,
    now,
    decay,
    sessionClosed: (s) => {
      for (const buf of [...machine.allBuffers()]) if (buf.owner === s.id) machine.free(buf);
      machine.ownerGone(s.id);
      decay.arm();
    },
    afterOp: () => decay.arm(),
  };
  return ctx;
}
