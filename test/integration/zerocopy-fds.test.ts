/**
 * A buffer's file descriptor in a program that knows nothing of bufferd:
 * exportFd hands the test process a real fd, which crosses a socketpair
 * (SCM_RIGHTS) into a Python process (test/fixtures/map_fd.py, stdlib
 * only) that maps it, checks the bytes and writes back; the test process's
 * own mapping and the daemon's `read` see the write. A read-only fd
 * (access 'read', or a handle without 'write') refuses a writable mmap.
 * Isolation: the fd holds exactly its buffer (fstat size = `bytes`, nothing
 * past it maps, every byte is this buffer's, never a neighbour's); a slab
 * buffer is refused naming `align: 4096`, and one allocated so maps fine.
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, sha256, rejection } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { python, touchFd, noPython, sys, spawnMapper, patternSha, KiB, MiB, PAGE, type PyResult } from '../helpers/zerocopy.js';
import { closeFd, type BufferClient, type HandleInfo } from '../../client/index.js';

const d = await startDaemon(t, { logLevel: 'info' });

/** exportFd, the fd closed at teardown. */
async function exported(t: Test, c: BufferClient, handle: number, access?: 'read' | 'readwrite') {
  const e = await c.exportFd(handle, access === undefined ? {} : { access });
  t.teardown(() => closeFd(e.fd));
  return e;
}

/** A result line of the Python run, by op and position among that op's lines. */
const res = (results: PyResult[], op: string, nth = 0) => results.filter((r) => r.op === op)[nth];

t.test('exportFd → Python over a socketpair: it maps the fd, verifies the bytes, writes back; Node sees the write', { skip: noPython }, async (t) => {
  const SIZE = 3 * MiB + 100;
  const BYTES = 3 * MiB + PAGE;
  const c = await client(t, d.socket, 'exporter');
  const h = await c.alloc({ pool: 'default', size: SIZE });
  await c.write(h.handle, 0, pattern(SIZE, 40));
  const m = await c.map(h.handle);
  t.teardown(() => m.unmap());
  const e = await exported(t, c, h.handle);
  t.same({ ...e, fd: 0 }, { fd: 0, buffer: h.buffer, size: SIZE, bytes: BYTES, rights: ['read', 'write', 'share'], readOnly: false });
  t.match(sys().stat(e.fd), { size: BYTES }, 'fstat in the test process: the page-rounded size');

  const W = { offset: 5000, length: 256 * KiB, seed: 41 };
  const py = await python(e.fd, [
    { op: 'stat' },
    { op: 'digest', offset: 0, length: SIZE },
    { op: 'digest', offset: SIZE, length: BYTES - SIZE },
    { op: 'write', ...W },
  ]);
  t.same([py.code, py.done, py.stderr], [0, true, ''], 'the Python process ran every op and exited 0');
  t.match(res(py.results, 'stat'), { ok: true, size: BYTES, access: 'readwrite' });
  t.match(res(py.results, 'digest', 0), { ok: true, length: SIZE, sha256: patternSha(SIZE, 40) }, "Python's mmap holds the buffer's bytes");
  t.match(res(py.results, 'digest', 1), { ok: true, length: BYTES - SIZE, nonZero: 0 }, 'the page-rounding tail reads as zeros');
  t.match(res(py.results, 'write'), { ok: true, written: W.length });

  const want = pattern(SIZE, 40);
  pattern(W.length, W.seed, W.offset).copy(want, W.offset);
  t.equal(sha256(m.bytes), sha256(want), "the test process's mapping shows Python's write (and nothing else changed)");
  t.equal(sha256(await c.read(h.handle, 0, SIZE)), sha256(want), "the daemon's read returns it too");
  t.equal(Buffer.compare(Buffer.from(m.bytes.subarray(W.offset - 1, W.offset + 1)), Buffer.from([want[W.offset - 1]!, pattern(1, W.seed, W.offset)[0]!])), 0, 'the write starts exactly at its offset');
});

