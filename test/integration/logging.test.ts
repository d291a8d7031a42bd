/**
 * The daemon's log: readable lines on a terminal, JSON lines otherwise
 * (--log-format overrides), per-connection lines at debug only.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DAEMON, runNode, startDaemon, tempDir } from '../helpers/daemon.js';
import { connect } from '../../client/index.js';

const hasScript = spawnSync('script', ['--version']).status === 0;

/** Run the daemon under `script` (a terminal), connect once, stop it by SIGTERM; its terminal output. */
async function underTerminal(t: Test, extra: string): Promise<string> {
  const dir = tempDir(t);
  const socket = join(dir, 'b.sock');
  const p = spawn('script', ['-qec', `'${process.execPath}' '${DAEMON}' --socket '${socket}' ${extra}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => p.kill('SIGKILL'));
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  // wait for the daemon by its socket, not by a clock
  while (!existsSync(socket)) {
    if (p.exitCode !== null) throw new Error(`script exited: ${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const c = await connect({ socket, name: 'probe', useCookie: false });
  const pid = (await c.status()).pid;
  await c.disconnect();
  process.kill(pid, 'SIGTERM');
  await exited;
  return out;
}

t.test('on a terminal the log is readable lines, not JSON', { skip: hasScript ? false : 'no script(1) here' }, async (t) => {
  const out = await underTerminal(t, '');
  t.match(out, /INFO.*listening/, 'the listening line, with its level');
  t.match(out, /socket.*b\.sock/, 'and its fields');
  t.notMatch(out, /^\{"level"/m, 'no JSON lines');
  t.notMatch(out, /client opened session/, 'a connection is not an info line');
});

t.test('--log-format json keeps JSON on a terminal', { skip: hasScript ? false : 'no script(1) here' }, async (t) => {
  const out = await underTerminal(t, '--log-format json');
  const lines = out.split(/\r?\n/).filter((l) => l.startsWith('{'));
  t.ok(lines.some((l) => (JSON.parse(l) as { msg?: string }).msg === 'listening'), 'a JSON listening line');
});

t.test('JSON when stdout is not a terminal; hello and disconnect at debug', async (t) => {
  const d = await startDaemon(t, { logLevel: 'debug' });
  const c = await connect({ socket: d.socket, name: 'probe', useCookie: false });
  await c.disconnect();
  await d.waitForLog((l) => l['msg'] === 'client disconnected');
  const recs = d.logs.filter((r) => r['msg'] === 'client opened session' || r['msg'] === 'client disconnected');
  t.equal(recs.length, 2);
  for (const r of recs) t.equal(r['level'], 20, `${String(r['msg'])} is a debug line`);
});

t.test('an unknown log format is a usage error', async (t) => {
  const r = await runNode([DAEMON, '--log-format', 'fancy']);
  t.equal(r.code, 2);
  t.match(r.stderr, "unknown log format 'fancy' (expected one of auto, json, pretty)");
});
