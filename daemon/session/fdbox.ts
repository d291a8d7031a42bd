/**
 * The fd socket: where file descriptors cross between the daemon and its
 * clients. The main socket is read by libuv, which would swallow
 * SCM_RIGHTS ancillary data, so descriptors travel on a second Unix socket
 * beside it (`<dir>/.<socket name>.fd`) that only this code reads.
 *
 * A client connects to it and writes one message, "BFD1" and a 16-byte
 * nonce of its choosing (with the descriptor attached, to import one); then
 * it names the nonce in a request on its main connection. Handling that
 * request, the daemon accepts what waits on the fd socket, finds the
 * connection that presented the nonce (and checks, by SO_PEERCRED, that it
 * comes from the same process as the main connection), and sends the
 * descriptor on it, or takes the one it carried. Nothing here blocks: the
 * client wrote before it asked. Connections wait at most WAIT_MS and at most
 * MAX_PENDING of them are held; everything else is closed.
 */
import { chmodSync, unlinkSync, lstatSync } from 'node:fs';
import { BufferdError } from '../../protocol/errors.js';
import type { Cred, Native } from '../lib/native.js';

export const MAGIC = Buffer.from('BFD1');
export const NONCE_BYTES = 16;
/** How long a connection may wait for the request naming its nonce. */
const WAIT_MS = 10_000;
const MAX_PENDING = 256;

interface Pending {
  sock: number;
  cred: Cred;
  /** Descriptors it carried (an import). */
  fds: number[];
  at: number;
}

export class FdBox {
  /** Connections that presented a nonce, by nonce (hex). */
  private readonly pending = new Map<string, Pending>();
  /** Accepted connections that have not written yet. */
  private readonly silent: { sock: number; at: number }[] = [];
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly sys: Native,
    private readonly sock: number,
    readonly path: string,
    private readonly now: () => number,
  ) {}

  /** Listen at `path` with the main socket's file mode. A stale socket file there is replaced; anything else is refused. */
  static open(sys: Native, path: string, mode: number, now: () => number): FdBox {
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
      else throw new Error(`${path} exists and is not a socket; refusing to remove it`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const s = sys.listen(path, 128);
    chmodSync(path, mode);
    return new FdBox(sys, s, path, now);
  }

  /** Read what waits on the fd socket: accept, and note each connection's nonce (and descriptors). */
  private poll(): void {
    const now = this.now();
    for (let n = 0; n < MAX_PENDING; n++) {
      const c = this.sys.accept(this.sock);
      if (c < 0) break;
      this.silent.push({ sock: c, at: now });
    }
    for (let i = 0; i < this.silent.length; ) {
      const { sock, at } = this.silent[i]!;
      let msg: { data: Buffer; fds: number[] } | null = null;
      let bad = false;
      try {
        msg = this.sys.recvFds(sock, 64);
      } catch {
        bad = true;
      }
      if (msg === null && !bad && now - at < WAIT_MS) {
        i++;
        continue;
      }
      this.silent.splice(i, 1);
      const ok = msg !== null && msg.data.length === MAGIC.length + NONCE_BYTES && msg.data.subarray(0, 4).equals(MAGIC);
      if (!ok) {
        for (const fd of msg?.fds ?? []) this.sys.close(fd);
        this.sys.close(sock);
        continue;
      }
      const key = msg!.data.subarray(4).toString('hex');
      let cred: Cred;
      try {
        cred = this.sys.peerCred(sock);
      } catch {
        for (const fd of msg!.fds) this.sys.close(fd);
        this.sys.close(sock);
        continue;
      }
      this.drop(key);
      this.pending.set(key, { sock, cred, fds: msg!.fds, at: now });
    }
    // bounded: the oldest go first
    for (const [k, p] of this.pending) {
      if (this.pending.size <= MAX_PENDING && now - p.at < WAIT_MS) break;
      this.drop(k);
    }
    this.arm();
  }

  private drop(key: string): void {
    const p = this.pending.get(key);
    if (p === undefined) return;
    this.pending.delete(key);
    for (const fd of p.fds) this.sys.close(fd);
    this.sys.close(p.sock);
  }

  /** Sweep what waited too long, while anything waits. */
  private arm(): void {
    if (this.timer !== null || (this.pending.size === 0 && this.silent.length === 0)) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.poll();
    }, WAIT_MS);
    this.timer.unref();
  }

  /** The connection that presented `nonce` (base64), from the process `peer` when known; ENOENT otherwise. */
  private take(nonce: string, peer: Cred | null): Pending {
    const raw = Buffer.from(nonce, 'base64');
    if (raw.length !== NONCE_BYTES) {
      throw new BufferdError('EINVAL', `field 'nonce' must be ${NONCE_BYTES} bytes in base64 (got ${raw.length} bytes)`, { nonce });
    }
    this.poll();
    const key = raw.toString('hex');
    const p = this.pending.get(key);
    if (p === undefined) {
      throw new BufferdError('ENOENT', `no connection presented this nonce on the fd socket ${this.path} (connect, write "BFD1" and the nonce, then ask)`, { fdSocket: this.path });
    }
    this.pending.delete(key);
    if (peer !== null && p.cred.pid !== peer.pid) {
      for (const fd of p.fds) this.sys.close(fd);
      this.sys.close(p.sock);
      throw new BufferdError('EPERM', `the fd socket connection that presented this nonce belongs to process ${p.cred.pid}, not to this client's process ${peer.pid}`, { pid: p.cred.pid });
    }
    return p;
  }

  /** Send `fd` (and a small header) to the client that presented `nonce`, and close that connection. */
  send(nonce: string, peer: Cred | null, header: Uint8Array, fd: number): void {
    const p = this.take(nonce, peer);
    try {
      for (const x of p.fds) this.sys.close(x);
      this.sys.sendFds(p.sock, header, [fd]);
    } finally {
      this.sys.close(p.sock);
    }
  }

  /** The descriptor the client that presented `nonce` attached (the caller closes it). */
  receive(nonce: string, peer: Cred | null): number {
    const p = this.take(nonce, peer);
    this.sys.close(p.sock);
    if (p.fds.length !== 1) {
      for (const x of p.fds) this.sys.close(x);
      throw new BufferdError('EINVAL', `the fd socket message that presented this nonce carried ${p.fds.length} file descriptors; send exactly one (SCM_RIGHTS)`);
    }
    return p.fds[0]!;
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    for (const k of [...this.pending.keys()]) this.drop(k);
    for (const s of this.silent) this.sys.close(s.sock);
    this.silent.length = 0;
    this.sys.close(this.sock);
    try {
      unlinkSync(this.path);
    } catch {
      /* gone */
    }
  }
}

/** Where the fd socket lives: beside the main socket, as the cookie. */
export function fdSocketPathFor(socketPath: string): string {
  const i = socketPath.lastIndexOf('/');
  return `${socketPath.slice(0, i + 1)}.${socketPath.slice(i + 1)}.fd`;
}
