/**
 * Finding the daemon: its admin cookie beside the socket, and the error
 * raised when it can't be reached.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cookiePathFor } from '../protocol/paths.js';

/** Read the admin cookie written by the daemon beside its socket, if we may. */
export function readCookie(socketPath: string): string | undefined {
  const p = cookiePathFor(socketPath);
  try {
    if (!existsSync(p)) return undefined;
    const t = readFileSync(p, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch {
    return undefined;
  }
}

/** Error raised when the daemon cannot be reached at all. */
export class ConnectError extends Error {
  constructor(
    readonly socketPath: string,
    readonly code: string,
    detail: string,
  ) {
    super(`cannot connect to bufferd at ${socketPath} (${code}): ${detail}`);
    this.name = 'ConnectError';
  }
}
