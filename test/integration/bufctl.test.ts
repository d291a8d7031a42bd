/**
 * bufctl as a separate process: human and JSON output, exit codes. Each
 * exit code and the socket from the environment are checked on the binary;
 * the other command lines run bufctl's run() in this process (helpers/bufctl.ts),
 * the function the binary calls with the same arguments, where only the output
 * is in question.
 */
import t from 'tap';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, bufctl, tempDir, runNode, BUFCTL, ROOT, type Daemon } from '../helpers/daemon.js';
import { encodeFrame, FrameReader } from '../../protocol/frame.js';
import { decodeValue } from '../../protocol/codec.js';
import { connect } from '../../client/index.js';
import { bufctlHere } from '../helpers/bufctl.js';

// one daemon for the status views (neither allocates from the other's pools); the EACCES test changes its own's modes
let shared: Promise<Daemon> | undefined;
const sharedDaemon = () => (shared ??= startDaemon(t));

t.test('bufctl status: tables and JSON', async (t) => {
  const d = await sharedDaemon();
  const app = await connect({ socket: d.socket, name: 'viewer' });
  t.teardown(() => app.disconnect());
  const human = await bufctl(d.socket, 'status');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /bufferd \d+\.\d+\.\d+/);
  t.match(human.stdout, /REGION\s+KIND\s+BASE\s+SIZE\s+FREE/);
  t.match(human.stdout, /dram\s+dram\s+0x80000000\s+8 GiB/);
  t.match(human.stdout, /viewer/);
  const js = await bufctlHere(d.socket, 'status', '--json');
  t.equal(js.code, 0);
  const st = JSON.parse(js.stdout) as Record<string, unknown>;
  for (const k of ['version', 'uptimeMs', 'memory', 'hugepages', 'pools', 'clients', 'drivers']) t.ok(k in st, k);
  t.ok((st['clients'] as { name: string }[]).some((c) => c.name === 'viewer'));
  // the socket can come from the environment
  const viaEnv = await runNode([BUFCTL, 'status', '--json'], { env: { BUFFERD_SOCKET: d.socket } });
  t.equal(viaEnv.code, 0);
  t.equal((JSON.parse(viaEnv.stdout) as { socket: string }).socket, d.socket);
});

