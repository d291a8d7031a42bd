/**
 * Export tokens: a handle in flight. `export` turns a handle into a token of
 * 192 random bits that holds a reference on the buffer; `import` turns it
 * into a handle once. Unknown, used and expired tokens are indistinguishable
 * (ENOENT, same message). Only a SHA-256 digest of each token is kept, so
 * the daemon's memory never holds an importable secret. Clock injected; the
 * daemon sweeps expired tokens with a timer. Pure apart from randomness.
 */
import { randomBytes } from 'node:crypto';
import { BufferdError } from '../protocol/errors.js';
import type { SharedBuffer } from './handles.js';
import { digest } from './auth.js';

export const DEFAULT_TOKEN_TTL_MS = 30_000;
/** The longest lifetime a token may be asked for: the protocol's limit. */
export { MAX_TOKEN_TTL_MS } from '../protocol/ops/handles.js';
export const TOKEN_BYTES = 24;

interface InFlight {
  buffer: SharedBuffer;
  rights: number;
  expires: number;
  from: number;
  fromName: string | null;
}

export class TokenTable {
  private readonly live = new Map<string, InFlight>();
  issued = 0;
  imported = 0;
  expired = 0;

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.live.size;
  }

  /** Issue a token for a buffer; it holds an in-flight reference until imported or expired. */
  export(buffer: SharedBuffer, rights: number, ttlMs: number, from: number, fromName: string | null): { token: string; expiresInMs: number } {
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    buffer.ref('inflight');
    this.live.set(digest(token), { buffer, rights, expires: this.now() + ttlMs, from, fromName });
    this.issued++;
    return { token, expiresInMs: ttlMs };
  }

  /** Redeem a token once. ENOENT for unknown, used and expired alike. */
  take(token: string): InFlight {
    const key = digest(token);
    const t = this.live.get(key);
    if (t === undefined || t.expires <= this.now()) {
      if (t !== undefined) this.expire(key, t);
      throw new BufferdError('ENOENT', 'no such token (tokens are single use and expire)');
    }
    this.live.delete(key);
    this.imported++;
    return t;
  }

  private expire(key: string, t: InFlight): void {
    this.live.delete(key);
    this.expired++;
    t.buffer.unref('inflight');
  }

  /** Release tokens whose time is up; returns how many. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const [k, t] of this.live) {
      if (t.expires <= now) {
        this.expire(k, t);
        n++;
      }
    }
    return n;
  }

  /** Earliest expiry, or null. */
  nextExpiry(): number | null {
    let d: number | null = null;
    for (const t of this.live.values()) if (d === null || t.expires < d) d = t.expires;
    return d;
  }
}