t.test('a read-only fd: a writable mmap fails in Python (PermissionError), a read-only one works', { skip: noPython }, async (t) => {
  const SIZE = 64 * KiB;
  const c = await client(t, d.socket, 'ro-owner');
  const other = await client(t, d.socket, 'ro-holder');
  const h = await c.alloc({ pool: 'default', size: SIZE });
  await c.write(h.handle, 0, pattern(SIZE, 42));
  // the same buffer through a handle without 'write'
  const got = new Promise<{ handle: number }>((resolve) => other.once('handle', resolve));
  await c.send(h.handle, 'ro-holder', { rights: ['read', 'share'] });
  const roh = (await got).handle;
  const e = await rejection(other.exportFd(roh, { access: 'readwrite' }));
  t.equal(e.code, 'EPERM', "exportFd asking to write through a handle without 'write': EPERM");
  t.match(e.details, { handle: roh, missing: 'write' });

  const fds = [
    { label: "access 'read' on a handle with every right", e: await exported(t, c, h.handle, 'read') },
    { label: "a handle without 'write', default access", e: await exported(t, other, roh) },
  ];
  for (const { label, e } of fds) {
    t.same({ ...e, fd: 0 }, { fd: 0, buffer: h.buffer, size: SIZE, bytes: SIZE, rights: ['read', 'share'], readOnly: true }, `${label}: a read-only fd`);
    t.equal(sys().accessMode(e.fd), 'read', `${label}: opened O_RDONLY`);
    const py = await python(e.fd, [
      { op: 'stat' },
      { op: 'mmap', prot: 'readwrite' },
      { op: 'write', offset: 0, length: 16, seed: 43 },
      { op: 'mmap', prot: 'read' },
      { op: 'digest', offset: 0, length: SIZE },
    ]);
    t.same([py.code, py.done], [0, true], `${label}: Python ran every op`);
    t.match(res(py.results, 'stat'), { ok: true, access: 'read', size: SIZE });
    t.match(res(py.results, 'mmap', 0), { ok: false, error: 'PermissionError', errno: 13 }, `${label}: a writable MAP_SHARED mmap is refused (EACCES)`);
    t.match(res(py.results, 'write'), { ok: false, error: 'PermissionError' }, `${label}: so is writing through it`);
    t.match(res(py.results, 'mmap', 1), { ok: true, mapped: SIZE }, `${label}: a read-only mmap works`);
    t.match(res(py.results, 'digest'), { ok: true, sha256: patternSha(SIZE, 42) }, `${label}: and reads the buffer`);
  }
  t.equal(sha256(await c.read(h.handle, 0, SIZE)), patternSha(SIZE, 42), 'the buffer is unchanged');

  // importFd: the rights follow the descriptor's access mode
  const imp = await other.importFd(fds[0]!.e.fd);
  t.match(imp, { buffer: h.buffer, rights: ['read', 'share'] }, "importFd of a read-only fd: a handle without 'write'");
  const rw = await exported(t, c, h.handle);
  t.match(await other.importFd(rw.fd), { buffer: h.buffer, rights: ['read', 'write', 'share'] }, 'importFd of a read-write fd: read, write, share');
});

/** Root can run the receiver as another user: the case the kernel's file permissions are for. */
const asRoot = process.getuid?.() === 0;
const NOBODY = { uid: 65534, gid: 65534 };

t.test("a read-only fd in another user's process cannot be reopened read-write through /proc/self/fd", { skip: noPython || (asRoot ? false : 'needs root to run the receiver as another user') }, async (t) => {
  const SIZE = 8 * KiB;
  const c = await client(t, d.socket, 'reopen');
  const h = await c.alloc({ pool: 'default', size: SIZE, align: PAGE });
  await c.write(h.handle, 0, pattern(SIZE, 44));
  const e = await exported(t, c, h.handle, 'read');
  const py = await python(e.fd, [{ op: 'digest', offset: 0, length: SIZE }, { op: 'mmap', prot: 'readwrite' }, { op: 'reopen', write: [1, 2, 3] }], NOBODY);
  t.same([py.code, py.done], [0, true], `Python ran as uid ${NOBODY.uid}: ${py.stderr}`);
  t.match(res(py.results, 'digest'), { ok: true, sha256: patternSha(SIZE, 44) }, 'it reads the buffer through the fd it was given');
  t.match(res(py.results, 'mmap'), { ok: false, error: 'PermissionError' }, 'a writable mmap of it is refused');
  t.match(res(py.results, 'reopen'), { ok: false, error: 'PermissionError' }, 'open("/proc/self/fd/N", O_RDWR) is refused: the memfd is mode 0600, owned by the daemon\'s user');
  t.equal(sha256(await c.read(h.handle, 0, SIZE)), patternSha(SIZE, 44), 'the buffer is unchanged');
});

