/**
 * bufferd/client: the typed client library.
 */
export { BufferClient, connect, ConnectError, readCookie, type ConnectOptions } from './client.js';
export { BufferdError, ERROR_CODES, type ErrorCode } from '../protocol/errors.js';
export type { Status, RegionStatus, HugepageStatus, PoolStatus, ClientStatus, DriverStatus } from '../protocol/status.js';
export type {
  HelloResult,
  PingResult,
  ServerLimits,
  DaemonEvent,
  ShutdownEvent,
  BufferInfo,
  SegmentInfo,
  HugepagesSetResult,
  CachePolicyName,
} from '../protocol/results.js';
export { resolveSocketPath } from '../protocol/paths.js';
