/**
 * bufctl's failures as text and as JSON: `{"error": {code, message,
 * details}}` whatever went wrong (the daemon's answer, a usage error, no
 * connection), and what to do when the daemon can't be reached — in
 * particular when the socket is there but this user may not use it
 * (EACCES): which file refuses, its owner, group and mode, and the group
 * to join.
 */
import { accessSync, constants, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { userInfo } from 'node:os';

/** One error as bufctl reports it. */
export interface CliError {
  /** Exit status: 1 the daemon answered an error, 2 usage, 3 cannot connect. */
  exit: number;
  /** errno-like: the daemon's code, EINVAL for usage, the socket's errno for a connection. */
  code: string;
  message: string;
  details: Record<string, unknown>;
  /** The second line on stderr: usage, or what to do. */
  hint?: string;
}

/** The JSON document printed on stdout for an error (one line for the JSON-lines stream of watch). */
export function errorDocument(e: CliError, oneLine = false): string {
  const doc = { error: { code: e.code, message: e.message, details: e.details } };
  return `${oneLine ? JSON.stringify(doc) : JSON.stringify(doc, null, 2)}\n`;
}

/** The text on stderr. */
export function errorText(e: CliError): string {
  return `bufctl: ${e.exit === 1 ? `${e.code}: ` : ''}${e.message}\n${e.hint !== undefined ? `${e.hint}\n` : ''}`;
}

const START_HINT =
  "Is the daemon running? Start it with 'npx bufferd' (or 'npm start' in a checkout),\n" + 'or point bufctl at it with --socket PATH or BUFFERD_SOCKET.';

/** Names from /etc/passwd or /etc/group by id (the number when not listed). */
function nameOf(file: '/etc/passwd' | '/etc/group', id: number): string {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && Number(f[2]) === id && f[2] !== '') return f[0]!;
    }
  } catch {
    /* not readable: the number will do */
  }
  return String(id);
}

const octal = (st: Stats) => `0${(st.mode & 0o777).toString(8)}`;

/** Is this process in the group (primary or supplementary)? */
function inGroup(gid: number): boolean {
  return process.getegid?.() === gid || (process.getgroups?.() ?? []).includes(gid);
}

/**
 * Why this user may not connect to the socket: the first directory on the
 * way it may not enter, or the socket itself it may not write to.
 */
export function permissionProblem(socket: string): { message: string; hint: string; details: Record<string, unknown> } {
  const me = process.geteuid?.() ?? -1;
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = `uid ${me}`;
  }
  // walk down from / to the socket's directory: the first one we may not search is the problem
  const dirs: string[] = [];
  for (let d = dirname(socket); ; d = dirname(d)) {
    dirs.unshift(d);
    if (dirname(d) === d) break;
  }
  let path = socket;
  let bit = 0o2; // write on the socket, search on a directory
  for (const d of dirs) {
    try {
      accessSync(d, constants.X_OK);
    } catch {
      path = d;
      bit = 0o1;
      break;
    }
  }
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    return {
      message: `permission denied connecting to ${socket} (EACCES), and ${path} cannot be examined: ${(e as Error).message}`,
      hint: 'Run bufctl as a user allowed to use the daemon socket (the daemon\'s user or a member of its group).',
      details: { socket, path },
    };
  }
  const owner = nameOf('/etc/passwd', st.uid);
  const group = nameOf('/etc/group', st.gid);
  const groupMay = (st.mode & (bit << 3)) !== 0;
  const member = inGroup(st.gid);
  const details = { socket, path, owner, group, mode: octal(st), user, inGroup: member };
  const attrs = `(mode ${octal(st)}, owner ${owner}, group ${group})`;
  const message =
    path === socket
      ? `permission denied: user ${user} may not connect to ${socket} ${attrs}`
      : `permission denied: user ${user} may not enter ${path} ${attrs}, the way to ${socket}`;
  let hint: string;
  if (st.uid === me) {
    hint = `You own it but its mode lacks the owner's bit: chmod u+${bit === 0o2 ? 'w' : 'x'} ${path}.`;
  } else if (groupMay && !member) {
    hint = `Join the group '${group}' (sudo usermod -aG ${group} ${user}, then log in again) or run bufctl as ${owner}.`;
  } else if (!groupMay) {
    hint =
      `Only ${owner} may ${path === socket ? 'connect' : 'enter it'}: run bufctl as ${owner}, or let the group in ` +
      `(${path === socket ? 'the daemon\'s server.socketMode "0660"' : `chmod g+x ${path}`}) and join '${group}'.`;
  } else {
    hint = `You are in '${group}' but your session is not yet: log in again (or run 'newgrp ${group}').`;
  }
  return { message, hint, details };
}

/** A connection that failed before any answer (ConnectError's fields). */
export function connectFailure(e: { socketPath: string; code: string; message: string }): CliError {
  const socket = e.socketPath;
  const base = { exit: 3, code: e.code };
  switch (e.code) {
    case 'EACCES': {
      const p = permissionProblem(socket);
      return { ...base, message: p.message, hint: p.hint, details: p.details };
    }
    case 'ENOENT':
      return { ...base, message: `no daemon socket at ${socket} (ENOENT)`, hint: START_HINT, details: { socket } };
    case 'ECONNREFUSED':
      return { ...base, message: `nothing listens on ${socket} (ECONNREFUSED): the daemon that made it is gone`, hint: START_HINT, details: { socket } };
    default:
      return { ...base, message: e.message, hint: START_HINT, details: { socket } };
  }
}
