/**
 * Layer daemon/buffers/: buffers as clients hold them — a shared buffer and
 * its references, handle tables with file-descriptor semantics and rights
 * (this file), export tokens in flight (tokens.ts). It may use alloc/,
 * memory/, lib/ and protocol/; dma/ and above use it.
 *
 * Handles: per-connection tables of small integers naming buffers, with
 * file-descriptor semantics — a new handle takes the lowest free number,
 * dup gives another number for the same buffer, close frees the number, a
 * number not open is EBADF — and rights (read, write, share) that dup keeps
 * and passing may only narrow.
 *
 * A buffer lives while anything references it: handles in any table,
 * handles in flight (exported tokens), driver registrations and mappings.
 * It is freed at the moment the last reference goes. Pure: no I/O.
 */
import { BufferdError } from '../../protocol/errors.js';
import { MinHeap } from '../lib/minheap.js';
import { drain, type Work } from '../lib/slices.js';
import type { PhysBuffer } from '../alloc/pool.js';

export const RIGHTS = ['read', 'write', 'share'] as const;
export type Right = (typeof RIGHTS)[number];
export const R_READ = 1;
export const R_WRITE = 2;
export const R_SHARE = 4;
export const R_ALL = R_READ | R_WRITE | R_SHARE;
const BIT: Record<Right, number> = { read: R_READ, write: R_WRITE, share: R_SHARE };

export function rightsMask(list: readonly string[]): number {
  let m = 0;
  for (const r of list) m |= BIT[r as Right] ?? 0;
  return m;
}

export function rightsList(mask: number): Right[] {
  return RIGHTS.filter((r) => (mask & BIT[r]) !== 0);
}

export type RefKind = 'handles' | 'inflight' | 'registrations' | 'mappings';

/** A buffer as clients see it: the physical allocation plus its references. */
export class SharedBuffer {
  readonly refs: Record<RefKind, number> = { handles: 0, inflight: 0, registrations: 0, mappings: 0 };
  /** Client ids holding handles, with how many each. */
  readonly holders = new Map<number, number>();
  freed = false;
  /** For alloc {for}: the drivers, the pool chosen and why. */
  placement: { for: string[]; pool: string; reason: string } | null = null;

  constructor(
    readonly phys: PhysBuffer,
    /** Client id that allocated it. */
    readonly creator: number,
    /** Called once when the last reference goes. */
    private readonly release: (b: SharedBuffer) => void,
  ) {}

  get id(): number {
    return this.phys.id;
  }

  get totalRefs(): number {
    return this.refs.handles + this.refs.inflight + this.refs.registrations + this.refs.mappings;
  }

  ref(kind: RefKind): void {
    if (this.freed) throw new BufferdError('EBADF', `buffer ${this.id} was already freed`);
    this.refs[kind]++;
  }

  unref(kind: RefKind): void {
    if (this.refs[kind] <= 0) throw new RangeError(`buffer ${this.id}: no ${kind} reference to drop`);
    this.refs[kind]--;
    if (this.totalRefs === 0 && !this.freed) {
      this.freed = true;
      this.release(this);
    }
  }
}

export interface Handle {
  readonly fd: number;
  readonly buffer: SharedBuffer;
  readonly rights: number;
}

/** What else a connection holds on buffers, counted against its maxHandles with its handles. */
export type Held = 'mappings' | 'registrations';

/**
 * One connection's handle table. Its limit (maxHandles) bounds everything
 * the connection keeps buffers alive with: handles, and the mappings and
 * registrations it made (a buffer stays alive after close(handle) while
 * mapped or registered, so those count too).
 */
export class HandleTable {
  private readonly entries: (Handle | undefined)[] = [];
  private readonly freeNums = new MinHeap();
  private count_ = 0;
  readonly held: Record<Held, number> = { mappings: 0, registrations: 0 };

  constructor(
    /** The owning client's id. */
    readonly owner: number,
    readonly max: number,
  ) {}

  get count(): number {
    return this.count_;
  }

  /** Handles, mappings and registrations together: what maxHandles bounds. */
  get used(): number {
    return this.count_ + this.held.mappings + this.held.registrations;
  }

  /**
   * Slots kept for the connection's own use: handles that arrive without
   * its asking (send, a registration with its driver) may not take them, so
   * no other client can fill its table.
   */
  get reserved(): number {
    return Math.min(16, Math.floor(this.max / 4));
  }

  /** Count a mapping or registration against the limit (EMFILE when full). */
  hold(kind: Held): void {
    this.ensureRoom();
    this.held[kind]++;
  }

  release(kind: Held): void {
    if (this.held[kind] > 0) this.held[kind]--;
  }

