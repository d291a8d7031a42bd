/**
 * PROTOCOL.md promises it is enough to write a client in any language.
 * test/conformance/ holds one in standard-library Python written from the
 * document alone (bufferd_client.py) and a suite of cases checking the
 * daemon against the document (cases.py). Run it against the real daemon
 * (no --config: the embedded default machine); it takes about 15 s, most of
 * it waiting for the hello deadline (helloTimeoutMs, 10 s). Its last case
 * stops the daemon with SIGTERM (cases.py --allow-shutdown).
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { startDaemon, ROOT } from '../helpers/daemon.js';

const CASES = join(ROOT, 'test', 'conformance', 'cases.py');
const probe = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const noPython = probe.error !== undefined || probe.status !== 0 ? 'python3 is not installed' : false;

function runPython(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('python3', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`cases.py timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('an independent Python client written from PROTOCOL.md passes the conformance cases', { skip: noPython }, async (t) => {
  const d = await startDaemon(t, { logLevel: 'info' });
  const r = await runPython([CASES, d.socket, '--allow-shutdown'], 90_000);
  const lines = r.stdout.split('\n');
  const failing = lines.filter((l) => l.startsWith('not ok '));
  const summary = lines.find((l) => /^\d+ passed, \d+ failed$/.test(l));
  const why = failing.length > 0 ? `\n${failing.join('\n')}` : r.stderr !== '' ? `\n${r.stderr}` : '';
  t.ok(summary !== undefined, `cases.py printed its summary line${summary === undefined ? `\n${r.stdout}\n${r.stderr}` : ''}`);
  const m = /^(\d+) passed, (\d+) failed$/.exec(summary ?? '');
  t.ok(m !== null && Number(m[1]) > 0, `cases ran: ${summary}`);
  t.equal(m?.[2], '0', `0 failed (${summary})${why}`);
  t.equal(r.code, 0, `cases.py exits 0${why}`);
  // the last case (shutdown.sigterm) stopped the daemon with SIGTERM
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([d.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), 10_000)))]);
  clearTimeout(timer);
  t.ok(exit !== null, 'the daemon exited after SIGTERM');
});
