/**
 * bufctl as a separate process: human and JSON output, exit codes.
 */
import t from 'tap';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startDaemon, bufctl, tempDir, runNode, BUFCTL } from '../helpers/daemon.js';
import { encodeFrame, FrameReader } from '../../protocol/frame.js';
import { decodeValue } from '../../protocol/codec.js';
import { connect } from '../../client/index.js';

t.test('bufctl status: tables and JSON', async (t) => {
  const d = await startDaemon(t);
  const app = await connect({ socket: d.socket, name: 'viewer' });
  t.teardown(() => app.disconnect());
  const human = await bufctl(d.socket, 'status');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /bufferd \d+\.\d+\.\d+/);
  t.match(human.stdout, /REGION\s+KIND\s+BASE\s+SIZE\s+FREE/);
  t.match(human.stdout, /dram\s+dram\s+0x80000000\s+8 GiB/);
  t.match(human.stdout, /viewer/);
  const js = await bufctl(d.socket, 'status', '--json');
  t.equal(js.code, 0);
  const st = JSON.parse(js.stdout) as Record<string, unknown>;
  for (const k of ['version', 'uptimeMs', 'memory', 'hugepages', 'pools', 'clients', 'drivers']) t.ok(k in st, k);
  t.ok((st['clients'] as { name: string }[]).some((c) => c.name === 'viewer'));
  // the socket can come from the environment
  const viaEnv = await runNode([BUFCTL, 'status', '--json'], { env: { BUFFERD_SOCKET: d.socket } });
  t.equal(viaEnv.code, 0);
  t.equal((JSON.parse(viaEnv.stdout) as { socket: string }).socket, d.socket);
});

t.test('bufctl usage errors exit 2', async (t) => {
  for (const args of [[], ['frobnicate'], ['status', '--bogus'], ['status', 'extra']]) {
    const r = await bufctl('/nonexistent.sock', ...args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, 'bufctl');
  }
  const h = await bufctl(null, '--help');
  t.equal(h.code, 0);
  t.match(h.stdout, 'Usage: bufctl');
  t.match(h.stdout, 'Exit codes');
  const sh = await bufctl(null, 'status', '--help');
  t.equal(sh.code, 0);
  t.match(sh.stdout, 'status [--pool NAME] [--json]');
  const hp = await bufctl(null, 'help');
  t.equal(hp.code, 0);
});

t.test('bufctl cannot connect: exit 3 naming the socket and how to start the daemon', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'missing.sock');
  const r = await bufctl(path, 'status');
  t.equal(r.code, 3);
  t.match(r.stderr, path);
  t.match(r.stderr, 'npx bufferd');
});

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
  const j = await bufctl(path, 'status', '--json');
  t.equal(j.code, 1);
  t.same(JSON.parse(j.stdout), { error: { code: 'EPERM', message: 'status needs capability status' } });
});

t.test('bufctl status --pool shows the arena and bin tables', async (t) => {
  const d = await startDaemon(t);
  const c = await connect({ socket: d.socket, name: 'small' });
  t.teardown(() => c.disconnect());
  for (const size of [8, 100, 100, 5000]) await c.alloc({ pool: 'default', size });
  const r = await bufctl(d.socket, 'status', '--pool', 'default');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, 'Pool default: writeback, 4 KiB pages');
  t.match(r.stdout, /ARENA\s+OWNER\s+LIVE\s+ALLOCATED/);
  t.match(r.stdout, new RegExp(`client ${c.id}\\s+4`));
  t.match(r.stdout, /SIZE\s+IND\s+SLAB\s+REGS\s+CURREGS\s+CURSLABS\s+NONFULL/);
  t.match(r.stdout, /112\s+7\s+28 KiB\s+256\s+2\s+1\s+1/);
  const j = JSON.parse((await bufctl(d.socket, 'status', '--pool', 'default', '--json')).stdout) as { bins: { size: number; curregs: number }[]; arenas: unknown[] };
  t.same(j.bins.map((b) => [b.size, b.curregs]), [[8, 1], [112, 2], [5120, 1]]);
  t.equal(j.arenas.length, 1);
  // ACT/ALLOC (fragmentation) means nothing for a pool that holds nothing: '-', not 1.00
  const [pools, empty] = await Promise.all([bufctl(d.socket, 'pools'), bufctl(d.socket, 'status', '--pool', 'uncached')]);
  const poolRow = (name: string) => pools.stdout.split('\n').find((l) => l.startsWith(`  ${name} `)) ?? '';
  t.match(pools.stdout, /ACT\/ALLOC\s+CONVERSIONS/);
  t.match(poolRow('default'), /\s\d\.\d\d\s+\d+$/, 'a pool in use: its ratio');
  t.match(poolRow('uncached'), /\s0 B\s+-\s+\d+$/, 'an empty pool: -');
  t.match(empty.stdout, 'fragmentation (active/allocated) -  buffers 0');
  const bad = await bufctl(d.socket, 'status', '--pool', 'nosuch');
  t.equal(bad.code, 1);
  t.match(bad.stderr, "ENOENT: no pool named 'nosuch'");
});
