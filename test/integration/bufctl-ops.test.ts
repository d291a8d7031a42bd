/**
 * bufctl's operations commands: `watch` (piped, JSON lines; on a terminal
 * and across daemon restarts: bufctl-watch.test.ts), `reload` and
 * `dashboard`; and for every command: --help and --json.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, BUFCTL } from '../helpers/daemon.js';
import { client } from '../helpers/drivers.js';
import { poll, until, startCommand } from '../helpers/procs.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { BufferClient } from '../../client/index.js';
import { bufctlHere } from '../helpers/bufctl.js';

const COMMANDS = ['status', 'pools', 'hugepages', 'buffers', 'clients', 'drivers', 'constraints', 'merge', 'violations', 'watch', 'reload', 'inject', 'dashboard', 'record'];

const start = startCommand;

const watchCmd = (socket: string, ...args: string[]) => [BUFCTL, '--socket', socket, 'watch', ...args];

/** Wait until `n` event subscribers are connected (a watch has subscribed). */
const subscribed = (c: BufferClient, n = 1) => poll(() => c.status(), (s) => s.events.subscribers >= n, 10_000);

// one daemon for the subtests that don't stop it or need a config file
const shared = await startDaemon(t, { args: ['--http', '127.0.0.1:0'] });

t.test('bufctl watch, piped: snapshot screens and activity lines', async (t) => {
  const d = shared;
  const probe = await client(t, d.socket, 'probe');
  const w = start(t, process.execPath, watchCmd(d.socket, '--count', '3', '--interval', '700'));
  await subscribed(probe);
  const app = await client(t, d.socket, 'app');
  const h = await app.alloc({ pool: 'default', size: 5000 });
  t.equal(await w.exited, 0, w.err());
  const out = w.out();
  t.equal(out.match(/^--- .* ---$/gm)?.length, 3, 'three snapshots');
  for (const s of ['Hugepages', 'per second:', 'Pools in use', 'Clients', 'Drivers in use']) t.match(out, s);
  t.match(out, new RegExp(`app \\(#${app.id}\\) connected as anonymous`), 'the connect line');
  t.match(out, new RegExp(`buffer ${h.buffer}: .* from default by app \\(#${app.id}\\)`), 'the alloc line');
  t.notMatch(out, /\x1b\[/, 'no escape sequences when piped');
  t.equal(w.err(), '');
});

t.test('bufctl watch --json: one JSON object per line; --topics filters', async (t) => {
  const d = shared;
  const probe = await client(t, d.socket, 'probe2');
  const w = start(t, process.execPath, watchCmd(d.socket, '--json', '--count', '3', '--interval', '600', '--topics', 'alloc'));
  await subscribed(probe);
  const app = await client(t, d.socket, 'app2'); // a clients event, filtered out
  const h = await app.alloc({ pool: 'default', size: 5000 });
  await app.close(h.handle);
  t.equal(await w.exited, 0, w.err());
  const lines = w.out().trim().split('\n');
  const evs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(evs.filter((e) => e['event'] === 'snapshot').length, 3, 'three snapshots');
  t.ok(evs.filter((e) => e['event'] === 'snapshot').every((e) => typeof (e['status'] as { version?: unknown }).version === 'string'), 'snapshots carry the status');
  const acts = evs.filter((e) => e['event'] === 'activity');
  t.match(acts, [{ topic: 'alloc', kind: 'alloc', buffer: h.buffer, size: 5000 }, { topic: 'alloc', kind: 'free', buffer: h.buffer }], 'the alloc and the free');
  t.ok(acts.every((e) => e['topic'] === 'alloc'), 'only alloc activity');
  t.same(new Set(evs.map((e) => e['event'])), new Set(['snapshot', 'activity']));
});

t.test('bufctl watch: bad options exit 2 with usage', async (t) => {
  const d = shared;
  const bad = [['--interval', '50'], ['--interval', '60001'], ['--topics', 'alloc,nope'], ['--topics', ','], ['--count', '0'], ['extra'], ['--pool', 'default']];
  const results = await Promise.all(bad.map((args) => bufctlHere(d.socket, 'watch', ...args)));
  for (const [i, args] of bad.entries()) {
    const r = results[i]!;
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, 'Usage: bufctl watch', `${args.join(' ')}: usage`);
    t.equal(r.stdout, '');
  }
});

