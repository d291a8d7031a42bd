/**
 * The stress harness's quick parts against the real daemon: the frame
 * fuzzer, the kill storm and the soak's mixed churn (`node dist/bench/stress/run.js
 * fuzz killstorm soak --short`, about 45 s on a 2-core machine) must all pass
 * (the soak's 15 s of every op catches an op a worker can no longer use). Each part ends
 * its output with one line `PART: pass` or `PART: fail (reason)`.
 *
 * The run starts through `env -u NODE_OPTIONS`: tap adds its per-process
 * hook (coverage, process info) to NODE_OPTIONS of every process a test
 * spawns, which would load it into the daemons and the hundred short-lived
 * client processes and almost double the run's time, for nothing.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/daemon.js';

const RUN = join(ROOT, 'dist', 'bench', 'stress', 'run.js');
const TIMEOUT_MS = 150_000;

function runStress(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    // SIGTERM: run.js kills every process it started before it exits
    const timer = setTimeout(() => p.kill('SIGTERM'), TIMEOUT_MS);
    p.once('error', reject);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('stress: fuzz, killstorm and soak (short) pass', async (t) => {
  const r = await runStress(['fuzz', 'killstorm', 'soak', '--short']);
  t.comment(r.stderr.split('\n').filter((l) => / (ok  |FAIL) /.test(l)).join('\n'));
  const verdicts = r.stdout.split('\n').filter((l) => /^[a-z]+: (pass|fail)/.test(l));
  t.same(
    verdicts.map((l) => l.split(':')[0]),
    ['fuzz', 'killstorm', 'soak'],
    'one verdict line per part, in order',
  );
  for (const part of ['fuzz', 'killstorm', 'soak']) {
    const line = verdicts.find((l) => l.startsWith(`${part}:`));
    t.equal(line, `${part}: pass`, `${part} passed${line !== undefined && line !== `${part}: pass` ? ` — ${line}` : ''}`);
  }
  const figures = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { bench: string; metric: string });
  t.ok(figures.some((f) => f.bench === 'fuzz' && f.metric === 'framesSent'), 'fuzz printed its figures');
  t.ok(figures.some((f) => f.bench === 'killstorm' && f.metric === 'bystanderPingP99'), 'killstorm printed its figures');
  t.equal(r.code, 0, 'exit status 0');
});
