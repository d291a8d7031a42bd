/**
 * systemd socket activation: which environments mean "fd 3 is ours", and
 * how the path of an inherited Unix socket is read back from /proc.
 */
import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { socketActivation, unixSocketPathOfFd, SD_LISTEN_FDS_START } from '../../daemon/server/activation.js';
import { tempDir } from '../helpers/daemon.js';

t.test('socketActivation: LISTEN_PID is ours and LISTEN_FDS >= 1', async (t) => {
  t.equal(SD_LISTEN_FDS_START, 3);
  const env: NodeJS.ProcessEnv = { LISTEN_PID: '4242', LISTEN_FDS: '1', LISTEN_FDNAMES: 'bufferd.socket', PATH: '/bin', OTHER: 'x' };
  t.same(socketActivation(env, 4242), { fd: 3 });
  t.same(env, { PATH: '/bin', OTHER: 'x' }, 'LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES removed; the rest kept');
  // a second call finds nothing: the variables are gone
  t.equal(socketActivation(env, 4242), null);

  const two: NodeJS.ProcessEnv = { LISTEN_PID: '7', LISTEN_FDS: '2' };
  t.same(socketActivation(two, 7), { fd: 3 }, 'several fds: the first is served');
  t.notOk('LISTEN_FDS' in two);
  t.notOk('LISTEN_PID' in two);

  // without LISTEN_FDNAMES it works just as well
  const bare: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: '1' };
  t.same(socketActivation(bare), { fd: 3 }, 'pid defaults to process.pid');
  t.same(bare, {});
});

t.test('socketActivation: not for us', async (t) => {
  const cases: [string, NodeJS.ProcessEnv][] = [
    ['another pid', { LISTEN_PID: '4243', LISTEN_FDS: '1' }],
    ['zero fds', { LISTEN_PID: '4242', LISTEN_FDS: '0' }],
    ['negative fds', { LISTEN_PID: '4242', LISTEN_FDS: '-1' }],
    ['fractional fds', { LISTEN_PID: '4242', LISTEN_FDS: '1.5' }],
    ['garbage fds', { LISTEN_PID: '4242', LISTEN_FDS: 'three' }],
    ['empty fds', { LISTEN_PID: '4242', LISTEN_FDS: '' }],
    ['no LISTEN_FDS', { LISTEN_PID: '4242' }],
    ['garbage pid', { LISTEN_PID: 'me', LISTEN_FDS: '1' }],
    ['no LISTEN_PID', { LISTEN_FDS: '1' }],
    ['empty env', {}],
  ];
  for (const [name, env] of cases) t.equal(socketActivation(env, 4242), null, name);
  // the real process was not socket-activated
  t.equal(socketActivation({ ...process.env }), null, 'the test process itself');
});

/** A fake /proc: self/fd/<n> symlinks and a net/unix table. */
function fakeProc(dir: string, fds: Record<number, string>, table: string[] | null): string {
  const proc = join(dir, 'proc');
  mkdirSync(join(proc, 'self', 'fd'), { recursive: true });
  mkdirSync(join(proc, 'net'), { recursive: true });
  for (const [fd, target] of Object.entries(fds)) symlinkSync(target, join(proc, 'self', 'fd', fd));
  if (table !== null) writeFileSync(join(proc, 'net', 'unix'), ['Num       RefCount Protocol Flags    Type St Inode Path', ...table, ''].join('\n'));
  return proc;
}

const row = (inode: number, path?: string) => `00000000c241c56a: 00000002 00000000 00010000 0001 01 ${inode}${path === undefined ? '' : ` ${path}`}`;

t.test('unixSocketPathOfFd against a fake /proc', async (t) => {
  const dir = tempDir(t);
  const proc = fakeProc(
    dir,
    { 3: 'socket:[123]', 4: 'socket:[456]', 5: 'socket:[789]', 6: '/dev/null', 7: 'pipe:[123]', 8: 'socket:[999]', 9: 'socket:[321]', 10: 'socket:[12]' },
    [
      row(1123, '/not/this.sock'), // same digits, longer inode: must not match
      row(123, '/run/bufferd/bufferd.sock'),
      row(456, '@bufferd-abstract'),
      row(789), // unbound
      row(321, '/tmp/with space/b.sock'),
      row(120, '/not/this/either.sock'),
      '00000000deadbeef: 00000003 00000000 00000000 0001 03 12 /run/x.sock',
    ],
  );
  t.equal(unixSocketPathOfFd(3, proc), '/run/bufferd/bufferd.sock');
  t.equal(unixSocketPathOfFd(4, proc), '@bufferd-abstract', 'abstract socket');
  t.equal(unixSocketPathOfFd(5, proc), null, 'unbound socket: no path column');
  t.equal(unixSocketPathOfFd(6, proc), null, 'not a socket');
  t.equal(unixSocketPathOfFd(7, proc), null, 'a pipe with the same inode number');
  t.equal(unixSocketPathOfFd(8, proc), null, 'a socket not in the table (e.g. TCP)');
  t.equal(unixSocketPathOfFd(9, proc), '/tmp/with space/b.sock', 'a path with a space');
  t.equal(unixSocketPathOfFd(10, proc), '/run/x.sock', 'a connected socket row');
  t.equal(unixSocketPathOfFd(11, proc), null, 'no such fd');
  t.equal(unixSocketPathOfFd(3, join(dir, 'nowhere')), null, 'no /proc at all');
});

t.test('unixSocketPathOfFd: missing net/unix, empty table', async (t) => {
  const dir = tempDir(t);
  const noTable = fakeProc(join(dir, 'a'), { 3: 'socket:[123]' }, null);
  t.equal(unixSocketPathOfFd(3, noTable), null, 'net/unix unreadable');
  const empty = fakeProc(join(dir, 'b'), { 3: 'socket:[123]' }, []);
  t.equal(unixSocketPathOfFd(3, empty), null, 'header only');
  const c = join(dir, 'c');
  mkdirSync(join(c, 'net'), { recursive: true });
  writeFileSync(join(c, 'net', 'unix'), `header\n${row(123, '/x.sock')}\n`);
  t.equal(unixSocketPathOfFd(3, c), null, 'no self/fd directory');
});

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(path, () => resolve(s));
  });
}

function fdOf(s: Server): number {
  const fd = (s as unknown as { _handle: { fd: number } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no fd on the server handle');
  return fd;
}

t.test('unixSocketPathOfFd on a real listening socket and the real /proc', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'real.sock');
  const s = await listen(path);
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  const fd = fdOf(s);
  t.equal(unixSocketPathOfFd(fd), path);
  t.equal(unixSocketPathOfFd(fd, '/proc'), path);
  // a second socket gets its own answer
  const other = join(dir, 'other.sock');
  const s2 = await listen(other);
  t.teardown(() => new Promise<void>((r) => s2.close(() => r())));
  t.equal(unixSocketPathOfFd(fdOf(s2)), other);
  t.equal(unixSocketPathOfFd(0), null, 'stdin is not a bound Unix socket');
});

t.test('unixSocketPathOfFd keeps a path with repeated spaces intact', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'two  spaces.sock');
  const s = await listen(path);
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  t.equal(unixSocketPathOfFd(fdOf(s)), path);
});
