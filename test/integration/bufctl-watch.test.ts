/**
 * `bufctl watch` like top, on a real terminal: script(1) gives it a pty set
 * to 80×24 (stty), the test types keys into it and reads every frame drawn.
 *
 * - Every frame fits 80×24 (lines cut, never wrapped; sections cut and
 *   saying so), `s` cycles the clients' sort order (the marked column and
 *   the order change), `q` quits with 0 and the terminal is given back
 *   (the alternate screen left, `stty -g` as before).
 * - The daemon stops and another starts on the same socket: the watch says
 *   "daemon gone, reconnecting…", then shows the new daemon; SIGTERM ends
 *   it with 0 and the terminal given back.
 * - Piped and --json, the same restart: a line each ("daemon gone",
 *   "reconnected"), JSON lines stay JSON (the notes go to stderr).
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { startDaemon, BUFCTL } from '../helpers/daemon.js';
import { client } from '../helpers/drivers.js';
import { poll, until, startCommand, type Running } from '../helpers/procs.js';
import type { BufferClient } from '../../client/index.js';

const hasScript = spawnSync('script', ['--version']).status === 0;
const COLS = 80;
const ROWS = 24;
const LEAVE = '\x1b[?25h\x1b[?1049l';

const start = startCommand;

/** bufctl watch on a COLS×ROWS pty; the terminal's settings (stty -g) printed before and after. */
function ttyWatch(t: Test, socket: string, ...args: string[]): Running {
  const inner = `stty cols ${COLS} rows ${ROWS}; stty -g; '${process.execPath}' '${BUFCTL}' --socket '${socket}' watch ${args.join(' ')}; rc=$?; stty -g; exit $rc`;
  return start(t, 'script', ['-qec', inner, '/dev/null']);
}

const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

/** Every frame drawn on the alternate screen, as its lines of text. */
function frames(out: string): string[][] {
  const enter = out.indexOf('\x1b[?1049h');
  if (enter < 0) return [];
  const leave = out.indexOf(LEAVE, enter);
  const screen = out.slice(enter, leave < 0 ? undefined : leave);
  return screen
    .split('\x1b[H')
    .slice(1)
    .map((f) => strip(f).split(/\r*\n/))
    .map((lines) => (lines.at(-1) === '' ? lines.slice(0, -1) : lines))
    .filter((lines) => lines.length > 0);
}

/** The newest frame that satisfies `ok`, once one is drawn. */
const frame = (w: Running, what: string, ok: (lines: string[]) => boolean) => until(() => frames(w.out()).reverse().find(ok), what);
/** The first frame that satisfies `ok`, once one is drawn. */
const firstFrame = (w: Running, what: string, ok: (lines: string[]) => boolean) => until(() => frames(w.out()).find(ok), what);
const has = (s: string | RegExp) => (lines: string[]) => lines.some((l) => (typeof s === 'string' ? l.includes(s) : s.test(l)));

/** The clients table of a frame: its column header and rows (indented), up to the next title or blank line. */
function clientRows(lines: string[]): string[] {
  const i = lines.findIndex((l) => l.startsWith('Clients '));
  const end = lines.findIndex((l, j) => j > i && !l.startsWith(' '));
  return lines.slice(i + 1, end < 0 ? undefined : end);
}

/** The terminal settings printed before the watch started and after it ended. */
function sttyBeforeAfter(out: string): [string, string] {
  const lines = strip(out).split(/\r*\n/).filter((l) => /^[0-9a-f]+(:[0-9a-f]+){10,}$/.test(l));
  return [lines[0] ?? 'none', lines.at(-1) ?? 'none'];
}

const subscribed = (c: BufferClient, n = 1) => poll(() => c.status(), (s) => s.events.subscribers >= n, 10_000);

t.test(`on an ${COLS}×${ROWS} terminal: every frame fits, s cycles the sort, q quits and gives the terminal back`, { skip: !hasScript && 'no script(1)' }, async (t) => {
  const d = await startDaemon(t);
  // more clients and activity than 24 rows hold, names long enough to pass 80 columns
  const apps: BufferClient[] = [];
  for (let i = 0; i < 30; i++) {
    const c = await client(t, d.socket, `stage-${String(i).padStart(2, '0')}-of-the-camera-pipeline`);
    await c.alloc({ pool: 'default', size: (i + 1) * 64 * 1024 });
    apps.push(c);
  }
  const w = ttyWatch(t, d.socket, '--interval', '200');
  const first = await frame(w, 'a frame with the clients', has(/^Clients \d+, sorted by bytes/));
  const title = first.find((l) => l.startsWith('Clients '))!;
  t.match(title, /^Clients 31, sorted by bytes  \(s: sort, q: quit\) \[\d+ of 31 shown\]$/, 'the clients title: count, sort, keys, how many shown');
  const rows = clientRows(first);
  t.match(rows[0], /\*BYTES/, 'the sort column is marked');
  t.match(rows[1], /^\s+\d+\s+stage-29-of-the-cam~\s/, 'the largest client first (30 × 64 KiB), its long name shortened');
  for (let i = 0; i < 10; i++) await apps[i]!.alloc({ pool: 'default', size: 4096 }); // activity
  await frame(w, 'activity lines', has(/^Activity \(newest last\)/));

  // s: bytes → bytes/s → handles → id → name → bytes
  for (const [sort, mark] of [['bytes/s', '*BYTES/s'], ['handles', '*HANDLES'], ['id', '*ID'], ['name', '*NAME'], ['bytes', '*BYTES']] as const) {
    w.write('s');
    const f = await frame(w, `sorted by ${sort}`, has(`sorted by ${sort}  (`));
    const r = clientRows(f);
    t.ok(r[0]!.trim().split(/\s+/).includes(mark), `s: sorted by ${sort}, ${mark} marked`);
    if (sort === 'id') {
      const ids = r.slice(1).map((x) => Number(x.trim().split(/\s+/)[0]));
      t.same(ids, [...ids].sort((a, b) => a - b), 'by id: ascending ids');
    }
    if (sort === 'name') {
      const names = r.slice(1).map((x) => x.trim().split(/\s+/)[1]!);
      t.same(names, [...names].sort((a, b) => a.localeCompare(b)), 'by name: alphabetical');
    }
  }

  w.write('q');
  t.equal(await w.exited, 0, `q: exit 0 ${w.err()}`);
  const out = w.out();
  const all = frames(out);
  t.ok(all.length >= 7, `frames drawn (${all.length})`);
  const tall = all.filter((f) => f.length > ROWS);
  const wide = all.flatMap((f) => f.filter((l) => [...l].length > COLS));
  t.same(tall.map((f) => f.length), [], `no frame taller than ${ROWS} rows`);
  t.same(wide, [], `no line wider than ${COLS} columns`);
  t.ok(all.some((f) => f.some((l) => [...l].length === COLS)), `long lines cut at ${COLS} columns, not wrapped`);
  t.ok(all.slice(1).every((f) => f.length === ROWS), 'a full screen every frame (after the first)');
  t.ok(out.lastIndexOf(LEAVE) > out.lastIndexOf('\x1b[?1049h'), 'the alternate screen left, the cursor shown');
  const [before, after] = sttyBeforeAfter(out);
  t.equal(after, before, 'the terminal settings as before (raw mode undone)');
});

