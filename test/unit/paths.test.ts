import t from 'tap';
import { resolveSocketPath, cookiePathFor } from '../../protocol/paths.js';

t.test('socket path resolution order', async (t) => {
  t.equal(resolveSocketPath('/x.sock', { BUFFERD_SOCKET: '/y.sock' }, 5), '/x.sock');
  t.equal(resolveSocketPath(undefined, { BUFFERD_SOCKET: '/y.sock', XDG_RUNTIME_DIR: '/run/user/5' }, 5), '/y.sock');
  t.equal(resolveSocketPath(undefined, { XDG_RUNTIME_DIR: '/run/user/5' }, 5), '/run/user/5/bufferd.sock');
  t.equal(resolveSocketPath(undefined, {}, 5), '/tmp/bufferd-5.sock');
  t.equal(resolveSocketPath('', { BUFFERD_SOCKET: '', XDG_RUNTIME_DIR: '' }, 7), '/tmp/bufferd-7.sock');
  t.type(resolveSocketPath(), 'string');
  t.equal(cookiePathFor('/run/user/5/bufferd.sock'), '/run/user/5/.bufferd.sock.cookie');
});
