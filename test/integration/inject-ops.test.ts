/**
 * Fault injection's ops, config and tools on a real daemon: the
 * `connection` point (the client library sees a normal disconnect; the
 * daemon releases what the client held as for a real one), admin-only ops
 * and bad input that changes nothing, a seeded probability that repeats
 * exactly, the config's faultInjection at start and on reload, and
 * `bufctl inject`.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ROOT } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { rejection, poll } from '../helpers/procs.js';
import { client, KiB } from '../helpers/drivers.js';
import { connect, type BufferClient, type BufferdError, type Status } from '../../client/index.js';
import { FaultInjector } from '../../daemon/lib/faultinject.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const base = (): Json => JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Json;

const pick = <T extends object>(o: T, keys: string[]) => Object.fromEntries(keys.map((k) => [k, (o as Record<string, unknown>)[k]]));
const counters = (st: Status) => ({
  pools: st.pools.map((p) => pick(p, ['name', 'requested', 'allocated', 'buffers', 'nmalloc', 'ndalloc'])),
  buffers: pick(st.buffers, ['live', 'tokensInFlight']),
  clients: st.clients.length,
});

t.test('connection: the client is dropped on its Nth request, seen as a normal disconnect, released as one', async (t) => {
  const d = await startDaemon(t);
  const admin = await client(t, d.socket, 'admin', { admin: true });
  const bystander = await client(t, d.socket, 'bystander');
  const gone = async (name: string) => poll(() => admin.status(), (st) => !st.clients.some((c) => c.name === name));

  await admin.faults.set('connection', { client: 'victim', nth: 2, times: 1 });
  const s0 = counters(await admin.status());
  const victim = await connect({ socket: d.socket, name: 'victim', useCookie: false });
  const closed = new Promise<BufferdError>((r) => victim.once('close', r));
  await victim.alloc({ pool: 'default', size: 64 * KiB });
  await bystander.ping();
  // pipelined: the 2nd request drops the connection, the 3rd is never run
  const [e, e3] = await Promise.all([rejection(victim.alloc({ pool: 'default', size: 64 * KiB })), rejection(victim.alloc({ pool: 'default', size: 64 * KiB }))]);
  t.equal(e.code, 'ECONNRESET', `the pending call rejects as on any lost connection: ${e.message}`);
  t.equal(e3.code, 'ECONNRESET', 'and the one pipelined after it');
  t.equal((await closed).code, 'ECONNRESET', "the client's close event");
  await gone('victim');
  const s1 = counters(await admin.status());

  // a real disconnect after the same work
  const real = await connect({ socket: d.socket, name: 'real', useCookie: false });
  await real.alloc({ pool: 'default', size: 64 * KiB });
  await real.disconnect();
  await gone('real');
  const s2 = counters(await admin.status());
  t.same(s1.buffers, s0.buffers, "the victim's buffer was freed");
  const nm = (s: typeof s0) => s.pools.find((p) => p.name === 'default') as { nmalloc: number; ndalloc: number; requested: number };
  t.same([nm(s1).nmalloc - nm(s0).nmalloc, nm(s1).ndalloc - nm(s0).ndalloc, nm(s1).requested - nm(s0).requested], [1, 1, 0], 'one alloc (the pipelined one never ran), one free');
  t.same([nm(s2).nmalloc - nm(s1).nmalloc, nm(s2).ndalloc - nm(s1).ndalloc, nm(s2).requested - nm(s1).requested], [1, 1, 0], 'the real disconnect: the same');
  t.same(s2.clients, s0.clients);
  t.match((await admin.faults.list()).armed, [{ point: 'connection', calls: 2, fired: 1, times: 0 }], "only the victim's requests counted");
  t.ok(await bystander.ping(), 'others never noticed');
  t.ok(d.logs.some((l) => l['msg'] === "fault injected at 'connection'" && l['client'] === 'victim'), 'logged (verbose)');
});

t.test('admin only; bad input is a typed error and changes nothing', async (t) => {
  const d = await startDaemon(t);
  const admin = await client(t, d.socket, 'admin', { admin: true });
  const anon = await client(t, d.socket, 'anon');
  for (const [what, p] of [
    ['inject.set', anon.faults.set('alloc')],
    ['inject.clear', anon.faults.clear()],
    ['inject.list', anon.faults.list()],
  ] as const) {
    t.match(await rejection(p), { code: 'EPERM', details: { capability: 'admin' } }, `${what}: EPERM`);
  }
  const bad: [Parameters<BufferClient['faults']['set']>, string, RegExp][] = [
    [['nope' as never], 'EINVAL', /point/],
    [['alloc', { nth: 0 }], 'EINVAL', /nth/],
    [['alloc', { times: 2 ** 40 }], 'EINVAL', /times/],
    [['alloc', { probability: 150 }], 'EINVAL', /probability/],
    [['alloc', { seed: -3 }], 'EINVAL', /seed/],
    [['alloc', { pool: 'nosuch' }], 'ENOENT', /no pool named 'nosuch'/],
  ];
  for (const [args, code, msg] of bad) {
    const e = await rejection(admin.faults.set(...args));
    t.equal(e.code, code, `${JSON.stringify(args)}: ${code}`);
    t.match(e.message, msg);
  }
  t.same((await admin.faults.list()).armed, [], 'nothing armed');
  t.same((await admin.status()).faults.total, 0);
  const l = await admin.faults.list();
  t.same(l.points.map((p) => p.point), ['alloc', 'hugepage', 'iova', 'bounce', 'register', 'token', 'connection'], 'every point, with its meaning');
  t.ok(l.points.every((p) => p.meaning.length > 10));
});

t.test('a seeded probability repeats exactly, and matches the injector', async (t) => {
  const d = await startDaemon(t);
  const admin = await client(t, d.socket, 'admin', { admin: true });
  const app = await client(t, d.socket, 'app');
  const run = async () => {
    await admin.faults.set('alloc', { probability: 40, seed: 42, client: 'app' });
    const failed: number[] = [];
    for (let i = 1; i <= 30; i++) {
      try {
        await app.close((await app.alloc({ pool: 'default', size: 100 })).handle);
      } catch (e) {
        if ((e as BufferdError).details?.['injected'] !== true) throw e;
        failed.push(i);
      }
    }
    return failed;
  };
  const first = await run();
  t.same(await run(), first, 'same seed, same calls fail');
  const f = new FaultInjector();
  f.arm('alloc', { probability: 40, seed: 42 });
  const want = Array.from({ length: 30 }, (_, i) => i + 1).filter(() => f.shouldFail('alloc'));
  t.same(first, want, `the calls the injector picks: ${want.join(', ')}`);
  t.ok(first.length > 3 && first.length < 25);
});

t.test('the config arms points at start; reload re-arms them, keeps inject.set ones, rejects a bad section', async (t) => {
  const cfg = base();
  cfg['faultInjection'] = { alloc: { times: 1, pool: 'default' } };
  const d = await startDaemon(t, { config: cfg });
  const file = join(d.dir, 'config.json');
  const admin = await client(t, d.socket, 'admin', { admin: true });
  const app = await client(t, d.socket, 'app');
  t.match(await rejection(app.alloc({ pool: 'default', size: 4096 })), { code: 'ENOMEM', details: { injected: true } }, 'armed by the file');
  t.ok(await app.alloc({ pool: 'default', size: 4096 }), 'times 1: once');
  await admin.faults.set('iova', { nth: 5 });

  cfg['faultInjection'] = { token: { nth: 2 } };
  writeFileSync(file, JSON.stringify(cfg));
  const r = await admin.reload();
  t.ok(r.applied.some((x) => x.startsWith('faultInjection: token armed afresh')), r.applied.join('; '));
  t.match((await admin.faults.list()).armed, [{ point: 'iova', source: 'op', nth: 5 }, { point: 'token', source: 'config', nth: 2 }], 'the file point replaced; the op point kept');

  for (const badSection of [{ alloc: { nth: 0 } }, { alloc: { pool: 'nosuch' } }, { nope: {} }]) {
    cfg['faultInjection'] = badSection;
    writeFileSync(file, JSON.stringify(cfg));
    const e = await rejection(admin.reload());
    t.equal(e.code, 'EINVAL', `${JSON.stringify(badSection)}: ${e.message}`);
    t.match(e.message, /faultInjection/);
  }
  t.equal((await admin.faults.list()).armed.length, 2, 'nothing changed');
  cfg['faultInjection'] = { token: { nth: 2 } };
  writeFileSync(file, JSON.stringify(cfg));
  const same = await admin.reload();
  t.notOk(same.applied.some((x) => x.startsWith('faultInjection')), 'an unchanged section is left alone');
});

t.test('bufctl inject: set, list, clear; usage errors before the daemon is asked', async (t) => {
  const d = await startDaemon(t);
  const set = await bufctlHere(d.socket, 'inject', 'set', 'alloc', '--nth', '3', '--times', '1', '--client', 'x', '--probability', '50', '--seed', '9');
  t.equal(set.code, 0, set.stderr);
  t.match(set.stdout, /armed:\n {2}alloc +nth 3, probability 50%, 1 left, client x, seed 9 \(op\): 0 calls, 0 failed/);
  const list = await bufctlHere(d.socket, 'inject');
  t.match(list.stdout, /^armed fault points:\n {2}alloc .*\ninjected since start: 0\n$/);
  const json = JSON.parse((await bufctlHere(d.socket, 'inject', 'list', '--json')).stdout);
  t.match(json, { armed: [{ point: 'alloc', nth: 3, times: 1, client: 'x', probability: 50, seed: 9 }], total: 0 });
  t.match((await bufctlHere(d.socket, 'status')).stdout, /\nFault injection: armed alloc \(0\/0 failed\); 0 failures injected since start; details: bufctl inject\n/, 'status says a point is armed');
  const clear = await bufctlHere(d.socket, 'inject', 'clear', 'alloc');
  t.equal(clear.stdout, 'cleared: alloc\n');
  t.equal((await bufctlHere(d.socket, 'inject', 'clear')).stdout, 'cleared: nothing was armed\n');
  t.notMatch((await bufctlHere(d.socket, 'status')).stdout, /Fault injection/, 'nothing armed, nothing injected: no line');
  for (const argv of [
    ['inject', 'set'],
    ['inject', 'set', 'allco'],
    ['inject', 'arm', 'alloc'],
    ['inject', 'list', '--nth', '2'],
    ['inject', 'set', 'alloc', '--probability', '200'],
    ['inject', 'set', 'alloc', '--nth', '0'],
  ]) {
    const r = await bufctlHere(d.socket, ...argv);
    t.equal(r.code, 2, `${argv.join(' ')}: usage error: ${r.stderr.split('\n')[0]}`);
  }
  t.match((await bufctlHere(d.socket, 'inject', 'set', 'allco')).stderr, /did you mean 'alloc'/);
});