t.test('the daemon restarts on the same socket: "daemon gone, reconnecting…", then the new daemon; SIGTERM restores the terminal', { skip: !hasScript && 'no script(1)' }, async (t) => {
  const d1 = await startDaemon(t);
  const w = ttyWatch(t, d1.socket, '--interval', '200');
  await frame(w, 'the first daemon', has(`pid ${d1.proc.pid}  `));
  await d1.stop('SIGTERM');
  const gone = await frame(w, 'the notice', has('daemon gone, reconnecting…'));
  t.match(gone[0], /^daemon gone, reconnecting… \(/, 'said on the first line');
  t.ok(gone.some((l) => l.includes(`pid ${d1.proc.pid}  `)), 'the last numbers stay below it');
  t.equal(gone.length <= ROWS && gone.every((l) => [...l].length <= COLS), true, 'fitted too');

  const d2 = await startDaemon(t, { socket: d1.socket });
  const back = await firstFrame(w, 'the second daemon', has(`pid ${d2.proc.pid}  `));
  t.notOk(back.some((l) => l.includes('reconnecting')), 'the notice is gone');
  t.match(back.find((l) => l.startsWith('per second:')), /^per second: - allocs/, 'no rates across two daemons');
  const probe = await client(t, d2.socket, 'probe');
  const ticks = await frame(w, 'rates from the new daemon', has(/^per second: \d/));
  t.ok(ticks.length > 0, 'rates again after two snapshots of the new daemon');
  // SIGTERM to bufctl itself (its pid as the daemon sees it)
  const me = (await probe.status()).clients.find((c) => c.name?.startsWith('bufctl:'));
  t.ok(me?.pid, 'the watch is a client of the new daemon');
  process.kill(me!.pid!, 'SIGTERM');
  t.equal(await w.exited, 0, 'SIGTERM: exit 0');
  const [before, after] = sttyBeforeAfter(w.out());
  t.equal(after, before, 'the terminal settings as before');
  t.ok(w.out().lastIndexOf(LEAVE) > 0, 'the alternate screen left');
});

t.test('piped and --json across a restart: a line each, JSON lines stay JSON; SIGINT and SIGTERM end with 0', async (t) => {
  const d1 = await startDaemon(t);
  const probe = await client(t, d1.socket, 'probe');
  const watchCmd = (...args: string[]) => [BUFCTL, '--socket', d1.socket, 'watch', '--interval', '200', ...args];
  const piped = start(t, process.execPath, watchCmd());
  const json = start(t, process.execPath, watchCmd('--json'));
  await subscribed(probe, 2);
  await until(() => piped.out().includes('Hugepages') && json.out().includes('"snapshot"'), 'a snapshot in each');
  await d1.stop('SIGTERM');
  await until(() => piped.out().includes('--- daemon gone, reconnecting… (') && json.err().includes('bufctl watch: daemon gone, reconnecting…'), 'the notes');
  const d2 = await startDaemon(t, { socket: d1.socket });
  const again = `reconnected to bufferd pid ${d2.proc.pid}`;
  await until(() => piped.out().includes(`--- ${again} ---`) && json.err().includes(`bufctl watch: ${again}`), 'reconnected');
  const n = json.out().length;
  await until(() => json.out().slice(n).includes(`"pid":${d2.proc.pid}`), "a snapshot of the new daemon's");
  await until(() => piped.out().slice(piped.out().indexOf(again)).match(/^--- \d+s ---$/m), 'a snapshot screen after the reconnection');
  piped.kill('SIGINT');
  json.kill('SIGTERM');
  t.equal(await piped.exited, 0, 'SIGINT: exit 0');
  t.equal(await json.exited, 0, 'SIGTERM: exit 0');
  t.notMatch(piped.out(), /\x1b\[/, 'no escape sequences when piped');
  const lines = json.out().trim().split('\n');
  t.ok(lines.every((l) => typeof (JSON.parse(l) as { event?: unknown }).event === 'string'), `every stdout line an event (${lines.length})`);
  t.equal(piped.err(), '', 'piped: nothing on stderr');
});
