/**
 * Result types of each op and the shapes of responses and events.
 */
import type { WireError } from './errors.js';
import type { OpName } from './requests.js';
import type { Status } from './status.js';

export interface ServerLimits {
  /** Largest frame body the daemon accepts, bytes. */
  maxFrameBytes: number;
  /** Largest `data` the daemon accepts in one request, bytes. */
  maxDataBytes: number;
  /** Handles one connection may hold. */
  maxHandles: number;
}

export interface HelloResult {
  clientId: number;
  name: string | null;
  protocolVersion: number;
  server: { name: 'bufferd'; version: string; pid: number };
  limits: ServerLimits;
  capabilities: string[];
}

export interface PingResult {
  /** Daemon's monotonic clock, milliseconds since it started. */
  uptimeMs: number;
}

export interface Results {
  hello: HelloResult;
  ping: PingResult;
  status: Status;
}

export type ResultOf<K extends OpName> = K extends keyof Results ? Results[K] : never;

/** A response: same `id` as the request, and `result` or `error`. */
export type Response =
  | { id: number; result: unknown }
  | { id: number | null; error: WireError };

export interface ShutdownEvent {
  event: 'shutdown';
  reason: string;
}

/** Events are pushed by the daemon and carry `event` instead of `id`. */
export type DaemonEvent = ShutdownEvent;

export type EventName = DaemonEvent['event'];
