/**
 * The system calls Node lacks, through koffi (an FFI whose npm package ships
 * prebuilt binaries: no C compiler at install): memfd_create, ftruncate,
 * mmap/munmap, fallocate(PUNCH_HOLE), fchmod, fstat, fcntl, Unix sockets
 * that only this code reads (sendmsg/recvmsg with SCM_RIGHTS), SO_PEERCRED
 * and a datagram sendto (sd_notify). Linux x64/arm64.
 *
 * Where koffi or libc cannot load — or BUFFERD_NO_NATIVE=1 — native() is
 * null and nativeReason() says why; callers fall back (the page store keeps
 * its bytes in JavaScript memory) or answer ENOTSUP.
 *
 * Rules kept here: a view (koffi.view) is never longer than MAX_VIEW (a view
 * over 4 GiB aborts the process); a mapping is unmapped only when no view
 * of it is used again; sockets handed to recvmsg are never read by libuv.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

/** The longest view made of mapped memory. */
export const MAX_VIEW = 1 << 30;
const PAGE = 4096;

export class NativeError extends Error {
  override name = 'NativeError';
  constructor(
    readonly call: string,
    readonly code: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${call}: ${code} (${detail})`);
  }
}

/** A region of a file mapped into this process; `bytes` views it (≤ MAX_VIEW). */
export interface Mapped {
  readonly addr: bigint;
  readonly length: number;
  readonly bytes: Uint8Array;
}

export interface Cred {
  pid: number;
  uid: number;
  gid: number;
}

export interface Native {
  /**
   * A new anonymous shared-memory file of `size` bytes (sparse),
   * close-on-exec, sealed against shrinking and growing: whoever holds a
   * descriptor for it may write it but never truncate it under another
   * process's mapping (which would fault that process with SIGBUS).
   */
  memfd(name: string, size: number): number;
  truncate(fd: number, size: number): void;
  /** Map [offset, offset + length) of a file, shared; length ≤ MAX_VIEW. */
  map(fd: number, offset: number, length: number, writable: boolean): Mapped;
  /**
   * Unmap, safely: the range becomes private zero pages at once (the file's
   * pages are let go; a view still held reads zeros instead of faulting) and
   * is given back to the system when the last view of it is collected.
   */
  unmap(m: Mapped): void;
  /** Give back the host memory of [offset, offset + length); it reads as zeros. */
  punch(fd: number, offset: number, length: number): void;
  chmod(fd: number, mode: number): void;
  /** A new open file description of the same file, read-only or read-write. */
  reopen(fd: number, readOnly: boolean): number;
  stat(fd: number): { dev: bigint; ino: bigint; size: number; mode: number };
  accessMode(fd: number): 'read' | 'write' | 'readwrite';
  close(fd: number): void;
  /** A Unix stream socket connected to `path` ('@name' is abstract), close-on-exec, non-blocking when asked. */
  connect(path: string, nonBlocking: boolean): number;
  /** A listening Unix stream socket at `path`, non-blocking, close-on-exec. */
  listen(path: string, backlog: number): number;
  /** A pending connection, or -1 when none is waiting. */
  accept(fd: number): number;
  /** Send bytes and file descriptors in one message. */
  sendFds(sock: number, data: Uint8Array, fds: number[]): void;
  /** Receive one message (null when none is waiting and the socket is non-blocking, or `dontWait`). */
  recvFds(sock: number, maxData: number, dontWait?: boolean): { data: Buffer; fds: number[] } | null;
  peerCred(sock: number): Cred;
  /** One datagram to a Unix datagram socket ('@name' is abstract). */
  sendDatagram(path: string, data: Uint8Array): void;
  socketpair(): [number, number];
}

const EAGAIN = 11;

function load(): Native {
  if (process.platform !== 'linux') throw new Error(`${process.platform} is not Linux`);
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof import('koffi');
  const libc = koffi.load('libc.so.6');
  const f = (decl: string) => libc.func(decl);
  const memfd_create = f('int memfd_create(const char *name, unsigned int flags)');
  const ftruncate = f('int ftruncate(int fd, int64_t length)');
  const mmap = f('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
  const munmapAt = f('int munmap(uintptr_t addr, size_t length)');
  const remap = f('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
  // the address space of a retired mapping goes back once no view of it is left
  const finalizer = new FinalizationRegistry<{ addr: bigint; length: number }>((r) => munmapAt(r.addr, r.length));
  const fallocate = f('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
  const fchmod = f('int fchmod(int fd, uint32_t mode)');
  const open = f('int open(const char *path, int flags, int mode)');
  const fstat = f('int fstat(int fd, void *st)');
  const fcntl = f('int fcntl(int fd, int cmd, int arg)');
  const close = f('int close(int fd)');
  const socket = f('int socket(int domain, int type, int protocol)');
  const connect = f('int connect(int fd, void *addr, uint32_t len)');
  const bind = f('int bind(int fd, void *addr, uint32_t len)');
  const listen = f('int listen(int fd, int backlog)');
  const accept4 = f('int accept4(int fd, void *addr, void *len, int flags)');
  const sendmsg = f('intptr_t sendmsg(int fd, void *msg, int flags)');
  const recvmsg = f('intptr_t recvmsg(int fd, void *msg, int flags)');
  const sendto = f('intptr_t sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t alen)');
  const getsockopt = f('int getsockopt(int fd, int level, int name, void *val, void *len)');
  const socketpair = f('int socketpair(int domain, int type, int protocol, _Out_ int *sv)');
  const strerror = f('const char *strerror(int errnum)');
  const names = new Map(Object.entries(koffi.os.errno).map(([k, v]) => [v, k]));
  const fail = (call: string): never => {
    const e = koffi.errno();
    throw new NativeError(call, names.get(e) ?? `errno ${e}`, e, String(strerror(e)));
  };
  const check = (r: number | bigint, call: string): number => {
    if (Number(r) < 0) fail(call);
    return Number(r);
  };
  const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
  const SOCK_STREAM = 1;
  const SOCK_DGRAM = 2;
  const SOCK_NONBLOCK = 0o4000;
  const SOCK_CLOEXEC = 0o2000000;
  const AF_UNIX = 1;

  // scratch memory for message headers: native, so its addresses can go into struct msghdr
  const SCRATCH = 64 * 1024;
  const scratch = koffi.alloc('uint8_t', SCRATCH);
  const base = koffi.address(scratch);
  const mem = Buffer.from(koffi.view(scratch, SCRATCH));
  const HDR = 0; // struct msghdr (56 bytes)
  const IOV = 64; // struct iovec (16 bytes)
  const CTL = 128; // control messages (up to 64 fds)
  const CTL_MAX = 16 + 4 * 64;
  const DATA = 512;
  const at = (off: number) => base + BigInt(off);
  const msg = (dataLen: number, ctlLen: number) => {
    mem.fill(0, HDR, IOV + 16);
    mem.writeBigUInt64LE(at(IOV), HDR + 16); // msg_iov
    mem.writeBigUInt64LE(1n, HDR + 24); // msg_iovlen
    mem.writeBigUInt64LE(ctlLen > 0 ? at(CTL) : 0n, HDR + 32); // msg_control
    mem.writeBigUInt64LE(BigInt(ctlLen), HDR + 40); // msg_controllen
    mem.writeBigUInt64LE(at(DATA), IOV); // iov_base
    mem.writeBigUInt64LE(BigInt(dataLen), IOV + 8); // iov_len
  };
  const sockaddr = (path: string): Buffer => {
    const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path);
    if (name.length >= 108) throw new NativeError('sockaddr_un', 'ENAMETOOLONG', 36, `${path} is longer than 107 bytes`);
    const a = Buffer.alloc(2 + name.length + (path.startsWith('@') ? 0 : 1));
    a.writeUInt16LE(AF_UNIX, 0);
    name.copy(a, 2);
    return a;
  };
  const stat = (fd: number) => {
    const st = Buffer.alloc(144);
    check(fstat(fd, st), 'fstat');
    return { dev: st.readBigUInt64LE(0), ino: st.readBigUInt64LE(8), mode: st.readUInt32LE(24), size: Number(st.readBigInt64LE(48)) };
  };

  return {
    memfd(name, size) {
      const fd = check(memfd_create(name, 1 | 2 /* MFD_CLOEXEC | MFD_ALLOW_SEALING */), 'memfd_create');
      // F_ADD_SEALS: F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL (writes and hole punching stay allowed)
      if (ftruncate(fd, size) < 0 || fcntl(fd, 1033 /* F_ADD_SEALS */, 0x0002 | 0x0004 | 0x0001) < 0) {
        const e = koffi.errno();
        close(fd);
        koffi.errno(e);
        fail('memfd sealing');
      }
      return fd;
    },
    truncate(fd, size) {
      check(ftruncate(fd, size), 'ftruncate');
    },
    map(fd, offset, length, writable) {
      if (length <= 0 || length > MAX_VIEW) throw new RangeError(`a mapping is 1 byte to ${MAX_VIEW} bytes (got ${length})`);
      const ptr = mmap(null, length, writable ? 3 : 1, 1 /* MAP_SHARED */, fd, offset);
      const addr = koffi.address(ptr);
      if (ptr === null || addr === MAP_FAILED) fail('mmap');
      return { addr, length, bytes: new Uint8Array(koffi.view(ptr, length)) };
    },
    unmap(m) {
      // MAP_FIXED over the same range: the view (a pointer to it) now sees anonymous zero pages
      const ptr = remap(m.bytes, m.length, 3, 0x02 | 0x20 | 0x10 | 0x4000 /* PRIVATE|ANONYMOUS|FIXED|NORESERVE */, -1, 0);
      if (ptr === null || koffi.address(ptr) === MAP_FAILED) fail('mmap(MAP_FIXED)');
      finalizer.register(m.bytes.buffer, { addr: m.addr, length: m.length });
    },
    punch(fd, offset, length) {
      if (length <= 0) return;
      check(fallocate(fd, 3 /* PUNCH_HOLE | KEEP_SIZE */, offset, length), 'fallocate');
    },
    chmod(fd, mode) {
      check(fchmod(fd, mode), 'fchmod');
    },
    reopen(fd, readOnly) {
      return check(open(`/proc/self/fd/${fd}`, (readOnly ? 0 : 2) | 0o2000000, 0), 'open');
    },
    stat,
    accessMode(fd) {
      const fl = check(fcntl(fd, 3 /* F_GETFL */, 0), 'fcntl') & 3;
      return fl === 0 ? 'read' : fl === 1 ? 'write' : 'readwrite';
    },
    close(fd) {
      close(fd);
    },
    connect(path, nonBlocking) {
      const s = check(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0), 0), 'socket');
      const a = sockaddr(path);
      if (connect(s, a, a.length) < 0) {
        const e = koffi.errno();
        close(s);
        koffi.errno(e);
        fail('connect');
      }
      return s;
    },
    listen(path, backlog) {
      const s = check(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), 'socket');
      const a = sockaddr(path);
      if (bind(s, a, a.length) < 0 || listen(s, backlog) < 0) {
        const e = koffi.errno();
        close(s);
        koffi.errno(e);
        fail('bind/listen');
      }
      return s;
    },
    accept(fd) {
      const c = accept4(fd, null, null, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) {
        if (koffi.errno() === EAGAIN) return -1;
        fail('accept4');
      }
      return c;
    },
    sendFds(sock, data, fds) {
      if (data.length > SCRATCH - DATA) throw new RangeError('message too long');
      if (fds.length > 64) throw new RangeError('at most 64 file descriptors per message');
      mem.set(data, DATA);
      const ctlLen = fds.length === 0 ? 0 : 16 + 4 * fds.length;
      msg(data.length, ctlLen === 0 ? 0 : (ctlLen + 7) & ~7);
      if (ctlLen > 0) {
        mem.fill(0, CTL, CTL + ((ctlLen + 7) & ~7));
        mem.writeBigUInt64LE(BigInt(ctlLen), CTL); // cmsg_len
        mem.writeInt32LE(1, CTL + 8); // SOL_SOCKET
        mem.writeInt32LE(1, CTL + 12); // SCM_RIGHTS
        fds.forEach((x, i) => mem.writeInt32LE(x, CTL + 16 + 4 * i));
      }
      const n = check(sendmsg(sock, scratch, 0x4000 /* MSG_NOSIGNAL */), 'sendmsg');
      if (n !== data.length) throw new NativeError('sendmsg', 'EAGAIN', EAGAIN, `sent ${n} of ${data.length} bytes`);
    },
    recvFds(sock, maxData, dontWait = false) {
      const len = Math.min(maxData, SCRATCH - DATA);
      msg(len, CTL_MAX);
      const n = recvmsg(sock, scratch, 0x40000000 /* MSG_CMSG_CLOEXEC */ | (dontWait ? 0x40 /* MSG_DONTWAIT */ : 0));
      if (n < 0) {
        if (koffi.errno() === EAGAIN) return null;
        fail('recvmsg');
      }
      const fds: number[] = [];
      const ctlLen = Number(mem.readBigUInt64LE(HDR + 40));
      // walk the control messages: SCM_RIGHTS ones carry descriptors (others are not asked for)
      for (let off = 0; off + 16 <= ctlLen; ) {
        const cl = Number(mem.readBigUInt64LE(CTL + off));
        if (cl < 16 || off + cl > ctlLen) break;
        if (mem.readInt32LE(CTL + off + 8) === 1 && mem.readInt32LE(CTL + off + 12) === 1) {
          for (let p = 16; p + 4 <= cl; p += 4) fds.push(mem.readInt32LE(CTL + off + p));
        }
        off += (cl + 7) & ~7;
      }
      return { data: Buffer.from(mem.subarray(DATA, DATA + Number(n))), fds };
    },
    peerCred(sock) {
      const cred = Buffer.alloc(12);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(12);
      check(getsockopt(sock, 1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, cred, len), 'getsockopt');
      return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
    },
    sendDatagram(path, data) {
      const s = check(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), 'socket');
      try {
        const a = sockaddr(path);
        check(sendto(s, Buffer.from(data), data.length, 0x4000, a, a.length), 'sendto');
      } finally {
        close(s);
      }
    },
    socketpair() {
      const sv = [0, 0];
      check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 'socketpair');
      return [sv[0]!, sv[1]!];
    },
  };
}

let loaded: Native | null | undefined;
let reason = '';

/** The system calls, or null when they are not available here (nativeReason says why). */
export function native(): Native | null {
  if (loaded !== undefined) return loaded;
  if (process.env['BUFFERD_NO_NATIVE'] === '1') {
    reason = 'native system calls are switched off (BUFFERD_NO_NATIVE=1)';
    return (loaded = null);
  }
  try {
    loaded = load();
  } catch (e) {
    reason = `koffi could not load libc: ${(e as Error).message}`;
    loaded = null;
  }
  return loaded;
}

export function nativeReason(): string {
  native();
  return reason;
}

/** Round up to whole 4 KiB pages. */
export const pageRound = (n: number): number => Math.ceil(n / PAGE) * PAGE;

/** The process at the other end of a connected Unix socket (SO_PEERCRED), or null. */
export function peerOf(socket: Socket): Cred | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const sys = native();
  if (sys === null || typeof fd !== 'number' || fd < 0) return null;
  try {
    return sys.peerCred(fd);
  } catch {
    return null;
  }
}
