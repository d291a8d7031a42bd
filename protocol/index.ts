/**
 * bufferd/protocol: the wire contract. Frame codec, request schemas, result
 * and event types, error codes, attribute types. No sockets, no daemon state.
 */
export * from './errors.js';
export * from './codec.js';
export * from './frame.js';
export * from './types.js';
export * from './requests.js';
export * from './results.js';
export * from './status.js';
export * from './validate.js';
export * from './paths.js';
export * from './units.js';
export * from './attributes.js';
export type { HistoryEvent, HistoryResult, GraphNode, GraphEdge, GraphResult } from './ops/history.js';