t.test("exportFd needs 'share' (an fd can be passed on by anyone who holds it); importFd gives read, write as the fd allows, and share", async (t) => {
  const c = await client(t, d.socket, 'share-owner');
  const other = await client(t, d.socket, 'share-less');
  const h = await c.alloc({ pool: 'default', size: PAGE, align: PAGE });
  const got = new Promise<{ handle: number }>((resolve) => other.once('handle', resolve));
  await c.send(h.handle, 'share-less', { rights: ['read'] });
  const roh = (await got).handle;
  t.match(await rejection(other.send(roh, 'share-owner')), { code: 'EPERM' }, "without 'share' it cannot send the handle");
  t.match(await rejection(other.exportFd(roh)), { code: 'EPERM', details: { handle: roh, missing: 'share' }, message: /share/ }, "nor take an fd for it: exportFd without 'share' is EPERM");
  const m = await other.map(roh);
  t.same(m.rights, ['read'], 'mapping needs no share: the mapping is read-only');
  await m.unmap();
  const ok = await c.alloc({ pool: 'default', size: PAGE, align: PAGE });
  const got2 = new Promise<{ handle: number }>((resolve) => other.once('handle', resolve));
  await c.send(ok.handle, 'share-less', { rights: ['read', 'share'] });
  const e = await other.exportFd((await got2).handle);
  t.teardown(() => closeFd(e.fd));
  t.same([e.readOnly, e.rights], [true, ['read', 'share']], "with ['read', 'share']: a read-only fd");
  t.same((await c.importFd(e.fd)).rights, ['read', 'share'], 'imported: no wider than the handle it came from');
});

t.test('the fd socket: a nonce presented by another process is EPERM, an unknown one ENOENT', async (t) => {
  const c = await client(t, d.socket, 'nonce-owner');
  const p = await spawnMapper(t, d.socket, 'nonce-thief');
  const h = await p.call<HandleInfo>('alloc', { pool: 'default', size: PAGE, align: PAGE });
  const fdSocket = c.session.fdSocket!;
  t.not(p.ready['pid'], process.pid, 'two processes');
  // the test process presents a nonce; the other process names it
  const nonce = randomBytes(16);
  const sock = sys().connect(fdSocket, true);
  t.teardown(() => sys().close(sock));
  sys().sendFds(sock, Buffer.concat([Buffer.from('BFD1'), nonce]), []);
  const e = await rejection(p.call('request', 'exportFd', { handle: h.handle, nonce: nonce.toString('base64') }));
  t.equal(e.code, 'EPERM', 'exportFd naming a nonce presented from another process: EPERM');
  t.match(e.message, new RegExp(`process ${process.pid}, not to this client's process ${p.ready['pid']}`), 'naming both processes');
  t.equal(sys().recvFds(sock, 4096)?.fds.length ?? 0, 0, 'no descriptor was sent to the presenting process');
  const e2 = await rejection(p.call('request', 'map', { handle: h.handle, nonce: randomBytes(16).toString('base64') }));
  t.equal(e2.code, 'ENOENT', 'a nonce nobody presented: ENOENT');
  t.match(await p.call('info', h.handle), { refs: { mappings: 0 } }, 'the refused map holds nothing');
});

t.test('isolation: the fd holds exactly its buffer, never a neighbour\'s bytes', { skip: noPython }, async (t) => {
  const c = await client(t, d.socket, 'neighbours');
  // five 64 KiB buffers in a row; the middle one (2) is 1000 bytes short of its 64 KiB extent
  const sizes = [64 * KiB, 64 * KiB, 64 * KiB - 1000, 64 * KiB, 64 * KiB];
  const hs = [];
  for (const size of sizes) hs.push(await c.alloc({ pool: 'default', size }));
  for (let i = 1; i < hs.length; i++) {
    t.equal(hs[i]!.segments[0]!.addr, hs[i - 1]!.segments[0]!.addr + hs[i - 1]!.usize, `buffer ${i} starts where buffer ${i - 1}'s extent ends (physical neighbours)`);
  }
  const mid = hs[2]!;
  const SIZE = sizes[2]!;
  for (const [i, h] of hs.entries()) await c.write(h.handle, 0, pattern(sizes[i]!, 50 + i));
  const e = await exported(t, c, mid.handle);
  t.equal(e.bytes, 64 * KiB, 'bytes: the size rounded up to whole pages');
  t.equal(sys().stat(e.fd).size, e.bytes, 'fstat size = bytes');
  // the neighbours change after the export: still not in the fd
  for (const i of [0, 1, 3, 4]) await c.write(hs[i]!.handle, 0, pattern(sizes[i]!, 60 + i));

  const py = await python(e.fd, [
    { op: 'stat' },
    { op: 'scan', seed: 52, size: SIZE },
    { op: 'mmap', prot: 'read', length: e.bytes + PAGE },
    { op: 'mmap', prot: 'read', length: PAGE, offset: e.bytes },
    { op: 'pread', offset: e.bytes, length: PAGE },
    { op: 'write', offset: 0, length: e.bytes, seed: 59 },
  ]);
  t.same([py.code, py.done], [0, true], 'Python ran every op');
  t.match(res(py.results, 'stat'), { ok: true, size: e.bytes });
  t.match(res(py.results, 'scan'), { ok: true, total: e.bytes, mismatches: 0, firstMismatch: -1, tailNonZero: 0 }, "every byte up to EOF: the buffer's pattern, then zeros to the page end");
  t.match(res(py.results, 'mmap', 0), { ok: false, error: 'ValueError' }, 'mapping more than the file is refused');
  t.match(res(py.results, 'mmap', 1), { ok: false, error: 'ValueError' }, 'mapping at its end is refused');
  t.match(res(py.results, 'pread'), { ok: true, got: 0 }, 'reading at its end: EOF');
  t.match(res(py.results, 'write'), { ok: true, written: e.bytes }, 'Python writes every byte of the fd');

  // the kernel's view: past the file is SIGBUS, its last byte is there
  const past = await touchFd(e.fd, e.bytes + PAGE, e.bytes);
  t.same([past.stdout, past.signal], ['mapped\n', 'SIGBUS'], 'a native mmap past the file maps, and touching past its end faults (SIGBUS)');
  const last = await touchFd(e.fd, e.bytes, e.bytes - 1);
  t.same([last.stdout, last.code], [`mapped\n${pattern(1, 59, e.bytes - 1)[0]}\n`, 0], 'its last byte reads (control)');

  t.equal(sha256(await c.read(mid.handle, 0, SIZE)), patternSha(SIZE, 59), "the exported buffer holds Python's bytes");
  for (const i of [0, 1, 3, 4]) t.equal(sha256(await c.read(hs[i]!.handle, 0, sizes[i]!)), patternSha(sizes[i]!, 60 + i), `neighbour ${i} is untouched`);
});

