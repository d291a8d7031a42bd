/**
 * Shared by the coherency end-to-end tests: a test-process connection that
 * attached a client driver (non-coherent or coherent) and registered a
 * buffer with it, so the same connection can act as the CPU and as the
 * device; violation look-ups and the correct synced CPU accesses.
 */
import { client, nextEvent } from './drivers.js';
import type { BufferClient, HandleInfo, RegistrationEvent, ViolationEvent, ViolationInfo } from '../../client/index.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** The two kinds of device every flow runs on: client drivers attached in the test. */
export const DEVICES = [
  { label: 'non-coherent', driver: 'nc', coherent: false },
  { label: 'coherent', driver: 'co', coherent: true },
] as const;
export type Device = (typeof DEVICES)[number];

export interface Rig {
  app: BufferClient;
  /** The app's handle. */
  h: number;
  /** The handle the registration gave the driver (the same connection). */
  dh: number;
  buffer: number;
  info: HandleInfo;
  driver: string;
  /** Violation events this connection received since the rig was built. */
  events: ViolationEvent[];
}

/**
 * A connection `name` that attaches `driver` ({coherent}), allocates `size`
 * bytes from `pool` and registers the buffer with its own driver.
 */
export async function rig(t: Teardown, socket: string, opts: { name: string; driver: string; coherent: boolean; pool?: string; size?: number; attach?: boolean }): Promise<Rig> {
  const app = await client(t, socket, opts.name);
  if (opts.attach !== false) await app.attachDriver(opts.driver, { coherent: opts.coherent });
  const info = await app.alloc({ pool: opts.pool ?? 'default', size: opts.size ?? 8192 });
  const events: ViolationEvent[] = [];
  app.on('violation', (ev) => events.push(ev));
  const reg = nextEvent<RegistrationEvent>(app, 'registration');
  await app.register(info.handle, opts.driver);
  const ev = await reg;
  return { app, h: info.handle, dh: ev.handle, buffer: info.buffer, info, driver: opts.driver, events };
}

/** Violations recorded for a buffer after sequence number `after`. */
export async function violationsSince(c: BufferClient, buffer: number, after: number): Promise<ViolationInfo[]> {
  return (await c.violations({ buffer })).violations.filter((v) => v.seq > after);
}

/** The daemon's total violation count (the newest seq). */
export async function total(c: BufferClient): Promise<number> {
  return (await c.violations()).total;
}

export const kinds = (vs: { kind: string }[]) => [...new Set(vs.map((v) => v.kind))].sort();

/** A correct CPU read: sync start read, read, sync end read. */
export async function syncedRead(c: BufferClient, h: number, offset: number, length: number): Promise<Buffer> {
  await c.sync(h, { phase: 'start', access: 'read' });
  const got = await c.read(h, offset, length);
  await c.sync(h, { phase: 'end', access: 'read' });
  return got;
}

/** A correct CPU write: sync start write, write, sync end write. */
export async function syncedWrite(c: BufferClient, h: number, offset: number, data: Uint8Array): Promise<void> {
  await c.sync(h, { phase: 'start', access: 'write' });
  await c.write(h, offset, data);
  await c.sync(h, { phase: 'end', access: 'write' });
}

/** Wait until `got` holds at least n items (events arrive asynchronously). */
export async function atLeast<T>(got: T[], n: number, timeoutMs = 3000): Promise<T[]> {
  const end = Date.now() + timeoutMs;
  while (got.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return got;
}

/** First index where two buffers differ, -1 when equal. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
