/**
 * Access control: who a client is (from the token in `hello`) and what it
 * may do (capabilities such as `alloc:writecombine`, `driver`, `admin`),
 * plus its quota. Secrets come from the config, from a token file that only
 * its owner may read, and from the admin cookie the daemon writes beside
 * its socket at start (mode 0600, as bitcoind's .cookie) so the daemon's own
 * user is admin without configuration and nobody else is. Only SHA-256
 * digests of secrets are kept in memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, unlinkSync, chmodSync } from 'node:fs';
import { BufferdError } from '../protocol/errors.js';

export const ADMIN = 'admin';

export interface Principal {
  /** "anonymous", "cookie" or the token's name. */
  name: string;
  capabilities: Set<string>;
  /** Byte quota (usable bytes of live buffers allocated), or null. */
  maxBytes: number | null;
  maxHandles: number;
  /**
   * Quota use. Shared by every connection presenting the same token (a
   * second connection is not a second quota); each anonymous connection
   * has its own.
   */
  usage: { bytes: number };
}

export interface TokenSpec {
  name: string;
  secret: string;
  capabilities: string[];
  maxBytes: number | null;
  maxHandles: number | null;
}

export interface AuthConfig {
  anonymous: { capabilities: string[]; maxBytes: number | null; maxHandles: number | null };
  tokens: TokenSpec[];
  tokenFile: string | null;
  cookie: boolean;
}

/** The SHA-256 digest (base64) kept in place of a secret. */
export const digest = (s: string): string => createHash('sha256').update(s).digest('base64');

export class AuthError extends Error {
  override name = 'AuthError';
}

/** Read a token file: JSON {"tokens": [...]}; refused unless only its owner can read it. */
export function readTokenFile(path: string, parse: (raw: unknown, where: string) => TokenSpec[]): TokenSpec[] {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new AuthError(`cannot read token file ${path}: ${(e as Error).message}`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new AuthError(`token file ${path} has mode 0${(st.mode & 0o777).toString(8)}; it must be readable only by its owner (chmod 600)`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new AuthError(`token file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parse(raw, path);
}

export class Authenticator {
  private readonly bySecret = new Map<string, Principal>();
  private anonymous!: Principal;
  private cookiePath: string | null = null;
  private cookieDigest: string | null = null;

  constructor(
    cfg: AuthConfig,
    private defaultMaxHandles: number,
    fileTokens: TokenSpec[] = [],
  ) {
    this.reload(cfg, fileTokens);
  }

  /** Replace the anonymous set and every configured token (a reload); the cookie stays valid. */
  reload(cfg: AuthConfig, fileTokens: TokenSpec[], defaultMaxHandles = this.defaultMaxHandles): void {
    this.defaultMaxHandles = defaultMaxHandles;
    const cookie = this.cookieDigest !== null ? this.bySecret.get(this.cookieDigest) : undefined;
    this.bySecret.clear();
    if (cookie !== undefined) this.bySecret.set(this.cookieDigest!, cookie);
    this.anonymous = {
      name: 'anonymous',
      capabilities: new Set(cfg.anonymous.capabilities),
      maxBytes: cfg.anonymous.maxBytes,
      maxHandles: cfg.anonymous.maxHandles ?? this.defaultMaxHandles,
      usage: { bytes: 0 },
    };
    for (const t of [...cfg.tokens, ...fileTokens]) this.add(t);
  }

  private add(t: TokenSpec): void {
    this.bySecret.set(digest(t.secret), {
      name: t.name,
      capabilities: new Set(t.capabilities),
      maxBytes: t.maxBytes,
      maxHandles: t.maxHandles ?? this.defaultMaxHandles,
      usage: { bytes: 0 },
    });
  }

  /** Write a fresh admin cookie (mode 0600); returns its path. */
  writeCookie(path: string): string {
    const secret = randomBytes(32).toString('hex');
    try {
      unlinkSync(path);
    } catch {
      /* none yet */
    }
    writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
    this.dropCookieSecret();
    this.add({ name: 'cookie', secret, capabilities: [ADMIN], maxBytes: null, maxHandles: null });
    this.cookieDigest = digest(secret);
    this.cookiePath = path;
    return path;
  }

  private dropCookieSecret(): void {
    if (this.cookieDigest !== null) this.bySecret.delete(this.cookieDigest);
    this.cookieDigest = null;
  }

  /** Delete the cookie file; its secret stops working at once. */
  removeCookie(): void {
    this.dropCookieSecret();
    if (this.cookiePath === null) return;
    try {
      unlinkSync(this.cookiePath);
    } catch {
      /* gone */
    }
    this.cookiePath = null;
  }

  /** The principal for a hello token (none: anonymous). An unknown token is EPERM. */
  resolve(token: string | undefined): Principal {
    if (token === undefined) return { ...this.anonymous, usage: { bytes: 0 } };
    const p = this.bySecret.get(digest(token));
    if (p === undefined) throw new BufferdError('EPERM', 'unknown token: the daemon has no such secret (omit the token to connect as anonymous)');
    return p;
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