t.test('bufctl usage errors exit 2: one line naming the problem, one line of usage or hint', async (t) => {
  const cases: [string[], RegExp, RegExp][] = [
    [[], /^bufctl: no command given$/, /^Commands: status, pools, .*See 'bufctl --help'\.$/],
    [['frobnicate'], /^bufctl: unknown command 'frobnicate'$/, /^Commands: /],
    [['stauts'], /^bufctl: unknown command 'stauts' \(did you mean 'status'\?\)$/, /^Commands: /],
    [['stat'], /did you mean 'status'\?/, /^Commands: /],
    [['violatoins', '--json'], /did you mean 'violations'\?/, /^Commands: /],
    [['status', '--bogus'], /^bufctl: unknown option '--bogus' for 'status'$/, /^Usage: bufctl status \[--pool NAME\] \[--json\]/],
    [['status', '--jsno'], /^bufctl: unknown option '--jsno' for 'status' \(did you mean '--json'\?\)$/, /^Usage: bufctl status/],
    [['buffers', '--pol', 'x'], /unknown option '--pol' for 'buffers' \(did you mean '--pool'\?\)/, /^Usage: bufctl buffers/],
    [['status', 'extra'], /^bufctl: 'status' takes no arguments \(got 'extra'\)$/, /^Usage: bufctl status/],
    [['status', '--overcommit', '3'], /^bufctl: option --overcommit does not apply to 'status'$/, /^Usage: bufctl status/],
    [['constraints'], /^bufctl: 'constraints' needs <driver>$/, /^Usage: bufctl constraints <driver>/],
    [['buffers', '--client'], /^bufctl: option --client needs a value \(--client ID\)$/, /^Usage: bufctl buffers /],
    [['--json=yes', 'status'], /^bufctl: option --json takes no value/, /^Usage: bufctl status /],
    [['--json=yes'], /^bufctl: option --json takes no value/, /^See 'bufctl --help'\.$/],
    [['help', 'statsu'], /^bufctl: no help for 'statsu': not a command \(did you mean 'status'\?\)$/, /^Commands: /],
    [['-x'], /^bufctl: unknown option '-x'$/, /^Commands: /],
    [['violations', '--kind', 'bogus'], /^bufctl: --kind 'bogus' is not a violation kind$/, /^Violation kinds: cpu-access-while-device-owned, .*lost-write/],
    [['violations', '--kind', 'lost-writes'], /^bufctl: --kind 'lost-writes' is not a violation kind \(did you mean 'lost-write'\?\)$/, /^Violation kinds: /],
    [['violations', '--limit', '0'], /^bufctl: --limit '0' is not a positive count$/, /^Usage: bufctl violations/],
    [['hugepages', 'set', '2M', '-1'], /^bufctl: '-1' is not a page count: nr_hugepages is a whole number, 0 or more$/, /^Usage: bufctl hugepages/],
    [['hugepages', 'set', '2M', '1.5'], /'1\.5' is not a page count/, /^Usage: bufctl hugepages/],
    [['hugepages', 'set', '3Q', '1'], /^bufctl: '3Q' is not a hugepage size \(2M or 1G\)$/, /^Usage: bufctl hugepages/],
    [['hugepages', 'set', '2M'], /^bufctl: hugepages set needs a page size and a count/, /^Usage: bufctl hugepages/],
    [['hugepages', 'sett', '2M', '1'], /unknown hugepages action 'sett' \(did you mean 'set'\?\)/, /^Usage: bufctl hugepages/],
    [['hugepages', 'set', '2M', '1', '--overcommit', '-3'], /^bufctl: --overcommit '-3' is not a page count \(0 or more\)$/, /^Usage: bufctl hugepages/],
  ];
  // no daemon at that socket: every one of these is refused before connecting (run() in this process;
  // the spawned binary's exit codes are checked below and in the other tests)
  const results = await Promise.all(cases.map(([args]) => bufctlHere('/nonexistent.sock', ...args)));
  for (const [i, [args, first, second]] of cases.entries()) {
    const r = results[i]!;
    const what = args.join(' ') || '(nothing)';
    t.equal(r.code, 2, `${what}: exit 2`);
    const lines = r.stderr.trimEnd().split('\n');
    t.equal(lines.length, 2, `${what}: two lines (${r.stderr})`);
    t.match(lines[0], first, `${what}: the problem`);
    t.match(lines[1], second, `${what}: the hint`);
    t.notMatch(r.stderr, 'To specify a positional argument', `${what}: not parseArgs' text`);
    if (!args.includes('--json')) t.equal(r.stdout, '', `${what}: nothing on stdout`);
  }
  const h = await bufctl(null, '--help');
  t.equal(h.code, 0);
  t.match(h.stdout, 'Usage: bufctl');
  t.match(h.stdout, 'Exit codes');
  t.match(h.stdout, '--version');
  const sh = await bufctlHere(null, 'status', '--help');
  t.equal(sh.code, 0);
  t.match(sh.stdout, 'status [--pool NAME] [--json]');
  const hp = await bufctlHere(null, 'help');
  t.equal(hp.code, 0);
  t.match(hp.stdout, 'Commands:');
  const hs = await bufctlHere(null, 'help', 'buffers');
  t.equal(hs.code, 0);
  t.match(hs.stdout, /^Usage: bufctl \[--socket PATH\] buffers/);
});

t.test('bufctl --version: the package version, without a daemon', async (t) => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = await bufctl('/nonexistent.sock', '--version');
  t.equal(v.code, 0);
  t.equal(v.stdout, `bufctl ${version}\n`);
  const j = await bufctlHere('/nonexistent.sock', '--version', '--json');
  t.same(JSON.parse(j.stdout), { version });
  t.equal((await bufctlHere(null, 'status', '--version')).stdout, `bufctl ${version}\n`, 'after a command too');
});

