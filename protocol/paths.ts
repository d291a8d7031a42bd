/**
 * Socket path resolution, shared by the daemon, the client library and
 * bufctl: `--socket`, else $BUFFERD_SOCKET, else $XDG_RUNTIME_DIR/bufferd.sock,
 * else /tmp/bufferd-<uid>.sock.
 */
import { join, dirname, basename } from 'node:path';

export function resolveSocketPath(
  explicit?: string,
  env: NodeJS.ProcessEnv = process.env,
  uid: number = typeof process.getuid === 'function' ? process.getuid() : 0,
): string {
  if (explicit !== undefined && explicit !== '') return explicit;
  const fromEnv = env['BUFFERD_SOCKET'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const xdg = env['XDG_RUNTIME_DIR'];
  if (xdg !== undefined && xdg !== '') return join(xdg, 'bufferd.sock');
  return `/tmp/bufferd-${uid}.sock`;
}

/** Path of the admin cookie written beside the socket (mode 0600). */
export function cookiePathFor(socketPath: string): string {
  return join(dirname(socketPath), `.${basename(socketPath)}.cookie`);
}
