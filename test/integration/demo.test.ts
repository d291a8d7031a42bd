/**
 * `npm run demo`: the seed pipeline as separate processes, against a daemon
 * it starts or one already running (--socket).
 */
import t from 'tap';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { runNode, startDaemon, ROOT, tempDir, type Daemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client } from '../helpers/drivers.js';
import { system, connect } from '../../client/index.js';
import { captureFailures } from '../../client/demo.js';

const DEMO = join(ROOT, 'dist', 'client', 'demo.js');

const KEY_LINES = [
  /merged gpu \+ jpeg: align 64 KiB, physically contiguous, cache writecombine\|uncached, below 0x100000000/,
  /allocated buffer #\d+: 1 MiB from contig \(writecombine, carveout\)/,
  /\[decoder\] +registered buffer #\d+ with jpeg/,
  /checksum (\w+) matches the decoder's/,
  /1 MiB BOUNCED through swiotlb/,
  /\[display\] +scanned out 1 MiB: checksum \w+ matches/,
  /display REFUSED buffer #\d+ \(EATTR\); the attribute diff:/,
  / cache: needs writecombine, buffer has writeback/,
  /the checker caught it: cpu-access-while-device-owned/,
  /^Hugepages$/m,
  /^Pools \(conversions/m,
  /\[capture\] +unregistered #\d+ from capture, #\d+ from capture/,
  /demo finished: every step did what it should\./,
];

const FOUR_GIB = 2 ** 32;
const leakLogs = (d: Daemon) => d.logs.filter((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('DMA registration leaked'));
/** Where the camera's two buffers landed, as the demo narrates it. */
function captured(stdout: string): { low: number; high: number } {
  const at = [...stdout.matchAll(/\[capture\] +allocated buffer #\d+: 1 MiB from \w+ \(writeback, dram\) at (0x[0-9a-f]+)/g)].map((m) => Number(m[1]));
  return { low: at[0]!, high: at[1]! };
}

t.test('the demo starts its own daemon, runs every step and ends with bufctl status', async (t) => {
  const r = await runNode([DEMO], { timeoutMs: 60_000 });
  t.equal(r.code, 0, `exit code 0\n${r.stdout}\n${r.stderr}`);
  for (const re of KEY_LINES) t.match(r.stdout, re, `prints ${re.source}`);
  // the narrated checksums are real: the decoder's frame is what the texture app and the display read
  const sums = [...r.stdout.matchAll(/checksum (\w{12})/g)].map((m) => m[1]);
  t.ok(sums.length >= 5, 'checksums are printed');
  const native = system() !== null;
  const decoded = /decoded a frame into it: 1 MiB (?:written through its own mapping \(writecombine, zero copy\)|by DMA), checksum (\w{12})/.exec(r.stdout)?.[1];
  t.ok(decoded !== undefined, 'the decoder says how it wrote the frame');
  if (native) {
    t.match(r.stdout, /\[decoder\] +decoded a frame into it: 1 MiB written through its own mapping/, 'the decoder wrote through a mapping');
    t.match(r.stdout, /\[display\] +and through its own read-only mapping: checksum \w+ matches/, 'the display read through its own mapping');
  }
  const seen = native ? 4 : 3; // decoder, texture app, display's scanout (and its mapping)
  t.equal((r.stdout.match(new RegExp(decoded!, 'g')) ?? []).length, seen, 'decoder, texture app and display saw the same frame');
  const sock = /bufferd started on (\S+) /.exec(r.stdout)?.[1];
  t.ok(sock !== undefined && !existsSync(sock), 'its daemon is stopped and its socket removed');
  t.notMatch(r.stdout, /FAILED|stderr\]/);
});

// one running daemon for the two runs with --socket: the first leaves it serving, the second resizes its hugepages first
let running: Promise<Daemon> | undefined;
const runningDaemon = () => (running ??= startDaemon(t));

t.test('the demo runs against a running daemon with --socket and leaves it serving', async (t) => {
  const d = await runningDaemon();
  const watcher = await client(t, d.socket, 'watcher');
  const r = await runNode([DEMO, '--socket', d.socket], { timeoutMs: 60_000, unhooked: true });
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, `using the running bufferd at ${d.socket}`);
  for (const re of KEY_LINES) t.match(r.stdout, re);
  const st = await watcher.status();
  t.equal(st.buffers.live, 0, 'the demo clients are gone and their buffers freed');
  t.same(st.clients.map((c) => c.name), ['watcher']);
  t.ok(st.coherency.violations.total >= 1, 'the forgotten sync was recorded by the daemon');
  t.equal(st.dma.leaks, 0, 'every process unregistered what it registered: no leak counted');
  t.same(leakLogs(d), [], 'and none logged');
  t.equal(d.proc.exitCode, null, 'the daemon still runs');
});

t.test('after hugepage resizes the demo still gets its buffer above 4 GiB, by asking for it', async (t) => {
  const d = await runningDaemon();
  const demo = async (what: string) => {
    const r = await runNode([DEMO, '--socket', d.socket], { timeoutMs: 60_000, unhooked: true });
    t.equal(r.code, 0, `${what}: exit code 0\n${r.stdout}\n${r.stderr}`);
    const { low, high } = captured(r.stdout);
    t.ok(low < FOUR_GIB && high >= FOUR_GIB, `${what}: low buffer at 0x${low.toString(16)}, high one at 0x${high.toString(16)}`);
    t.match(r.stdout, /1 MiB BOUNCED through swiotlb/, `${what}: the high buffer is bounced`);
  };
  // the resizes README documents, then back to the defaults
  for (const args of [['2M', '300'], ['2M', '300', '--overcommit', '64'], ['1G', '8'], ['2M', '256', '--overcommit', '128'], ['1G', '2']]) {
    const r = await bufctlHere(d.socket, 'hugepages', 'set', ...args);
    t.equal(r.code, 0, `hugepages set ${args.join(' ')}: ${r.stderr}`);
  }
  // then every 2 MiB hugepage moved below 4 GiB (the worst case for the camera's high buffer):
  // 1 GiB pages fill the Normal zone while the 2 MiB pool is rebuilt
  for (const args of [['2M', '0'], ['1G', '8'], ['2M', '256'], ['1G', '2']]) t.equal((await bufctlHere(d.socket, 'hugepages', 'set', ...args)).code, 0);
  const probe = await connect({ socket: d.socket, name: 'probe' });
  const unplaced = await probe.alloc({ pool: 'huge', size: 1 << 20 });
  await probe.disconnect();
  t.ok(unplaced.segments[0]!.addr < FOUR_GIB, `a huge buffer not asked to be placed lands below 4 GiB now (0x${unplaced.segments[0]!.addr.toString(16)})`);
  await demo('with every 2 MiB hugepage below 4 GiB');
  t.same(leakLogs(d), [], 'no leak logged');
});

t.test('a failed capture step says where the buffers landed', async (t) => {
  const buf = (o: Partial<Parameters<typeof captureFailures>[0]>) => ({ buffer: 3, pool: 'huge', addr: 0x2_0000_0000, end: 0x2_0010_0000, bounced: 1 << 20, ok: true, got: 'aaaa', wrote: 'aaaa', ...o });
  const low = buf({ buffer: 2, pool: 'dma32', addr: 0x8400_0000, end: 0x8410_0000, bounced: 0 });
  t.same(captureFailures(low, buf({})), [], 'low below and not bounced, high above and bounced: no failure');
  t.same(captureFailures(low, buf({ addr: 0x8420_0000, end: 0x8430_0000, bounced: 0 })), ['the high buffer #3 landed at 0x84200000 (below 4 GiB, pool huge), so nothing was bounced']);
  t.same(captureFailures(low, buf({ bounced: 0 })), ['the high buffer #3 at 0x200000000 (above 4 GiB) was not bounced for the 32-bit capture device']);
  t.same(captureFailures({ ...low, bounced: 4096 }, buf({})), ['the low buffer #2 at 0x84000000 (below 4 GiB) was bounced (4096 bytes) although the device reaches it']);
  t.same(captureFailures(low, buf({ ok: false, got: 'bbbb' })), ['the frame captured into the high buffer #3 read back as bbbb, not aaaa']);
});

t.test('without native system calls the demo says so and takes the device path', async (t) => {
  const r = await runNode([DEMO], { timeoutMs: 60_000, env: { BUFFERD_NO_NATIVE: '1' } });
  t.equal(r.code, 0, `exit code 0\n${r.stdout}\n${r.stderr}`);
  t.match(r.stdout, /\[decoder\] +cannot map here \(.+\); using the device path instead/);
  t.match(r.stdout, /decoded a frame into it: 1 MiB by DMA, checksum \w{12}/);
  t.notMatch(r.stdout, /read-only mapping/);
  t.match(r.stdout, /demo finished: every step did what it should\./);
});

t.test('the demo fails clearly when the daemon cannot be reached', async (t) => {
  const dir = tempDir(t);
  const r = await runNode([DEMO, '--socket', join(dir, 'nobody.sock')], { timeoutMs: 30_000 });
  t.equal(r.code, 1);
  t.match(r.stdout, /demo FAILED: .*(cannot connect|ENOENT|exited)/);
});

t.test('demo --help and a bad option', async (t) => {
  const [h, b] = await Promise.all([runNode([DEMO, '--help']), runNode([DEMO, '--bogus'])]);
  t.equal(h.code, 0);
  t.match(h.stdout, /Usage: npm run demo/);
  t.equal(b.code, 2);
  t.match(b.stderr, /bogus/);
});