t.test('--json: exactly one JSON document on stdout for usage errors (exit 2) and connection failures (exit 3)', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'missing.sock');
  const [u1, u2, u3, u4, c1, c2] = await Promise.all([
    bufctl(missing, 'stauts', '--json'),
    bufctlHere(missing, 'status', '--json', '--bogus'),
    bufctlHere(missing, '--json', 'violations', '--kind', 'nope'),
    bufctlHere(missing, 'watch', '--json', '--interval', '5'),
    bufctl(missing, 'status', '--json'),
    bufctlHere(missing, 'watch', '--json'),
  ]);
  t.same(JSON.parse(u1.stdout), { error: { code: 'EINVAL', message: "unknown command 'stauts' (did you mean 'status'?)", details: {} } });
  t.equal(u1.code, 2);
  t.same(JSON.parse(u2.stdout), {
    error: { code: 'EINVAL', message: "unknown option '--bogus' for 'status'", details: { command: 'status', usage: 'bufctl status [--pool NAME] [--json]' } },
  });
  t.equal(u2.code, 2);
  t.match(JSON.parse(u3.stdout), { error: { code: 'EINVAL', message: "--kind 'nope' is not a violation kind", details: { command: 'violations' } } });
  t.equal(u3.code, 2);
  t.match(JSON.parse(u4.stdout), { error: { code: 'EINVAL', message: /--interval '5'/ } });
  const u5 = await bufctlHere(missing, 'violations', '--limit', '--json');
  t.same(JSON.parse(u5.stdout), {
    error: { code: 'EINVAL', message: 'option --limit needs a value (--limit N)', details: { command: 'violations', usage: 'bufctl violations [--kind KIND] [--limit N] [--json]' } },
  }, 'an option without its value: the usage line of the command it was for');
  t.equal(u4.stdout.trim().split('\n').length, 1, 'watch --json: the error is one line, as its events are');
  for (const c of [c1, c2]) {
    t.equal(c.code, 3);
    t.same(JSON.parse(c.stdout), { error: { code: 'ENOENT', message: `no daemon socket at ${missing} (ENOENT)`, details: { socket: missing } } });
    t.match(c.stderr, 'npx bufferd', 'and the human message on stderr');
  }
  // a socket file nobody listens on
  const stale = join(dir, 'stale.sock');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(stale, r));
  await new Promise<void>((r) => srv.close(() => r()));
  writeFileSync(stale, ''); // the file stays behind, as after a crash (a regular file: connect is refused)
  const r = await bufctlHere(stale, 'pools', '--json');
  t.equal(r.code, 3);
  t.match(JSON.parse(r.stdout), { error: { code: 'ECONNREFUSED', details: { socket: stale } } });
  t.match(r.stderr, 'nothing listens on');
});

t.test('bufctl cannot connect: exit 3 naming the socket and how to start the daemon', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'missing.sock');
  const r = await bufctl(path, 'status');
  t.equal(r.code, 3);
  t.match(r.stderr, path);
  t.match(r.stderr, 'npx bufferd');
});

/** bufctl run as another user (no supplementary groups), as an unprivileged user of the daemon would. */
function bufctlAs(uid: number, gid: number, socket: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BUFCTL, '--socket', socket, ...args], { uid, gid, env: { ...process.env, BUFFERD_SOCKET: '' } });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (x: string) => (stdout += x));
    p.stderr.setEncoding('utf8').on('data', (x: string) => (stderr += x));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const groupName = (gid: number) =>
  readFileSync('/etc/group', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[2] === String(gid))?.[0] ?? String(gid);

t.test(
  'bufctl without permission on the socket (EACCES): names the file, its mode, owner and group, and the group to join',
  { skip: process.getuid?.() !== 0 ? 'needs root to run bufctl as another user' : false },
  async (t) => {
    const d = await startDaemon(t);
    const NOBODY = 65534;
    const GID = 100;
    const group = groupName(GID);
    const root = groupName(0);
    // the test's temp dir is 0700: nobody may not even enter it
    const dirDenied = await bufctlAs(NOBODY, NOBODY, d.socket, 'status');
    t.equal(dirDenied.code, 3);
    t.match(dirDenied.stderr, `bufctl: permission denied: user nobody may not enter ${d.dir} (mode 0700, owner root, group ${root}), the way to ${d.socket}`);
    t.match(dirDenied.stderr, `Only root may enter it: run bufctl as root, or let the group in (chmod g+x ${d.dir})`);
    t.notMatch(dirDenied.stderr, 'Is the daemon running', 'not a missing daemon');

    chmodSync(d.dir, 0o755);
    chownSync(d.socket, 0, GID);
    const groupDenied = await bufctlAs(NOBODY, NOBODY, d.socket, 'status');
    t.equal(groupDenied.code, 3);
    t.match(groupDenied.stderr, `bufctl: permission denied: user nobody may not connect to ${d.socket} (mode 0660, owner root, group ${group})`);
    t.match(groupDenied.stderr, `Join the group '${group}' (sudo usermod -aG ${group} nobody, then log in again) or run bufctl as root.`);
    t.equal(groupDenied.stdout, '');
    const js = await bufctlAs(NOBODY, NOBODY, d.socket, 'pools', '--json');
    t.equal(js.code, 3);
    t.same(JSON.parse(js.stdout), {
      error: {
        code: 'EACCES',
        message: `permission denied: user nobody may not connect to ${d.socket} (mode 0660, owner root, group ${group})`,
        details: { socket: d.socket, path: d.socket, owner: 'root', group, mode: '0660', user: 'nobody', inGroup: false },
      },
    });
    // a member of the group gets in
    const member = await bufctlAs(NOBODY, GID, d.socket, 'pools');
    t.equal(member.code, 0, member.stderr);

    chmodSync(d.socket, 0o600);
    const ownerOnly = await bufctlAs(NOBODY, GID, d.socket, 'status');
    t.equal(ownerOnly.code, 3);
    t.match(ownerOnly.stderr, `may not connect to ${d.socket} (mode 0600, owner root, group ${group})`);
    t.match(ownerOnly.stderr, `Only root may connect: run bufctl as root, or let the group in (the daemon's server.socketMode "0660") and join '${group}'.`);
  },
);

