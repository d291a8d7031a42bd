/**
 * npm test's pretest (test/prerequisites.sh) says in one line what to
 * install when it cannot install the programs the tests drive, and never
 * stops the run itself.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from '../helpers/daemon.js';

const SCRIPT = join(ROOT, 'test', 'prerequisites.sh');
const asRoot = process.getuid?.() === 0;

/** A PATH holding only `id`: every program the tests drive is missing, and so are sudo and apt-get. */
function bare(t: Test): string {
  const dir = tempDir(t);
  chmodSync(dir, 0o755); // nobody runs from it too
  symlinkSync(spawnSync('/bin/sh', ['-c', 'command -v id'], { encoding: 'utf8' }).stdout.trim(), join(dir, 'id'));
  return dir;
}

t.test('as another user without sudo: one line naming what to install', { skip: asRoot ? false : 'needs root to run as nobody' }, async (t) => {
  const r = spawnSync('/bin/sh', [SCRIPT], { env: { PATH: bare(t) }, uid: 65534, gid: 65534, encoding: 'utf8' });
  t.equal(r.status, 0, 'the run goes on');
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.match(r.stderr, 'tests need: systemd chromium python3 bsdutils — install them first: sudo apt-get install systemd chromium python3 bsdutils');
});

t.test('as root without apt-get: names them by their Debian names', { skip: asRoot ? false : 'needs root' }, async (t) => {
  const r = spawnSync('/bin/sh', [SCRIPT], { env: { PATH: bare(t) }, encoding: 'utf8' });
  t.equal(r.status, 0);
  t.match(r.stderr, 'install them with your package manager (Debian names: systemd chromium python3 bsdutils)');
});

t.test('with everything there it is silent', async (t) => {
  const r = spawnSync('/bin/sh', [SCRIPT], { encoding: 'utf8' });
  t.equal(r.status, 0);
  const missing = ['systemd-socket-activate', 'chromium', 'python3', 'script'].filter((p) => spawnSync('/bin/sh', ['-c', `command -v ${p}`]).status !== 0);
  if (missing.length === 0) t.equal(r.stderr, '', 'nothing to say');
  else t.match(r.stderr, 'tests need', `says what is missing: ${missing.join(' ')}`);
});
