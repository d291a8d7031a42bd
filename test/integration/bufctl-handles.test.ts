/**
 * bufctl's views of handles: `buffers` (every buffer with its holders by
 * name, for the admin it is through the cookie; filters by client and pool;
 * JSON) and `clients` (principal, handles, bytes, quota, capabilities), and
 * their usage errors.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient } from '../helpers/procs.js';
import { connect, type BufferClient, type BufferListing, type ClientStatus, type HandleInfo } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { bufctlHere } from '../helpers/bufctl.js';

const CAM = 'camera-token-secret-0123456789';
const CONFIG = {
  ...DEFAULT_MACHINE,
  auth: { ...DEFAULT_MACHINE.auth, tokens: [{ name: 'camera', secret: CAM, capabilities: ['alloc:writecombine'], maxBytes: '16M' }] },
};
const MiB = 2 ** 20;

async function client(t: { teardown(fn: () => unknown): void }, socket: string, name: string, token?: string): Promise<BufferClient> {
  const c = await connect(token === undefined ? { socket, name, useCookie: false, accept: 'any' } : { socket, name, token, accept: 'any' });
  t.teardown(() => c.disconnect());
  return c;
}

// token lifetimes print as whole seconds left, 1 up to the ttl (however slow the machine, as long as the token lives)

/** The table row of a buffer id (columns are two spaces apart; not the totals line, "  3 buffers, ..."). */
const row = (out: string, buffer: number) => out.split('\n').find((l) => new RegExp(`^\\s+${buffer}\\s{2,}`).test(l));

t.test('bufctl buffers: every buffer and its holders by name; --client, --pool, --json', async (t) => {
  const d = await startDaemon(t, { config: CONFIG });
  const alpha = await client(t, d.socket, 'alpha');
  const beta = await spawnClient(t, d.socket, 'beta'); // another process
  const a = await alpha.alloc({ pool: 'default', size: 10_000 });
  const b = await alpha.alloc({ pool: 'huge', size: 3 * MiB });
  const c = await beta.call<HandleInfo>('alloc', { pool: 'dma32', size: 100 });
  const reg = await beta.call<{ deviceAddress: number }>('register', c.handle, 'nic');
  await alpha.send(a.handle, 'beta', { rights: ['read'] });
  await alpha.dup(a.handle);
  const ex = await alpha.export(b.handle);
  t.ok(ex.token);

  const human = await bufctlHere(d.socket, 'buffers');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /BUFFER\s+POOL\s+CACHE\s+SIZE\s+USIZE\s+KIND\s+CREATOR\s+HELD BY\s+DRIVERS\s+MAPS/);
  t.match(row(human.stdout, a.buffer), new RegExp(`default\\s+writeback\\s+9.77 KiB\\s+10 KiB\\s+small\\s+${alpha.id}\\s+alpha×2 beta×1\\s+-\\s+0$`));
  t.match(
    row(human.stdout, b.buffer),
    new RegExp(`huge\\s+writeback\\s+3 MiB\\s+4 MiB\\s+direct\\s+${alpha.id}\\s+alpha×1 \\+ token from alpha, expires in ([12]?[0-9]|30) s\\s+-\\s+0$`),
    'an exported token shows who exported it and when it expires',
  );
  t.match(row(human.stdout, c.buffer), new RegExp(`dma32\\s+writeback\\s+100 B\\s+112 B\\s+small\\s+${beta.id}\\s+beta×1\\s+nic\\s+0$`), 'the drivers it is registered with');
  const lines = human.stdout.trimEnd().split('\n');
  t.equal(lines.length, 7, 'a header, three buffers, totals and a two-line legend');
  t.equal(lines[4], '  3 buffers, 3.01 MiB asked, 4.01 MiB usable; 5 handles, 1 token in flight, 1 driver registration, 0 mappings');
  t.match(lines[5], /^  HELD BY: clients×handles open on it, and export tokens not yet imported; DRIVERS: registered with/);
  t.match(lines[6], /^  SIZE: bytes asked; USIZE: usable bytes .*MAPS: CPU mappings$/);

  const js = await bufctlHere(d.socket, 'buffers', '--json');
  t.equal(js.code, 0);
  const all = JSON.parse(js.stdout) as BufferListing[];
  t.same(
    all.map((x) => x.buffer),
    [a.buffer, b.buffer, c.buffer],
  );
  t.same(all[0], {
    buffer: a.buffer,
    pool: 'default',
    cache: 'writeback',
    size: 10_000,
    usize: 10_240,
    kind: 'small',
    creator: alpha.id,
    holders: [
      { client: alpha.id, name: 'alpha', handles: 2 },
      { client: beta.id, name: 'beta', handles: 1 },
    ],
    refs: { handles: 3, inflight: 0, registrations: 0, mappings: 0 },
    registrations: [],
    tokens: [],
  });
  t.match(all[1], { buffer: b.buffer, refs: { inflight: 1 }, tokens: [{ from: { id: alpha.id, name: 'alpha' }, rights: ['read', 'write', 'share'], expiresInMs: Number }] });
  t.same(all[2]!.registrations, [{ driver: 'nic', deviceAddress: reg.deviceAddress, registrant: beta.id, bounced: 0, direction: 'bidirectional' }], 'drivers with their device addresses');

  const byClient = async (...args: string[]) => {
    const r = await bufctlHere(d.socket, 'buffers', '--json', ...args);
    t.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as BufferListing[]).map((x) => x.buffer);
  };
  const [ofBeta, ofAlpha, ofNobody, ofHuge, both0, both1, filtered, none] = await Promise.all([
    byClient('--client', String(beta.id)),
    byClient('--client', String(alpha.id)),
    byClient('--client', '99999'),
    byClient('--pool', 'huge'),
    byClient('--pool', 'dma32', '--client', String(alpha.id)),
    byClient('--pool', 'dma32', '--client', String(beta.id)),
    bufctlHere(d.socket, 'buffers', '--client', String(beta.id)),
    bufctlHere(d.socket, 'buffers', '--pool', 'giant'),
  ]);
  t.same(ofBeta, [a.buffer, c.buffer], '--client: what that client holds');
  t.same(ofAlpha, [a.buffer, b.buffer]);
  t.same(ofNobody, [], 'an unknown client holds nothing');
  t.same(ofHuge, [b.buffer], '--pool');
  t.same(both0, [], 'both filters');
  t.same(both1, [c.buffer]);
  t.notOk(row(filtered.stdout, b.buffer), 'the table is filtered too');
  t.ok(row(filtered.stdout, c.buffer));
  t.equal(none.code, 0);
  t.match(none.stdout, '(none)');

  // the JSON is what the protocol answers an admin
  const admin = await connect({ socket: d.socket, name: 'admin', admin: true });
  t.teardown(() => admin.disconnect());
  t.equal(admin.session.principal, 'cookie');
  const timeless = (l: BufferListing[]) => l.map((b) => ({ ...b, tokens: b.tokens.map((x) => ({ ...x, expiresInMs: 0 })) }));
  t.same(timeless((await admin.buffers()).buffers), timeless(all));
});

