/**
 * The test helpers stop what a test started, pass or fail: a script that
 * times out goes with everything it started, and what a script leaves
 * running goes when it exits.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runNode, ROOT, tempDir } from '../helpers/daemon.js';

const SCRIPT = join(ROOT, 'test', 'fixtures', 'leaves-a-child.mjs');

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Whether pid is gone within a few seconds (it is killed by signal: no reason to wait long). */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
  return !alive(pid);
}

t.test('runNode on timeout kills the script and what it started', async (t) => {
  const file = join(tempDir(t), 'pid');
  const err = await runNode([SCRIPT, file], { timeoutMs: 5000, unhooked: true }).then(
    () => null,
    (e: unknown) => e as Error,
  );
  t.match(err?.message, /timed out after 5000 ms \(it and what it started were killed\)/);
  const pid = Number(readFileSync(file, 'utf8').trim());
  t.ok(pid > 0, 'the script had started a child');
  t.ok(await gone(pid), 'the child is killed with it');
});

t.test('runNode kills what a script left running when it exits', async (t) => {
  const file = join(tempDir(t), 'pid');
  const r = await runNode([SCRIPT, file, 'exit'], { unhooked: true });
  t.equal(r.code, 0);
  const pid = Number(readFileSync(file, 'utf8').trim());
  t.ok(pid > 0, 'the script started a child');
  t.ok(await gone(pid), 'the child it left behind is killed');
});