  /** The lowest free number (POSIX: the new fd is the lowest available). */
  private lowestFree(): number {
    for (;;) {
      const n = this.freeNums.peek();
      if (n === undefined) return this.entries.length;
      // holes below the table's end are always in the heap; anything else is stale
      if (n < this.entries.length && this.entries[n] === undefined) return n;
      this.freeNums.pop();
    }
  }

  /**
   * EMFILE when the table is full (checked before anything is allocated).
   * `incoming`: a handle the owner did not ask for, which must leave the
   * reserved slots free.
   */
  ensureRoom(who = 'this connection', incoming = false): void {
    const limit = incoming ? this.max - this.reserved : this.max;
    if (this.used < limit) return;
    const parts = [`${this.count_} handles`];
    if (this.held.mappings > 0) parts.push(`${this.held.mappings} mappings`);
    if (this.held.registrations > 0) parts.push(`${this.held.registrations} registrations`);
    const what = parts.length > 1 ? `${this.used} slots (${parts.join(', ')})` : parts[0]!;
    const details = { handles: this.count_, mappings: this.held.mappings, registrations: this.held.registrations, maxHandles: this.max };
    if (incoming && this.used < this.max) {
      throw new BufferdError(
        'EMFILE',
        `${who} already holds ${what} of maxHandles ${this.max}; its last ${this.reserved} slots are kept for its own use, and a handle it did not ask for may not take them`,
        { ...details, reserved: this.reserved },
      );
    }
    throw new BufferdError('EMFILE', `${who} already holds ${what} (maxHandles ${this.max} counts handles, mappings and registrations)`, details);
  }

  /** Open a new handle on a buffer; EMFILE at the limit. */
  open(buffer: SharedBuffer, rights: number): Handle {
    this.ensureRoom();
    const fd = this.lowestFree();
    if (fd < this.entries.length) this.freeNums.pop();
    const h: Handle = { fd, buffer, rights };
    this.entries[fd] = h;
    this.count_++;
    buffer.ref('handles');
    buffer.holders.set(this.owner, (buffer.holders.get(this.owner) ?? 0) + 1);
    return h;
  }

  /** The handle, or undefined (never opened, closed, or another connection's number). */
  find(fd: number): Handle | undefined {
    return Number.isInteger(fd) && fd >= 0 ? this.entries[fd] : undefined;
  }

  /** The handle, or EBADF (never opened, closed, or another connection's number). */
  get(fd: number): Handle {
    const h = this.find(fd);
    if (h === undefined) throw new BufferdError('EBADF', `handle ${fd} is not open on this connection`, { handle: fd });
    return h;
  }

  /** Check a right; EPERM naming the missing one. */
  need(fd: number, right: Right): Handle {
    const h = this.get(fd);
    if ((h.rights & BIT[right]) === 0) {
      throw new BufferdError('EPERM', `handle ${fd} lacks the '${right}' right (it has: ${rightsList(h.rights).join(', ') || 'none'})`, {
        handle: fd,
        missing: right,
      });
    }
    return h;
  }

  close(fd: number): void {
    const h = this.get(fd);
    this.entries[fd] = undefined;
    this.count_--;
    if (fd === this.entries.length - 1) {
      while (this.entries.length > 0 && this.entries[this.entries.length - 1] === undefined) this.entries.pop();
    } else {
      this.freeNums.push(fd);
    }
    const n = (h.buffer.holders.get(this.owner) ?? 1) - 1;
    if (n === 0) h.buffer.holders.delete(this.owner);
    else h.buffer.holders.set(this.owner, n);
    h.buffer.unref('handles');
  }

  /** Close everything (connection gone). */
  closeAll(): void {
    drain(this.closeAllWork());
  }

  /** closeAll in steps: each close may free a buffer; yields every 32 handles. */
  *closeAllWork(): Work<void> {
    let n = 0;
    for (let fd = this.entries.length - 1; fd >= 0; fd--) {
      if (fd >= this.entries.length || this.entries[fd] === undefined) continue;
      this.close(fd);
      if (++n % 32 === 0) yield;
    }
  }

  /** Is this very handle (by identity) still open in the table? */
  has(h: Handle): boolean {
    return this.entries[h.fd] === h;
  }

  all(): Handle[] {
    return this.entries.filter((h): h is Handle => h !== undefined);
  }
}

/** Narrowed rights for passing: a subset of what the handle has, else EPERM. */
export function narrow(h: Handle, asked: readonly string[] | undefined): number {
  if (asked === undefined) return h.rights;
  const m = rightsMask(asked);
  const extra = m & ~h.rights;
  if (extra !== 0) {
    throw new BufferdError(
      'EPERM',
      `cannot pass handle ${h.fd} with the '${rightsList(extra).join("', '")}' right: it only has ${rightsList(h.rights).join(', ') || 'no rights'} (rights can be narrowed, never widened)`,
      { handle: h.fd, missing: rightsList(extra)[0] },
    );
  }
  return m;
}