t.test('bufctl: the daemon answered an error, exit 1', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fake.sock');
  // A minimal fake daemon: accepts hello, refuses status with EPERM.
  const srv = createServer((s) => {
    const r = new FrameReader();
    s.on('data', (c) => {
      for (const f of r.push(c)) {
        const m = decodeValue(f) as { id: number; op: string };
        if (m.op === 'hello') s.write(encodeFrame({ id: m.id, result: { clientId: 1, name: null, protocolVersion: 1, server: { name: 'bufferd', version: '0', pid: 1 }, limits: {}, capabilities: [] } }));
        else s.write(encodeFrame({ id: m.id, error: { code: 'EPERM', message: 'status needs capability status' } }));
      }
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  t.teardown(() => srv.close());
  const r = await bufctl(path, 'status');
  t.equal(r.code, 1);
  t.match(r.stderr, 'EPERM: status needs capability status');
  const j = await bufctlHere(path, 'status', '--json');
  t.equal(j.code, 1);
  t.same(JSON.parse(j.stdout), { error: { code: 'EPERM', message: 'status needs capability status', details: {} } });
  t.match(j.stderr, 'bufctl: EPERM: status needs capability status');
});

t.test('bufctl status --pool shows the arena and bin tables', async (t) => {
  const d = await sharedDaemon();
  const c = await connect({ socket: d.socket, name: 'small' });
  t.teardown(() => c.disconnect());
  for (const size of [8, 100, 100, 5000]) await c.alloc({ pool: 'default', size });
  const r = await bufctlHere(d.socket, 'status', '--pool', 'default');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, 'Pool default: writeback, 4 KiB pages');
  t.match(r.stdout, /ARENA\s+OWNER\s+LIVE\s+ALLOCATED/);
  t.match(r.stdout, new RegExp(`client ${c.id}\\s+4`));
  t.match(r.stdout, /SIZE\s+IND\s+SLAB\s+REGS\s+CURREGS\s+CURSLABS\s+NONFULL/);
  t.match(r.stdout, /112\s+7\s+28 KiB\s+256\s+2\s+1\s+1/);
  const j = JSON.parse((await bufctlHere(d.socket, 'status', '--pool', 'default', '--json')).stdout) as { bins: { size: number; curregs: number }[]; arenas: unknown[] };
  t.same(j.bins.map((b) => [b.size, b.curregs]), [[8, 1], [112, 2], [5120, 1]]);
  t.equal(j.arenas.length, 1);
  // ACT/ALLOC (fragmentation) means nothing for a pool that holds nothing: '-', not 1.00
  const [pools, empty] = await Promise.all([bufctlHere(d.socket, 'pools'), bufctlHere(d.socket, 'status', '--pool', 'uncached')]);
  const poolRow = (name: string) => pools.stdout.split('\n').find((l) => l.startsWith(`  ${name} `)) ?? '';
  t.match(pools.stdout, /ACT\/ALLOC\s+CONVERSIONS/);
  t.match(poolRow('default'), /\s\d\.\d\d\s+\d+$/, 'a pool in use: its ratio');
  t.match(poolRow('uncached'), /\s0 B\s+-\s+\d+$/, 'an empty pool: -');
  t.match(empty.stdout, 'fragmentation (active/allocated) -  buffers 0');
  const bad = await bufctlHere(d.socket, 'status', '--pool', 'nosuch');
  t.equal(bad.code, 1);
  t.match(bad.stderr, "ENOENT: no pool named 'nosuch'");
});
