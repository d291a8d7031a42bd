/**
 * `npm run demo`: the seed pipeline as separate processes, against a daemon
 * it starts or one already running (--socket).
 */
import t from 'tap';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { runNode, startDaemon, ROOT, tempDir } from '../helpers/daemon.js';
import { client } from '../helpers/drivers.js';
import { system } from '../../client/index.js';

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
  /demo finished: every step did what it should\./,
];

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

t.test('the demo runs against a running daemon with --socket and leaves it serving', async (t) => {
  const d = await startDaemon(t);
  const watcher = await client(t, d.socket, 'watcher');
  const r = await runNode([DEMO, '--socket', d.socket], { timeoutMs: 60_000 });
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, `using the running bufferd at ${d.socket}`);
  for (const re of KEY_LINES) t.match(r.stdout, re);
  const st = await watcher.status();
  t.equal(st.buffers.live, 0, 'the demo clients are gone and their buffers freed');
  t.same(st.clients.map((c) => c.name), ['watcher']);
  t.ok(st.coherency.violations.total >= 1, 'the forgotten sync was recorded by the daemon');
  t.equal(d.proc.exitCode, null, 'the daemon still runs');
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
  const h = await runNode([DEMO, '--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /Usage: npm run demo/);
  const b = await runNode([DEMO, '--bogus']);
  t.equal(b.code, 2);
  t.match(b.stderr, /bogus/);
});
