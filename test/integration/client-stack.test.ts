/**
 * A BufferdError points at the line that made the request, not at the
 * socket's data handler that received the answer.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { client } from '../helpers/drivers.js';
import { BufferdError } from '../../client/index.js';

t.test('a daemon error carries the stack of the call that made the request', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'stacky');
  async function closeSomethingNobodyHolds(): Promise<unknown> {
    try {
      await c.close(999);
      return null;
    } catch (e) {
      return e;
    }
  }
  const e = await closeSomethingNobodyHolds();
  t.ok(e instanceof BufferdError);
  const err = e as BufferdError;
  t.equal(err.code, 'EBADF');
  t.match(err.stack, /^BufferdError \[EBADF\]: /, 'the first line names the code and the message');
  t.match(err.stack, /closeSomethingNobodyHolds/, 'the caller is in the stack');
  t.match(err.stack, /client-stack\.test/, 'the caller\'s file is in the stack');
  t.notMatch(err.stack, /onData|onMessage/, 'the socket handler is not');
  t.equal(err.details?.['handle'] ?? 999, 999, 'details survive');
});

t.test('a lost connection rejects pending calls with their callers\' stacks, and later calls too', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'lost');
  async function pingWhileTheDaemonDies(): Promise<unknown> {
    d.proc.kill('SIGSTOP'); // the ping cannot be answered: it is pending when the daemon dies
    const p = c.ping();
    d.proc.kill('SIGKILL');
    try {
      await p;
      return null;
    } catch (e) {
      return e;
    }
  }
  const e = (await pingWhileTheDaemonDies()) as BufferdError;
  t.ok(e instanceof BufferdError, 'the pending ping is rejected');
  t.equal(e.code, 'ECONNRESET');
  t.match(e.stack, /pingWhileTheDaemonDies/);
  await new Promise<void>((r) => (c.closed ? r() : c.once('close', () => r())));
  async function callAfterTheEnd(): Promise<unknown> {
    try {
      await c.ping();
      return null;
    } catch (e) {
      return e;
    }
  }
  const late = (await callAfterTheEnd()) as BufferdError;
  t.equal(late.code, 'ECONNRESET');
  t.match(late.stack, /callAfterTheEnd/);
});