t.test('bufctl reload', async (t) => {
  const d = shared;
  const r = await bufctlHere(d.socket, 'reload');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /reloaded \(embedded default machine\)/);
  t.match(r.stdout, 'nothing changed');
  const js = await bufctlHere(d.socket, 'reload', '--json');
  t.equal(js.code, 0);
  t.same(JSON.parse(js.stdout), { source: '(embedded default machine)', applied: [], ignored: [] });

  // from a file: events settings apply at once
  const f = await startDaemon(t, { config: DEFAULT_MACHINE });
  const cfg = join(f.dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({ ...DEFAULT_MACHINE, events: { allocRate: 2 }, server: { ...DEFAULT_MACHINE.server, http: '127.0.0.1:0' } }));
  const applied = await bufctlHere(f.socket, 'reload', '--json');
  t.equal(applied.code, 0, applied.stderr);
  const res = JSON.parse(applied.stdout) as { source: string; applied: string[]; ignored: string[] };
  t.equal(res.source, cfg);
  t.match(res.applied, [/events\.allocRate 200 → 2/]);
  t.match(res.ignored, [/server\.http/]);
  const human = await bufctlHere(f.socket, 'reload');
  t.match(human.stdout, 'nothing changed', 'a second reload: nothing new');
  t.match(human.stdout, /^  not applied: server\.http \(restart to change\)$/m, 'what still waits for a restart, said once');
  t.notMatch(human.stdout, 'needs a restart: ', 'no doubled wording');
  const c = await client(t, f.socket, 'sub');
  const summaries: Record<string, unknown>[] = [];
  c.on('activity', (e) => e.kind === 'summary' && summaries.push(e as unknown as Record<string, unknown>));
  await c.subscribe({ topics: ['alloc'] });
  for (let i = 0; i < 6; i++) await c.alloc({ pool: 'default', size: 4096 });
  const sum = await until(() => summaries[0], 'a summary at the new rate');
  t.match(sum, { topic: 'alloc', kind: 'summary', allocs: Number }, 'the new allocRate is in force: 6 allocations within a second are aggregated');
  t.ok((sum['allocs'] as number) >= 1 && (sum['allocs'] as number) <= 4, `past the first 2, the rest are summarized (${String(sum['allocs'])})`);
  writeFileSync(cfg, '{"pools": 3}');
  const bad = await bufctlHere(f.socket, 'reload');
  t.equal(bad.code, 1);
  t.match(bad.stderr, /EINVAL: reload rejected/);
  // anonymous may not reload
  const anon = await client(t, f.socket, 'anon');
  await t.rejects(anon.reload(), { code: 'EPERM' });
});

t.test('help lists every command; each has --help', async (t) => {
  const h = await bufctlHere(null, '--help');
  t.equal(h.code, 0);
  for (const c of COMMANDS) t.match(h.stdout, new RegExp(`^  ${c}\\b`, 'm'), `--help lists ${c}`);
  const helps = await Promise.all(COMMANDS.map((c) => bufctlHere('/nonexistent.sock', c, '--help')));
  COMMANDS.forEach((c, i) => {
    const r = helps[i]!;
    t.equal(r.code, 0, `${c} --help: exit 0`);
    t.match(r.stdout, new RegExp(`^Usage: bufctl \\[--socket PATH\\] ${c}\\b`), `${c}: usage`);
    t.match(r.stdout, /\nOptions:\n/, `${c}: options`);
    t.match(r.stdout, /--json/, `${c}: --json listed`);
  });
});

