/**
 * Export tokens: a handle in flight. `export` turns a handle into a token of
 * 192 random bits that holds a reference on the buffer; `import` turns it
 * into a handle once. Unknown, used and expired tokens are indistinguishable
 * (ENOENT, same message). Only a SHA-256 digest of each token is kept, so
 * the daemon's memory never holds an importable secret. Clock injected; the
 * daemon sweeps expired tokens with a timer. Pure apart from randomness.
 */
import { randomBytes } from 'node:crypto';
import { BufferdError } from '../../protocol/errors.js';
import type { SharedBuffer } from './handles.js';
import { digest } from '../lib/digest.js';
import { KeyedHeap, type HeapEntry } from '../lib/minheap.js';
import type { FaultInjector } from '../lib/faultinject.js';

export const DEFAULT_TOKEN_TTL_MS = 30_000;
/** The longest lifetime a token may be asked for: the protocol's limit. */
export { MAX_TOKEN_TTL_MS } from '../../protocol/ops/handles.js';
export const TOKEN_BYTES = 24;

/** Who issued a token: its quota counts the token until it is imported or expires. */
export interface TokenOwner {
  /** The principal's name (for the EMFILE message). */
  name: string;
  /** Its use, shared by all its connections. */
  usage: { tokens: number };
  /** Tokens the principal may have in flight at once. */
  maxTokens: number;
}

interface InFlight extends HeapEntry {
  /** The token's digest (its key in the table). */
  id: string;
  buffer: SharedBuffer;
  rights: number;
  /** Expiry on the table's clock (the heap key). */
  key: number;
  from: number;
  fromName: string | null;
  owner: TokenOwner;
}

/**
 * Live tokens by digest, and a heap of them by expiry: issuing, redeeming
 * and expiring a token cost O(log n) however many are live, and the next
 * deadline is read in O(1).
 */
/** A token that expired unimported: its buffer, who exported it and the rights it carried. */
export interface ExpiredToken {
  buffer: SharedBuffer;
  from: number;
  fromName: string | null;
  rights: number;
}

export class TokenTable {
  private readonly live = new Map<string, InFlight>();
  private readonly byExpiry = new KeyedHeap<InFlight>();
  issued = 0;
  imported = 0;
  expired = 0;
  /** Fault injection (point `token`: a valid token found expired at import), or null. */
  faults: FaultInjector | null = null;
  /** Told of a token that expired unimported, before it lets its buffer go (the buffer's history records it). */
  onExpire: ((t: ExpiredToken) => void) | null = null;

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.live.size;
  }

  /** Issue a token for a buffer; it holds an in-flight reference until imported or expired. EMFILE past the owner's maxTokens. */
  export(buffer: SharedBuffer, rights: number, ttlMs: number, from: number, fromName: string | null, owner: TokenOwner): { token: string; expiresInMs: number } {
    if (owner.usage.tokens >= owner.maxTokens) {
      throw new BufferdError(
        'EMFILE',
        `'${owner.name}' already has ${owner.usage.tokens} tokens in flight (maxTokens ${owner.maxTokens}, counted across all its connections until each is imported or expires)`,
        { tokens: owner.usage.tokens, maxTokens: owner.maxTokens },
      );
    }
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    buffer.ref('inflight');
    const t: InFlight = { id: digest(token), buffer, rights, key: this.now() + ttlMs, heapIndex: -1, from, fromName, owner };
    this.live.set(t.id, t);
    this.byExpiry.push(t);
    owner.usage.tokens++;
    this.issued++;
    return { token, expiresInMs: ttlMs };
  }

  /** Redeem a token once. ENOENT for unknown, used and expired alike. The caller drops its in-flight reference. */
  take(token: string): { buffer: SharedBuffer; rights: number; from: number; fromName: string | null } {
    const t = this.live.get(digest(token));
    // the `token` fault point: a live token is taken for expired, on the expiry path
    const injected = t !== undefined && t.key > this.now() && this.faults?.shouldFail('token', { pool: t.buffer.phys.pool.name }) === true;
    if (t === undefined || t.key <= this.now() || injected) {
      if (t !== undefined) this.expire(t);
      throw new BufferdError('ENOENT', 'no such token (tokens are single use and expire)', injected ? { injected: true } : undefined);
    }
    this.forget(t);
    this.imported++;
    return t;
  }

  private forget(t: InFlight): void {
    this.live.delete(t.id);
    this.byExpiry.remove(t);
    t.owner.usage.tokens--;
  }

  private expire(t: InFlight): void {
    this.forget(t);
    this.expired++;
    this.onExpire?.({ buffer: t.buffer, from: t.from, fromName: t.fromName, rights: t.rights });
    t.buffer.unref('inflight');
  }

  /** Release tokens whose time is up, earliest first; returns how many. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (let t = this.byExpiry.peek(); t !== undefined && t.key <= now; t = this.byExpiry.peek()) {
      this.expire(t);
      n++;
    }
    return n;
  }

  /** Live tokens by buffer id: who exported each, its rights and how long it has left. O(tokens). */
  byBuffer(): Map<number, { from: number; fromName: string | null; rights: number; expiresInMs: number }[]> {
    const now = this.now();
    const out = new Map<number, { from: number; fromName: string | null; rights: number; expiresInMs: number }[]>();
    for (const t of this.live.values()) {
      if (t.key <= now) continue; // expired, not yet swept
      let l = out.get(t.buffer.id);
      if (l === undefined) out.set(t.buffer.id, (l = []));
      l.push({ from: t.from, fromName: t.fromName, rights: t.rights, expiresInMs: Math.ceil(t.key - now) });
    }
    return out;
  }

  /** Earliest expiry, or null. O(1). */
  nextExpiry(): number | null {
    return this.byExpiry.peek()?.key ?? null;
  }
}
