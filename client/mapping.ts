/**
 * Real shared memory for a client: mappings whose bytes are the buffer's
 * (zero copy), and real file descriptors for buffers, both through the
 * daemon's fd socket (PROTOCOL.md §12): connect to it, write "BFD1" and a
 * nonce (with a descriptor attached to import one), name the nonce in the
 * request, then read the descriptor the daemon sent. The system calls go
 * through daemon/lib/native.ts (koffi); without them these answer ENOTSUP.
 */
import { randomBytes } from 'node:crypto';
import { BufferdError } from '../protocol/errors.js';
import type { OpName, ParamsOf } from '../protocol/requests.js';
import type { CachePolicyName } from '../protocol/attributes.js';
import type { HandleInfo, ResultOf, RightName } from '../protocol/results.js';
import type { Requester } from './requester.js';
import { MAX_VIEW, native, nativeReason, type Mapped, type Native } from '../daemon/lib/native.js';

const MAGIC = Buffer.from('BFD1');


export type Access = 'read' | 'write' | 'readwrite';

function sys(c: Requester, what: string): { n: Native; path: string } {
  const n = native();
  if (n === null) throw new BufferdError('ENOTSUP', `${what} needs shared memory, which this process cannot use: ${nativeReason()}`);
  const path = c.session.fdSocket;
  if (path === null) throw new BufferdError('ENOTSUP', `${what} needs shared memory, which the daemon does not offer (hello's fdSocket is nil)`);
  return { n, path };
}

/**
 * One exchange on the fd socket: present a nonce (and `send`, a descriptor
 * to hand over), make the request naming it, and take the descriptor the
 * daemon sent back when `receive`.
 */
async function exchange<K extends OpName>(c: Requester, what: string, op: K, params: ParamsOf<K>, send: number | null, receive: boolean): Promise<{ result: ResultOf<K>; fd: number }> {
  const { n, path } = sys(c, what);
  const nonce = randomBytes(16);
  const sock = n.connect(path, false);
  try {
    n.sendFds(sock, Buffer.concat([MAGIC, nonce]), send === null ? [] : [send]);
    const result = await c.request(op, { ...params, nonce: nonce.toString('base64') } as ParamsOf<K>);
    if (!receive) return { result, fd: -1 };
    // the daemon sent the descriptor before it answered: it is waiting
    const msg = n.recvFds(sock, 4096);
    if (msg === null || msg.fds.length !== 1) {
      for (const fd of msg?.fds ?? []) n.close(fd);
      throw new BufferdError('EPROTO', `${what}: the daemon answered but sent no file descriptor on the fd socket`);
    }
    return { result, fd: msg.fds[0]! };
  } finally {
    n.close(sock);
  }
}

/** A buffer mapped into this process: `bytes` are the buffer's own (zero copy). */
export class Mapping {
  private windows: Mapped[];
  private done = false;

  /** @internal */
  constructor(
    private readonly c: Requester,
    private readonly n: Native,
    /** The daemon's mapping id (it holds a reference on the buffer until unmap). */
    readonly mapping: number,
    readonly size: number,
    readonly cache: CachePolicyName,
    readonly rights: RightName[],
    windows: Mapped[],
  ) {
    this.windows = windows;
  }

  /**
   * The buffer's bytes (its size, not page-rounded), for buffers up to
   * 1 GiB; larger ones are seen through window(). With a read-only mapping
   * (no 'write' right, or access 'read') a write faults the process, as in
   * C. After unmap() a view still held reads zeros and its writes go nowhere.
   */
  get bytes(): Uint8Array {
    this.live('bytes');
    if (this.windows.length !== 1) {
      throw new BufferdError('ENOTSUP', `a mapping of ${this.size} bytes is seen through window(offset, length) (views are at most ${MAX_VIEW} bytes)`);
    }
    return this.windows[0]!.bytes.subarray(0, this.size);
  }

  /** A view of [offset, offset + length) that lies within one 1 GiB window. */
  window(offset: number, length: number): Uint8Array {
    this.live('window()');
    const w = Math.floor(offset / MAX_VIEW);
    const at = offset - w * MAX_VIEW;
    if (offset < 0 || length < 0 || offset + length > this.size || at + length > MAX_VIEW) {
      throw new BufferdError('EINVAL', `window [${offset}, ${offset + length}) is outside the mapping (${this.size} bytes) or crosses a 1 GiB window`);
    }
    return this.windows[w]!.bytes.subarray(at, at + length);
  }

  private live(what: string): void {
    if (this.done) throw new BufferdError('EBADF', `${what} of mapping ${this.mapping}: it was unmapped (views taken before unmap() read zeros)`, { mapping: this.mapping });
  }

  /** Let go of the mapping here and in the daemon. */
  async unmap(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const m of this.windows) this.n.unmap(m);
    this.windows = [];
    await this.c.request('unmap', { mapping: this.mapping });
  }
}

/** Map a buffer (PROTOCOL §12: map with a nonce). */
export async function mapBuffer(c: Requester, handle: number, access?: Access): Promise<Mapping> {
  const { n } = sys(c, 'map');
  const params: ParamsOf<'map'> = { handle };
  if (access !== undefined) params.access = access;
  const { result, fd } = await exchange(c, 'map', 'map', params, null, true);
  const windows: Mapped[] = [];
  try {
    const writable = result.rights.includes('write');
    for (let off = 0; off < result.bytes; off += MAX_VIEW) windows.push(n.map(fd, off, Math.min(MAX_VIEW, result.bytes - off), writable));
  } catch (e) {
    for (const m of windows) n.unmap(m);
    await c.request('unmap', { mapping: result.mapping }).catch(() => {});
    throw e;
  } finally {
    // the mapping keeps the file
    n.close(fd);
  }
  return new Mapping(c, n, result.mapping, result.size, result.cache, result.rights, windows);
}

/** A real file descriptor for exactly this buffer's bytes (page-rounded); read-only without 'write'. */
export async function exportBufferFd(c: Requester, handle: number, access?: Access): Promise<{ fd: number } & ResultOf<'exportFd'>> {
  const params: ParamsOf<'exportFd'> = { handle } as ParamsOf<'exportFd'>;
  if (access !== undefined) params.access = access;
  const { result, fd } = await exchange(c, 'exportFd', 'exportFd', params, null, true);
  return { fd, ...result };
}

/** A handle for a buffer fd (one exportFd gave, here or in another process); rights follow its access mode. */
export async function importBufferFd(c: Requester, fd: number): Promise<HandleInfo> {
  const { result } = await exchange(c, 'importFd', 'importFd', {} as ParamsOf<'importFd'>, fd, false);
  return result;
}

/** Close a file descriptor (one exportFd returned, or received). */
export function closeFd(fd: number): void {
  native()?.close(fd);
}
