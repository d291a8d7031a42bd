/**
 * The auth section of the config as the daemon uses it (validated by
 * config.ts): the anonymous set, tokens, the token file, the cookie and the
 * names bound to principals; and reading a token file, which only its owner
 * may read. session/auth.ts turns it into principals.
 */
import { readFileSync, statSync } from 'node:fs';
import { jsonErrorAt } from '../lib/json-syntax.js';

export interface TokenSpec {
  name: string;
  secret: string;
  capabilities: string[];
  maxBytes: number | null;
  maxHandles: number | null;
  maxTokens: number | null;
}

/** What a principal without a token may do and hold. */
export interface Grant {
  capabilities: string[];
  maxBytes: number | null;
  maxHandles: number | null;
  maxTokens: number | null;
}

export interface AuthConfig {
  anonymous: Grant;
  /** Principals 'uid:N' for clients of these users (by SO_PEERCRED), without a token. */
  users: Record<string, Grant>;
  /** Principals 'gid:N' for clients whose primary group is one of these, without a token. */
  groups: Record<string, Grant>;
  tokens: TokenSpec[];
  tokenFile: string | null;
  cookie: boolean;
  /** Client names reserved for principals: a bound name can only be taken by one of them. */
  names: Record<string, string[]>;
}

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
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new AuthError(`cannot read token file ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new AuthError(`token file ${path} is not valid JSON: ${jsonErrorAt(text, e as Error)}`);
  }
  return parse(raw, path);
}

