/**
 * The admin cookie file beside the socket: `<dir>/.<socket name>.cookie`,
 * one line of 64 hex digits, mode 0600 (as bitcoind's .cookie).
 *
 * Written safely: a temporary file is created exclusively (O_CREAT|O_EXCL,
 * which never follows a symlink) with mode 0600 in the same directory,
 * filled, synced and renamed over the cookie path (rename replaces a
 * directory entry; it never writes through a symlink). What already sits at
 * the cookie path is replaced only when it is a dead daemon's cookie: a
 * regular file of ours, mode 0600, holding exactly a cookie line. Anything
 * else (a symlink, a directory, another user's file, a file with other
 * content) is refused, as a socket path that is not a socket is refused.
 * At exit the file is removed only if it is still the one written.
 */
import { closeSync, fsyncSync, lstatSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** The cookie file's whole content: 64 hex digits and a newline. */
export const COOKIE_PATTERN = /^[0-9a-f]{64}\n$/;

export class CookieRefused extends Error {
  override name = 'CookieRefused';
}

const uid = (): number => (typeof process.getuid === 'function' ? process.getuid() : 0);

/** Why an existing entry at the cookie path is not a cookie we may replace, or null when it is. */
function notOurs(path: string, st: Stats): string | null {
  if (st.isSymbolicLink()) return 'it is a symbolic link';
  if (!st.isFile()) return 'it is not a regular file';
  if (st.uid !== uid()) return `it belongs to uid ${st.uid}, not to this daemon's uid ${uid()}`;
  if ((st.mode & 0o777) !== 0o600) return `its mode is 0${(st.mode & 0o777).toString(8)}, not 0600`;
  if (st.size !== 65) return 'it does not hold a cookie (64 hex digits and a newline)';
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return `it cannot be read: ${(e as Error).message}`;
  }
  return COOKIE_PATTERN.test(text) ? null : 'it does not hold a cookie (64 hex digits and a newline)';
}

/** Identity of the file written, to remove only that one. */
export interface CookieFile {
  path: string;
  dev: number;
  ino: number;
}

/**
 * Write `secret` (64 hex digits) as the cookie at `path`. Throws
 * CookieRefused when something that is not a stale cookie of ours is there,
 * and the fs error when the directory cannot be written.
 */
export function writeCookieFile(path: string, secret: string): CookieFile {
  let existing: Stats | null = null;
  try {
    existing = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (existing !== null) {
    const why = notOurs(path, existing);
    if (why !== null) throw new CookieRefused(`${path} exists and is not a bufferd cookie (${why}); refusing to replace it`);
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${secret}\n`);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (e) {
    unlinkSync(tmp);
    throw e;
  }
  const st = lstatSync(path);
  return { path, dev: st.dev, ino: st.ino };
}

/** Remove the cookie if the file at its path is still the one written. */
export function removeCookieFile(f: CookieFile): void {
  try {
    const st = lstatSync(f.path);
    if (st.dev === f.dev && st.ino === f.ino) unlinkSync(f.path);
  } catch {
    /* gone already */
  }
}

/** Remove a dead daemon's cookie at `path` (only a cookie of ours); true if one was removed. */
export function removeStaleCookie(path: string): boolean {
  try {
    if (notOurs(path, lstatSync(path)) !== null) return false;
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}
