/**
 * Client sessions: one per connection, numbered from 1 and never reused while
 * the daemon runs. A session becomes a listed client once `hello` succeeds.
 */
import { BufferdError } from '../../protocol/errors.js';
import type { Logger } from '../lib/log.js';
import type { HandleTable, SharedBuffer } from '../buffers/handles.js';

/** A CPU mapping of a buffer, with the rights of the handle it was made from. */
export interface Mapping {
  id: number;
  buffer: SharedBuffer;
  rights: number;
}
import type { Principal } from './auth.js';
import type { Cred } from '../lib/native.js';

export interface Session {
  readonly id: number;
  name: string | null;
  /** Monotonic ms when the connection was accepted. */
  readonly connectedAt: number;
  open: boolean;
  /** The connection has closed (long work for it stops at its next slice). */
  closed: boolean;
  capabilities: Set<string>;
  /** Who the client authenticated as (set by hello). */
  principal: Principal | null;
  /** Usable bytes of live buffers this client allocated (its principal's use is the sum over its connections). */
  bytes: number;
  /** The connected process (SO_PEERCRED), or null when it cannot be told. */
  readonly peer: Cred | null;
  /** The handle table (set by hello). */
  handles: HandleTable | null;
  /** CPU mappings by id. */
  mappings: Map<number, Mapping>;
  nextMapping: number;
  /**
   * Push an event frame to this client (no-op once the connection closed).
   * A `droppable` event (a report others can make it receive without end)
   * is dropped, and counted, while the client leaves too much unread.
   */
  send(event: { event: string } & Record<string, unknown>, droppable?: boolean): void;
  /** Droppable events dropped so far. */
  eventsDropped(): number;
  /** Whom this client accepts handles from (`send`); null: nobody. */
  accept: AcceptPolicy | null;
  /**
   * Push a subscription event. Event frames beyond what the socket holds
   * wait in the connection's own queue, which dropStream() empties. A
   * Buffer is a frame already encoded (shared by every subscriber).
   */
  stream(event: ({ event: string } & Record<string, unknown>) | Buffer): void;
  /** Throw away the subscription events not yet written (a dropped subscriber). */
  dropStream(): void;
  /** Bytes queued for the client and not yet taken by it (socket and stream queue). */
  buffered(): number;
  /** The client's event subscription, if any. */
  subscription: import('./events.js').Subscriber | null;
  log: Logger;
}

/** How a session's events leave: what its connection (or a replay) provides. */
export type SessionIo = Pick<Session, 'send' | 'stream' | 'dropStream' | 'buffered' | 'eventsDropped'>;

/** A fresh session before hello: no name, no handles, no capabilities. */
export function newSession(id: number, connectedAt: number, peer: Cred | null, log: Logger, io: SessionIo): Session {
  return {
    id,
    name: null,
    connectedAt,
    open: false,
    closed: false,
    capabilities: new Set(),
    principal: null,
    bytes: 0,
    peer,
    handles: null,
    mappings: new Map(),
    nextMapping: 1,
    log,
    ...io,
    subscription: null,
    accept: null,
  };
}

/** Senders a client accepts handles from: anyone, or these client ids and names. */
export interface AcceptPolicy {
  any: boolean;
  ids: Set<number>;
  names: Set<string>;
}

/** An accept list from the wire ("any", "none" or ids and names). */
export function acceptPolicy(from: 'any' | 'none' | (number | string)[]): AcceptPolicy | null {
  if (from === 'none') return null;
  if (from === 'any') return { any: true, ids: new Set(), names: new Set() };
  return {
    any: false,
    ids: new Set(from.filter((x): x is number => typeof x === 'number')),
    names: new Set(from.filter((x): x is string => typeof x === 'string')),
  };
}

/** The wire form of an accept policy. */
export function acceptList(p: AcceptPolicy | null): 'any' | 'none' | (number | string)[] {
  if (p === null) return 'none';
  if (p.any) return 'any';
  return [...p.ids, ...p.names];
}

/** Does `to` accept a handle sent by `from`? */
export function accepts(to: Session, from: Session): boolean {
  const p = to.accept;
  if (p === null) return false;
  return p.any || p.ids.has(from.id) || (from.name !== null && p.names.has(from.name));
}

export class ClientRegistry {
  private nextId = 1;
  private readonly sessions = new Map<number, Session>();
  private readonly names = new Map<string, Session>();

  allocateId(): number {
    return this.nextId++;
  }

  /** Register a session whose hello succeeded. */
  add(s: Session): void {
    this.sessions.set(s.id, s);
    if (s.name !== null) this.names.set(s.name, s);
  }

  remove(s: Session): void {
    if (this.sessions.get(s.id) === s) this.sessions.delete(s.id);
    if (s.name !== null && this.names.get(s.name) === s) this.names.delete(s.name);
  }

  byId(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  byName(name: string): Session | undefined {
    return this.names.get(name);
  }

  get size(): number {
    return this.sessions.size;
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }
}

/** The session's handle table (hello has run by the time any op needs it). */
export function handlesOf(s: Session): HandleTable {
  if (s.handles === null) throw new RangeError(`client ${s.id} has no handle table before hello`);
  return s.handles;
}

/** The session's CPU mapping by id, or EBADF. */
export function mappingOf(s: Session, id: number): Mapping {
  const m = s.mappings.get(id);
  if (m === undefined) throw new BufferdError('EBADF', `mapping ${id} is not open on this connection`, { mapping: id });
  return m;
}