t.test('bufctl buffers: a buffer only a token holds says who exported it and when the token expires; counts in the singular', async (t) => {
  const d = await startDaemon(t);
  const alpha = await client(t, d.socket, 'alpha');
  const h = await alpha.alloc({ pool: 'default', size: 4096 });
  await alpha.export(h.handle, { ttlMs: 60_000 });
  await alpha.close(h.handle);
  const [r, st] = await Promise.all([bufctlHere(d.socket, 'buffers'), bufctlHere(d.socket, 'status')]);
  t.equal(r.code, 0, r.stderr);
  t.match(row(r.stdout, h.buffer), /\s+in flight: token from alpha, expires in ([1-9]|[1-5][0-9]|60) s\s+-\s+0$/);
  t.match(r.stdout, /\n  1 buffer, 4 KiB asked, 4 KiB usable; 0 handles, 1 token in flight, 0 driver registrations, 0 mappings\n/);
  t.match(st.stdout, 'Clients (1 live buffer, 1 token in flight)');
  t.notMatch(st.stdout, /\b1 [a-z]+s\b/, 'no "1 buffers" anywhere in status');
});

t.test('bufctl buffers without the cookie shows only what that client holds: nothing', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, auth: { ...DEFAULT_MACHINE.auth, cookie: false } } });
  const alpha = await client(t, d.socket, 'alpha');
  await alpha.alloc({ pool: 'default', size: 10 });
  const r = await bufctlHere(d.socket, 'buffers', '--json');
  t.equal(r.code, 0);
  t.same(JSON.parse(r.stdout), [], 'an anonymous bufctl holds no buffers');
  const h = await bufctlHere(d.socket, 'buffers');
  t.match(h.stdout, '(none)');
});

