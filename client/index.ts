/**
 * bufferd/client: the typed client library.
 */
export { BufferClient, type BufferClientEvents } from './client.js';
export type { AllocOptions, Size } from './sizes.js';
export { connect, ConnectError, readCookie, type ConnectOptions } from './connect.js';
export { sendHandle, receiveHandle, HANDLE_RECORD_MAGIC, FD_RECORD_MAGIC, type SendHandleOptions } from './passing.js';
export { native as system } from '../daemon/lib/native.js';
export { DeviceApi } from './device.js';
export { Mapping, closeFd, type Access } from './mapping.js';
export type { Constraints, MergedAttributes, Mismatch, Conflict } from '../protocol/attributes.js';
export { BufferdError, ERROR_CODES, type ErrorCode } from '../protocol/errors.js';
export type { Status, RegionStatus, ZoneStatus, HugepageStatus, PoolStatus, ClientStatus, DriverStatus } from '../protocol/status.js';
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
  HandleInfo,
  HandleEvent,
  BufferListing,
  RightName,
  RegistrationInfo,
  MergeResult,
  RegistrationEvent,
  UnregistrationEvent,
  LeakEvent,
  ViolationEvent,
  ViolationInfo,
  AcceptFrom,
} from '../protocol/results.js';
export { resolveSocketPath } from '../protocol/paths.js';
export type { HistoryEvent, HistoryResult, GraphNode, GraphEdge, GraphResult } from '../protocol/ops/history.js';
