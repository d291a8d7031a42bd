/**
 * Access control: who a client is (from the token in `hello`) and what it
 * may do (capabilities such as `alloc:writecombine`, `driver`, `admin`),
 * plus its quotas. Secrets come from the config, from a token file that only
 * its owner may read, and from the admin cookie the daemon writes beside
 * its socket at start (mode 0600, as bitcoind's .cookie; cookie.ts) so the
 * daemon's own user is admin without configuration and nobody else is.
 * Only SHA-256 digests of secrets are kept in memory.
 *
 * Quotas belong to the principal, not the connection: every connection of
 * one principal (all anonymous connections are one principal) shares its
 * byte quota and its tokens in flight, and the use survives a reload.
 * Client names may be bound to principals (`auth.names`).
 */
import { randomBytes } from 'node:crypto';
import { BufferdError } from '../../protocol/errors.js';
import { writeCookieFile, removeCookieFile, type CookieFile } from './cookie.js';
import { digest } from '../lib/digest.js';
import type { AuthConfig, TokenSpec } from '../config/auth.js';


export const ADMIN = 'admin';

/** What a principal's clients use of its quotas, across all its connections. */
export interface Usage {
  /** Usable bytes of live buffers its clients allocated (whatever keeps them alive). */
  bytes: number;
  /** Tokens its clients exported that are not yet imported or expired. */
  tokens: number;
}

export interface Principal {
  /** "anonymous", "cookie" or the token's name. */
  name: string;
  capabilities: Set<string>;
  /** Byte quota (usable bytes of live buffers its clients allocated), or null. */
  maxBytes: number | null;
  /** Per connection: handles, mappings and registrations it holds. */
  maxHandles: number;
  /** Tokens in flight at once, over all its connections. */
  maxTokens: number;
  /** Shared by every connection of the principal; kept across reloads. */
  usage: Usage;
}

/** Defaults for what a principal's spec leaves out. */
export interface AuthLimits {
  maxHandles: number;
  maxTokens: number;
}

export class Authenticator {
  private readonly bySecret = new Map<string, Principal>();
  /** Quota use by principal name: shared by its connections, kept across reloads. */
  private readonly usages = new Map<string, Usage>();
  private anonymous!: Principal;
  private users = new Map<number, Principal>();
  private groups = new Map<number, Principal>();
  private names: Record<string, string[]> = {};
  private cookieFile: CookieFile | null = null;
  private cookieDigest: string | null = null;

  constructor(
    cfg: AuthConfig,
    private limits: AuthLimits,
    fileTokens: TokenSpec[] = [],
  ) {
    this.reload(cfg, fileTokens);
  }

  /** Replace the anonymous set, every configured token and the name bindings (a reload); the cookie stays valid. */
  reload(cfg: AuthConfig, fileTokens: TokenSpec[], limits = this.limits): void {
    this.limits = limits;
    const cookie = this.cookieDigest !== null ? this.bySecret.get(this.cookieDigest) : undefined;
    this.bySecret.clear();
    if (cookie !== undefined) this.bySecret.set(this.cookieDigest!, cookie);
    this.anonymous = this.principal({ name: 'anonymous', ...cfg.anonymous });
    this.users = new Map(Object.entries(cfg.users).map(([id, g]) => [Number(id), this.principal({ name: `uid:${id}`, ...g })]));
    this.groups = new Map(Object.entries(cfg.groups).map(([id, g]) => [Number(id), this.principal({ name: `gid:${id}`, ...g })]));
    for (const t of [...cfg.tokens, ...fileTokens]) this.bySecret.set(digest(t.secret), this.principal(t));
    this.names = cfg.names;
  }

  private principal(t: { name: string; capabilities: string[]; maxBytes: number | null; maxHandles: number | null; maxTokens: number | null }): Principal {
    let usage = this.usages.get(t.name);
    if (usage === undefined) this.usages.set(t.name, (usage = { bytes: 0, tokens: 0 }));
    return {
      name: t.name,
      capabilities: new Set(t.capabilities),
      maxBytes: t.maxBytes,
      maxHandles: t.maxHandles ?? this.limits.maxHandles,
      maxTokens: t.maxTokens ?? this.limits.maxTokens,
      usage,
    };
  }

  /** Write a fresh admin cookie (mode 0600, see cookie.ts); returns its path. Throws CookieRefused or an fs error. */
  writeCookie(path: string): string {
    const secret = randomBytes(32).toString('hex');
    const file = writeCookieFile(path, secret);
    this.dropCookieSecret();
    this.bySecret.set(digest(secret), this.principal({ name: 'cookie', capabilities: [ADMIN], maxBytes: null, maxHandles: null, maxTokens: null }));
    this.cookieDigest = digest(secret);
    this.cookieFile = file;
    return path;
  }

  private dropCookieSecret(): void {
    if (this.cookieDigest !== null) this.bySecret.delete(this.cookieDigest);
    this.cookieDigest = null;
  }

  /** Delete the cookie file (if it is still ours); its secret stops working at once. */
  removeCookie(): void {
    this.dropCookieSecret();
    if (this.cookieFile === null) return;
    removeCookieFile(this.cookieFile);
    this.cookieFile = null;
  }

  /**
   * The principal for a hello: its token's, else its user's (auth.users, by
   * the peer's uid), else its primary group's (auth.groups), else anonymous.
   * An unknown token is EPERM.
   */
  resolve(token: string | undefined, peer: { uid: number; gid: number } | null = null): Principal {
    if (token === undefined) {
      if (peer !== null) return this.users.get(peer.uid) ?? this.groups.get(peer.gid) ?? this.anonymous;
      return this.anonymous;
    }
    const p = this.bySecret.get(digest(token));
    if (p === undefined) throw new BufferdError('EPERM', 'unknown token: the daemon has no such secret (omit the token to connect as anonymous)');
    return p;
  }

  /** EPERM unless the principal may take this client name (auth.names binds names to principals). */
  checkName(name: string, p: Principal): void {
    const bound = Object.prototype.hasOwnProperty.call(this.names, name) ? this.names[name]! : undefined;
    if (bound === undefined || bound.includes(p.name)) return;
    throw new BufferdError('EPERM', `client name '${name}' is reserved for ${bound.map((b) => `'${b}'`).join(', ')} (auth.names); this client is '${p.name}'`, { name, principals: bound });
  }
}

/** Does a principal hold a capability? `admin` holds them all. */
export function hasCapability(caps: Set<string>, cap: string): boolean {
  return caps.has(cap) || caps.has(ADMIN);
}

export function requireCapability(caps: Set<string>, cap: string, what: string): void {
  if (!hasCapability(caps, cap)) {
    throw new BufferdError('EPERM', `${what} requires the capability '${cap}', which this client does not have`, { capability: cap });
  }
}