t.test('bufctl clients: principal, handles, bytes, quota, capabilities', async (t) => {
  const d = await startDaemon(t, { config: CONFIG });
  const alpha = await client(t, d.socket, 'alpha');
  const cam = await client(t, d.socket, 'cam', CAM);
  await alpha.alloc({ pool: 'default', size: 10_000 });
  await alpha.dup(0);
  await cam.alloc({ pool: 'wc', size: 3 * MiB });
  const proc = await spawnClient(t, d.socket, 'proc');
  await proc.call('alloc', { pool: 'huge', size: 100 });

  const human = await bufctlHere(d.socket, 'clients');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /ID\s+NAME\s+PID\s+UID\s+GID\s+PRINCIPAL\s+HANDLES\s+BYTES\s+CONNECTED\s+CAPABILITIES\n/);
  const line = (name: string) => human.stdout.split('\n').find((l) => new RegExp(`^\\s+\\d+\\s+${name}\\s`).test(l));
  // BYTES is the client's own (alpha and proc are both anonymous: each shows only what it allocated)
  t.match(line('alpha'), /alpha\s+\d+\s+\d+\s+\d+\s+anonymous\s+2\s+10 KiB\s+\d+s\s+alloc:uncached,alloc:writecombine,driver$/);
  t.match(line('cam'), /cam\s+\d+\s+\d+\s+\d+\s+camera\s+1\s+4 MiB\s+\d+s\s+alloc:writecombine$/);
  t.match(line('proc'), /proc\s+\d+\s+\d+\s+\d+\s+anonymous\s+1\s+112 B\s+\d+s\s/);
  t.match(line('bufctl:\\d+'), /bufctl:\d+\s+\d+\s+\d+\s+\d+\s+cookie\s+0\s+0 B\s+\d+s\s+admin$/, 'bufctl itself, admin through the cookie');
  // the principals' quota use, once each and labelled as such
  t.match(human.stdout, "\n  Principals (each quota is shared by all the principal's clients)\n");
  t.match(human.stdout, /PRINCIPAL\s+CLIENTS\s+BYTES\s+QUOTA\s+USED\n/);
  const principal = (name: string) => human.stdout.split('\n').filter((l) => new RegExp(`^\\s+${name}\\s+\\d+\\s`).test(l));
  t.same(principal('anonymous').map((l) => l.trim().split(/\s{2,}/)), [['anonymous', '2', '10.1 KiB', 'none', '-']], 'alpha and proc together, one row');
  t.same(principal('camera').map((l) => l.trim().split(/\s{2,}/)), [['camera', '1', '4 MiB', '16 MiB', '25%']]);
  t.same(principal('cookie').map((l) => l.trim().split(/\s{2,}/)), [['cookie', '1', '0 B', 'none', '-']]);

  const js = await bufctlHere(d.socket, 'clients', '--json');
  t.equal(js.code, 0);
  const cs = JSON.parse(js.stdout) as ClientStatus[];
  const by = (n: string) => cs.find((c) => c.name === n)!;
  t.match(by('alpha'), { id: alpha.id, principal: 'anonymous', handles: 2, bytes: 10_240, principalBytes: 10_352, maxBytes: null, capabilities: ['alloc:uncached', 'alloc:writecombine', 'driver'] });
  t.match(by('cam'), { id: cam.id, principal: 'camera', handles: 1, bytes: 4 * MiB, principalBytes: 4 * MiB, maxBytes: 16 * MiB, capabilities: ['alloc:writecombine'] });
  t.match(by('proc'), { id: proc.id, principal: 'anonymous', handles: 1, bytes: 112, principalBytes: 10_352 });
  t.ok(cs.some((c) => /^bufctl:\d+$/.test(c.name ?? '') && c.principal === 'cookie'));
  t.ok(cs.every((c) => typeof c.connectedMs === 'number'));
});

t.test('bufctl buffers/clients usage errors exit 2', async (t) => {
  const d = await startDaemon(t);
  const cases = [
    ['buffers', '--client', 'abc'],
    ['buffers', '--client=-1'],
    ['buffers', '--client', '1.5'],
    ['buffers', '--client'],
    ['buffers', 'extra'],
    ['buffers', '--overcommit', '3'],
    ['clients', 'extra'],
    ['clients', '--pool', 'default'],
    ['clients', '--client', '1'],
  ];
  const results = await Promise.all(cases.map((args) => bufctlHere(d.socket, ...args)));
  for (const [i, r] of results.entries()) {
    t.equal(r.code, 2, cases[i]!.join(' '));
    t.match(r.stderr, /^bufctl: /);
    t.equal(r.stdout, '', 'nothing on stdout');
  }
  const bad = await bufctlHere(d.socket, 'buffers', '--client', 'abc');
  t.match(bad.stderr, "--client 'abc' is not a client id");
  t.match(bad.stderr, 'Usage: bufctl buffers [--client ID] [--pool NAME] [--json]');
  const help = await bufctlHere(null, 'buffers', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, 'buffers [--client ID] [--pool NAME] [--json]');
});

t.test(
  'bufctl buffers --pool with a pool that does not exist: ENOENT, as status --pool',
  async (t) => {
    const d = await startDaemon(t);
    const st = await bufctlHere(d.socket, 'status', '--pool', 'no-such-pool');
    t.equal(st.code, 1, 'status --pool: the daemon answers ENOENT');
    const r = await bufctlHere(d.socket, 'buffers', '--pool', 'no-such-pool');
    t.equal(r.code, 1);
    t.match(r.stderr, 'ENOENT');
  },
);
