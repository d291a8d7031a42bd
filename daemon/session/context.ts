/**
 * Layer daemon/session/: who is connected and what the daemon keeps for
 * them — sessions and the client registry (clients.ts), principals, quotas
 * and the admin cookie (auth.ts, cookie.ts), the event bus (events.ts), and
 * the context every op handler gets (this file). It may use config/, dma/,
 * buffers/, alloc/, memory/, lib/ and protocol/; ops/ and server/ use it.
 *
 * The context: configuration, logger, clock and the state of each concept.
 * server/context.ts builds one and the server passes it to every handler;
 * unit tests can build one without any socket.
 */
import type { Config } from '../config/config.js';
import type { Logger } from '../lib/log.js';
import type { ClientRegistry, Session } from './clients.js';
import type { Machine } from '../alloc/machine.js';
import type { DeadlineTimer } from '../lib/timers.js';
import type { Authenticator } from './auth.js';
import type { TokenTable } from '../buffers/tokens.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { PhysBuffer } from '../alloc/pool.js';
import type { DriverRegistry } from '../dma/drivers.js';
import type { Coherency } from '../dma/coherency.js';
import type { SharedMemory } from '../dma/shared.js';
import type { EventBus } from './events.js';
import type { Background } from '../lib/slices.js';
import type { FdBox } from './fdbox.js';
import type { FaultInjector } from '../lib/faultinject.js';
import type { HistoryJournal } from './history.js';
import type { Journal } from './journal.js';

export interface DaemonContext {
  /** The configuration in force (replaced by a reload). */
  config: Config;
  readonly log: Logger;
  readonly version: string;
  /** The socket served (an inherited one's real path once known). */
  socketPath: string;
  readonly clients: ClientRegistry;
  readonly machine: Machine;
  /** Monotonic milliseconds since the daemon started. */
  now(): number;
  /** The daemon is shutting down (SIGTERM/SIGINT): sessions it closes leave no leaks, only releases. */
  stopping: boolean;
  /** Called once when a session's connection closes: release what it held (in the background, in slices). */
  sessionClosed(s: Session): void;
  /** Work the daemon does on its own (teardowns), in slices. */
  readonly background: Background;
  /** Re-arm the decay timer: call where a dirty chunk can appear or decay sooner (a buffer freed, the decay time changed). */
  armDecay(): void;
  /** Re-arm the token-expiry timer: call after a token is issued. */
  armTokens(): void;
  readonly timers: DeadlineTimer[];
  readonly auth: Authenticator;
  readonly tokens: TokenTable;
  /** Live buffers by daemon-wide id. */
  readonly buffers: Map<number, SharedBuffer>;
  readonly drivers: DriverRegistry;
  readonly coherency: Coherency;
  /** Buffers with their own shared memory (mapped by processes; coherency.shared). */
  readonly shared: SharedMemory;
  readonly bus: EventBus;
  /** Buffer histories (history.ts). */
  readonly history: HistoryJournal;
  /** The dashboard's URL when --http is on (no token in it). */
  dashboard: string | null;
  /** The fd socket beside the main socket (null without shared memory, or before the server listens). */
  fdbox: FdBox | null;
  /** Fault injection: the armed points (inject.set, the config's faultInjection) and their counts. */
  readonly faults: FaultInjector;
  /** The journal being recorded (--record, bufctl record start), or null. */
  journal: Journal | null;
  /** Wrap a new allocation: it is freed (and its creator's quota released) when its last reference goes. */
  share(phys: PhysBuffer, creator: Session): SharedBuffer;
}

