/**
 * systemd socket activation (sd_listen_fds(3)): the service manager passes
 * the listening socket as fd 3 with LISTEN_PID (ours) and LISTEN_FDS ≥ 1.
 */
import { readFileSync, readlinkSync } from 'node:fs';

export const SD_LISTEN_FDS_START = 3;

/**
 * The inherited socket, or null when the variables are absent or meant for
 * another process. The variables are removed so children don't inherit them.
 */
export function socketActivation(env: NodeJS.ProcessEnv, pid = process.pid): { fd: number } | null {
  const forPid = Number(env['LISTEN_PID'] ?? '');
  const fds = Number(env['LISTEN_FDS'] ?? '');
  if (forPid !== pid || !Number.isInteger(fds) || fds < 1) return null;
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  return { fd: SD_LISTEN_FDS_START };
}

/**
 * The filesystem path a Unix socket fd is bound to, from /proc (Node can't
 * getsockname a pipe it didn't bind): "@name" for an abstract socket, null
 * when the fd is not a bound Unix socket or /proc can't tell.
 */
export function unixSocketPathOfFd(fd: number, proc = '/proc'): string | null {
  let inode: string;
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${proc}/self/fd/${fd}`));
    if (m === null) return null;
    inode = m[1]!;
  } catch {
    return null;
  }
  let table: string;
  try {
    table = readFileSync(`${proc}/net/unix`, 'utf8');
  } catch {
    return null;
  }
  // Num RefCount Protocol Flags Type St Inode[ Path]: the path is everything
  // after the one space that follows the inode (it may hold spaces itself)
  for (const line of table.split('\n').slice(1)) {
    const m = /^\s*\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)(?: (.*))?$/.exec(line);
    if (m !== null && m[1] === inode) return m[2] !== undefined && m[2] !== '' ? m[2] : null;
  }
  return null;
}
