/**
 * The request table: one schema per op. Each later capability adds its ops
 * here (or in a sibling module merged into REQUESTS), and PROTOCOL.md
 * documents every entry (a test checks that).
 */
import type { Static } from '@sinclair/typebox';
import { SESSION_REQUESTS } from './ops/session.js';
import { MEMORY_REQUESTS } from './ops/memory.js';
import { HANDLE_REQUESTS } from './ops/handles.js';
import { DRIVER_REQUESTS } from './ops/drivers.js';
import { COHERENCY_REQUESTS } from './ops/coherency.js';
import { EVENTS_REQUESTS } from './ops/events.js';
import { INJECT_REQUESTS } from './ops/inject.js';
import { HISTORY_REQUESTS } from './ops/history.js';
import { RECORD_REQUESTS } from './ops/record.js';

/** The protocol version this package speaks. */
export const PROTOCOL_VERSION = 1;

export const REQUESTS = {
  ...SESSION_REQUESTS,
  ...MEMORY_REQUESTS,
  ...HANDLE_REQUESTS,
  ...DRIVER_REQUESTS,
  ...COHERENCY_REQUESTS,
  ...EVENTS_REQUESTS,
  ...INJECT_REQUESTS,
  ...HISTORY_REQUESTS,
  ...RECORD_REQUESTS,
} as const;

export type OpName = keyof typeof REQUESTS;
export type RequestOf<K extends OpName> = Static<(typeof REQUESTS)[K]>;
/** The fields of a request other than `id` and `op`. */
export type ParamsOf<K extends OpName> = Omit<RequestOf<K>, 'id' | 'op'>;

export const OP_NAMES = Object.keys(REQUESTS) as OpName[];