t.test('every command takes --json and prints one JSON document', async (t) => {
  const d = shared;
  const app = await client(t, d.socket, 'holder');
  await app.alloc({ pool: 'default', size: 4096 });
  const runs: string[][] = [
    ['status'], ['status', '--pool', 'default'], ['pools'], ['hugepages'], ['hugepages', 'set', '2M', '100'], ['buffers'], ['clients'],
    ['drivers'], ['constraints', 'gpu'], ['merge', 'gpu', 'video'], ['violations'], ['reload'], ['inject'], ['dashboard'], ['record', 'status'],
  ];
  const seen = new Set<string>();
  // one after another: in one process each session is named bufctl:<pid>, and names are unique
  const results: Awaited<ReturnType<typeof bufctlHere>>[] = [];
  for (const args of runs) results.push(await bufctlHere(d.socket, ...args, '--json'));
  for (const [i, args] of runs.entries()) {
    const r = results[i]!;
    t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    let doc: unknown;
    t.doesNotThrow(() => (doc = JSON.parse(r.stdout)), `${args.join(' ')}: one JSON document`);
    t.ok(doc !== null && typeof doc === 'object', `${args.join(' ')}: an object or array`);
    seen.add(args[0]!);
  }
  const dash = JSON.parse(results[runs.findIndex((r) => r[0] === 'dashboard')]!.stdout) as { url: string; address: string; token: string | null };
  t.match(dash.address, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'dashboard --json: the address');
  t.match(dash.token, /^[0-9a-f]{32,}$/, 'the token itself, not true');
  t.equal(dash.url, `${dash.address}#token=${dash.token!}`, 'and the URL carrying it');
  const w = await bufctlHere(d.socket, 'watch', '--json', '--count', '2', '--interval', '100');
  t.equal(w.code, 0);
  const lines = w.stdout.trim().split('\n');
  t.equal(lines.length, 2, 'watch: one line per event');
  for (const l of lines) t.match(JSON.parse(l), { event: 'snapshot' });
  seen.add('watch');
  t.same([...seen].sort(), [...COMMANDS].sort(), 'every command covered');

  // and every command's errors: one JSON document, {error: {code, message, details}}
  const failing: [string[], number, string][] = [
    [['status', '--pool', 'nosuch'], 1, 'ENOENT'],
    [['pools', 'extra'], 2, 'EINVAL'],
    [['hugepages', 'set', '2M', '-1'], 2, 'EINVAL'],
    [['hugepages', 'set', '4M', '1'], 1, 'ENOENT'],
    [['buffers', '--pool', 'nosuch'], 1, 'ENOENT'],
    [['clients', '--pool', 'x'], 2, 'EINVAL'],
    [['drivers', 'extra'], 2, 'EINVAL'],
    [['constraints', 'nosuch'], 1, 'ENOENT'],
    [['merge', 'display', 'nic'], 1, 'EINVAL'],
    [['violations', '--kind', 'bogus'], 2, 'EINVAL'],
    [['watch', '--count', '0'], 2, 'EINVAL'],
    [['reload', 'now'], 2, 'EINVAL'],
    [['inject', 'set', 'nope'], 2, 'EINVAL'],
    [['dashboard', '--pool', 'x'], 2, 'EINVAL'],
    [['record', 'stop'], 1, 'EINVAL'],
  ];
  const errs = await Promise.all(failing.map(([args]) => bufctlHere(d.socket, ...args, '--json')));
  const covered = new Set<string>();
  for (const [i, [args, exit, code]] of failing.entries()) {
    const r = errs[i]!;
    t.equal(r.code, exit, `${args.join(' ')}: exit ${exit}`);
    let doc: { error?: { code: string; message: string; details: unknown } } = {};
    t.doesNotThrow(() => (doc = JSON.parse(r.stdout) as typeof doc), `${args.join(' ')}: one JSON document`);
    t.equal(doc.error?.code, code, `${args.join(' ')}: ${code}`);
    t.type(doc.error?.message, 'string');
    t.type(doc.error?.details, 'object');
    t.same(Object.keys(doc.error ?? {}), ['code', 'message', 'details'], 'exactly code, message and details');
    covered.add(args[0]!);
  }
  t.same([...covered].sort(), [...COMMANDS].sort(), 'every command has its errors in JSON');
});