t.test('a slab buffer is refused naming align: 4096; allocated with align 4096 it maps', async (t) => {
  const c = await client(t, d.socket, 'small');
  const slab = await c.alloc({ pool: 'default', size: 100 });
  t.equal(slab.kind, 'small');
  for (const [what, p] of [['exportFd', () => c.exportFd(slab.handle)], ['map', () => c.map(slab.handle)]] as const) {
    const e = await rejection(p());
    t.equal(e.code, 'EINVAL', `${what} of a slab buffer: EINVAL`);
    t.match(e.message, /align: 4096/, `${what}: the message names align: 4096`);
    t.match(e.details, { buffer: slab.buffer, kind: 'small' });
  }
  t.match(await c.info(slab.handle), { refs: { handles: 1, mappings: 0 } }, 'the refused map holds nothing');

  const h = await c.alloc({ pool: 'default', size: 100, align: PAGE });
  t.match(h, { kind: 'small', usize: PAGE });
  const m = await c.map(h.handle);
  t.teardown(() => m.unmap());
  t.same([m.size, m.bytes.length, m.rights], [100, 100, ['read', 'write']], 'the mapping is the buffer: 100 bytes');
  m.bytes.set(pattern(100, 70));
  t.same(await c.read(h.handle, 0, 100), pattern(100, 70), 'stores through it are the bytes the daemon reads');
  const e = await exported(t, c, h.handle);
  t.same([e.size, e.bytes, sys().stat(e.fd).size], [100, PAGE, PAGE], 'its fd: one page');
  await c.write(slab.handle, 0, pattern(100, 71));
  const view = sys().map(e.fd, 0, PAGE, false);
  t.equal(Buffer.compare(Buffer.from(view.bytes.subarray(0, 100)), pattern(100, 70)), 0, 'the fd holds the buffer');
  t.equal(Buffer.from(view.bytes.subarray(100)).filter((x) => x !== 0).length, 0, 'and zeros to its page end');
  sys().unmap(view);
});

t.test('a read-write fd cannot resize the buffer: the memfd is sealed, so no holder can fault the daemon (SIGBUS) by truncating it', async (t) => {
  const SIZE = 64 * KiB;
  const c = await client(t, d.socket, 'truncator');
  const h = await c.alloc({ pool: 'default', size: SIZE });
  await c.write(h.handle, 0, pattern(SIZE, 61));
  const e = await exported(t, c, h.handle);
  t.equal(e.readOnly, false);
  for (const size of [0, 4096, SIZE * 2]) {
    t.throws(() => sys().truncate(e.fd, size), { code: 'EPERM' }, `ftruncate to ${size} is EPERM`);
  }
  t.equal(sys().stat(e.fd).size, SIZE, 'the file keeps its size');
  t.equal(sha256(await c.read(h.handle, 0, SIZE)), patternSha(SIZE, 61), 'the daemon still reads the whole buffer');
  t.ok(await c.ping(), 'and answers');
});
