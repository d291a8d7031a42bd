/**
 * Debugging ops: `history` (the life of one buffer, event by event) and
 * `graph` (clients, buffers and drivers with who holds, passed, registered,
 * mapped and exported what).
 */
import { Type } from '../typebox.js';
import { Name, Uint, request } from '../types.js';

type RightName = 'read' | 'write' | 'share';

/** Most events one `history` answer carries (the per-buffer cap is at most this). */
export const MAX_HISTORY_EVENTS = 4096;
/** Most buffers one `graph` answer carries. */
export const MAX_GRAPH_BUFFERS = 5000;

export const HISTORY_REQUESTS = {
  history: request(
    'history',
    {
      buffer: Uint({ description: 'buffer id (as `buffers` lists it), live or recently freed' }),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_HISTORY_EVENTS, description: `the newest N events, 1 to ${MAX_HISTORY_EVENTS}` })),
    },
    "One buffer's history: allocation, every pass, map, registration, sync, device access, violation and refusal, and its free; for its holders (past or present) and admins.",
  ),
  graph: request(
    'graph',
    {
      client: Type.Optional(Type.Union([Uint({ description: 'client id' }), Name('client name')], { description: 'only buffers this client holds, mapped, registered, exported or passed (id or name)' })),
      buffer: Type.Optional(Uint({ description: 'only this buffer id' })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_GRAPH_BUFFERS, description: `most buffers in the graph, 1 to ${MAX_GRAPH_BUFFERS} (default 1000)` })),
    },
    'The ownership graph: clients, buffers and drivers as nodes; holds, passed-to, registered-with, mapped-by and token-in-flight edges (all buffers for admins, held ones for others).',
  ),
} as const;

/** One thing that happened to a buffer. `kind` is an op name, or alloc, refused, violation, leak, free. */
export interface HistoryEvent {
  /** Daemon-wide order of history events. */
  seq: number;
  /** Daemon's monotonic clock, ms since it started. */
  timeMs: number;
  kind: string;
  /** The client that did it (null: the daemon itself, e.g. a free after a token expired). */
  client: number | null;
  clientName: string | null;
  [field: string]: unknown;
}

export interface HistoryResult {
  buffer: number;
  /** The buffer is still allocated (false: freed, kept in the `history.keepFreed` ring). */
  live: boolean;
  /** The journal began after the allocation (history was off, or the event budget was spent). */
  partial: boolean;
  /** Events not kept: over the per-buffer cap (the oldest after the allocation go first) or the global budget. */
  dropped: number;
  events: HistoryEvent[];
}

export type GraphNode =
  | { id: string; type: 'client'; client: number; name: string | null; connected: boolean }
  | { id: string; type: 'buffer'; buffer: number; pool: string; size: number; shape: 'token-only' | 'registration-only' | null }
  | { id: string; type: 'driver'; driver: string };

export type GraphEdge =
  | { type: 'holds'; from: string; to: string; handles: { handle: number; rights: RightName[] }[]; count: number }
  | { type: 'passed-to'; from: string; to: string; buffer: number; via: 'send' | 'import'; count: number }
  | { type: 'registered-with'; from: string; to: string; deviceAddress: number; registrant: number }
  | { type: 'mapped-by'; from: string; to: string; mappings: number[] }
  | { type: 'token-in-flight'; from: string; to: string; rights: RightName[]; expiresInMs: number };

export interface GraphResult {
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Buffers were left out (the limit, or the answer's size bound). */
  truncated: boolean;
}
