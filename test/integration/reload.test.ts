/**
 * Reloading the config file (SIGHUP, `bufctl reload`) without dropping
 * clients: runtime settings apply, structural ones are reported as needing
 * a restart, an invalid file changes nothing.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ROOT, type Daemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client, nextEvent, MiB, KiB } from '../helpers/drivers.js';
import { pattern, rejection } from '../helpers/procs.js';
import type { BufferClient } from '../../client/index.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A fresh copy of systemd/bufferd.json (the embedded default machine). */
const base = (): Json => JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Json;
const HUGE_2M = 2 * MiB;
const TOKEN = 'reload-test-token-0123456789';

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function start(t: Teardown, cfg: Json = base()): Promise<{ d: Daemon; file: string; write: (c: Json | string) => void }> {
  const d = await startDaemon(t, { config: cfg });
  const file = join(d.dir, 'config.json');
  return { d, file, write: (c) => writeFileSync(file, typeof c === 'string' ? c : JSON.stringify(c)) };
}

/** SIGHUP, then the next log line (after now) with this message. */
async function hup(d: Daemon, msg: string): Promise<Record<string, unknown>> {
  const from = d.logs.length;
  d.proc.kill('SIGHUP');
  return d.waitForLog((l) => l['msg'] === msg && d.logs.indexOf(l) >= from);
}

/** A client holding a 64 KiB buffer with known contents. */
async function holder(t: Teardown, socket: string) {
  const c = await client(t, socket, 'holder');
  const h = await c.alloc({ pool: 'default', size: 64 * KiB });
  const data = pattern(64 * KiB, 7);
  await c.write(h.handle, 0, data);
  return { c, h, data, intact: async () => (await c.read(h.handle, 0, data.length)).equals(data) };
}

const reloadJson = async (socket: string) => {
  const r = await bufctlHere(socket, 'reload', '--json');
  if (r.code !== 0) throw new Error(`bufctl reload failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { source: string; applied: string[]; ignored: string[] };
};

const hp2 = async (c: BufferClient) => (await c.status()).hugepages.find((h) => h.size === HUGE_2M)!;
const pool = async (c: BufferClient, name: string) => (await c.status()).pools.find((p) => p.name === name)!;

t.test('SIGHUP applies runtime settings without dropping a client', async (t) => {
  const { d, file, write } = await start(t);
  const H = await holder(t, d.socket);
  const watcher = await client(t, d.socket, 'watcher');
  const activity: Record<string, unknown>[] = [];
  watcher.on('activity', (ev) => activity.push(ev as unknown as Record<string, unknown>));
  await watcher.subscribe({ topics: ['alloc'] });
  await H.c.close((await H.c.alloc({ pool: 'default', size: 4096 })).handle);
  const sawOneByOne = async () => {
    for (let i = 0; i < 200 && !activity.some((e) => e['kind'] === 'alloc'); i++) await new Promise((r) => setTimeout(r, 10));
    return activity.some((e) => e['kind'] === 'alloc');
  };
  t.ok(await sawOneByOne(), 'allocRate 200: allocations are sent one by one');
  await t.rejects(client(t, d.socket, 'early', { token: TOKEN }), { code: 'EPERM' }, 'the token is unknown before the reload');

  const before = await H.c.status();
  t.equal(before.hugepages.find((h) => h.size === HUGE_2M)!.nr, 256);
  t.equal(before.coherency.mode, 'warn');

  const c = base();
  c['hugepages'][0].nr = 300;
  c['pools'][0].maxBytes = '1M';
  c['pools'][0].dirtyDecayMs = 2000;
  c['auth'].tokens = [{ name: 'reloaded', secret: TOKEN, capabilities: ['admin', 'alloc:uncached'] }];
  c['drivers'].push({ name: 'npu', description: 'added by a reload', constraints: { align: 4096, coherent: true, dmaMask: 64 } });
  c['coherency'] = { mode: 'strict' };
  c['events'] = { allocRate: 0 };
  // structural: need a restart
  c['memory'].regions[0].size = '512K';
  c['pools'].find((p: Json) => p['name'] === 'uncached').cache = 'writeback';
  write(c);
  const log = await hup(d, 'configuration reloaded');
  const applied = log['applied'] as string[];
  const ignored = log['ignored'] as string[];
  t.match(applied, [/hugepages 2 MiB: nr 256 → 300/], 'hugepages applied');
  for (const re of [/^pool 'default': maxBytes none → 1048576$/, /^pool 'default': dirtyDecayMs 10000 → 2000$/, /^capabilities and tokens \(1 token/, /^driver 'npu' added$/, /^coherency\.mode warn → strict$/, /^events\.allocRate 200 → 0$/]) {
    t.ok(applied.some((x) => re.test(x)), `applied: ${re}`);
  }
  t.equal(applied.length, 7, `exactly the seven changes: ${applied.join('; ')}`);
  t.same(ignored.sort(), ['memory regions (restart to change)', "pool 'uncached': cache (restart to change)"]);

  // each applied change is in force
  const st = await H.c.status();
  t.equal(st.hugepages.find((h) => h.size === HUGE_2M)!.nr, 300);
  const def = st.pools.find((p) => p.name === 'default')!;
  t.equal(def.maxBytes, MiB);
  t.equal(def.dirtyDecayMs, 2000);
  t.equal(st.drivers.find((x) => x.name === 'npu')?.kind, 'builtin');
  t.equal(st.coherency.mode, 'strict');
  t.equal(st.memory.regions.find((r) => r.name === 'tcm')!.size, 256 * KiB, 'region size unchanged');
  t.equal(st.pools.find((p) => p.name === 'uncached')!.cache, 'uncached', 'cache policy unchanged');
  const e = await rejection(H.c.alloc({ pool: 'default', size: 2 * MiB }));
  t.match(e.message, 'maxBytes', 'the new pool limit refuses 2 MiB');

  // the old client was not dropped, its buffer is intact
  t.ok(st.clients.some((x) => x.id === H.c.id));
  t.ok(await H.intact(), 'buffer contents survive the reload');
  t.ok(await H.c.ping());

  // a new client with the new token gets its capabilities
  const tok = await client(t, d.socket, 'with-token', { token: TOKEN });
  t.equal(tok.session.principal, 'reloaded');
  t.same([...tok.session.capabilities].sort(), ['admin', 'alloc:uncached']);
  t.ok(await tok.reload(), 'the token is admin: it may reload');

  // allocRate 0: allocations are only aggregated now
  activity.length = 0;
  await H.c.close((await H.c.alloc({ pool: 'default', size: 4096 })).handle);
  for (let i = 0; i < 200 && !activity.some((x) => x['kind'] === 'summary'); i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(activity.some((x) => x['kind'] === 'summary'), 'a summary arrives');
  t.notOk(activity.some((x) => x['kind'] === 'alloc' || x['kind'] === 'free'), 'no one-by-one events');

  // bufctl reload --json: nothing new to apply, the structural changes are still pending
  const again = await reloadJson(d.socket);
  t.equal(again.source, file);
  t.same(again.applied, [], 'a second reload of the same file changes nothing');
  t.same(again.ignored.sort(), ignored.sort());

  // bufctl reload (text) applies the next edit
  c['hugepages'][0].nr = 310;
  write(c);
  const txt = await bufctlHere(d.socket, 'reload');
  t.equal(txt.code, 0, txt.stderr);
  t.match(txt.stdout, `reloaded ${file}`);
  t.match(txt.stdout, /applied: hugepages 2 MiB: nr 300 → 310/);
  t.match(txt.stdout, /^  not applied: memory regions \(restart to change\)$/m);
  t.notMatch(txt.stdout, 'needs a restart: ', 'said once, not "needs a restart: ... (restart to change)"');
  t.equal((await hp2(H.c)).nr, 310);
  t.ok(await H.intact());
});

t.test('an invalid file is rejected whole and the daemon keeps serving', async (t) => {
  const { d, write } = await start(t);
  const H = await holder(t, d.socket);

  write('{ "memory": { "regions": [');
  const bad = await hup(d, 'reload rejected: the old configuration stays');
  t.match(bad['err'], 'is not valid JSON');
  let r = await bufctlHere(d.socket, 'reload');
  t.equal(r.code, 1);
  t.match(r.stderr, /EINVAL: reload rejected, the running configuration is unchanged: .*is not valid JSON/);

  // a schema violation next to a valid change: neither applies
  const c = base();
  c['hugepages'][0].nr = -1;
  c['coherency'] = { mode: 'strict' };
  c['pools'][0].maxBytes = '1M';
  write(c);
  const bad2 = await hup(d, 'reload rejected: the old configuration stays');
  t.match(bad2['err'], '/hugepages/0/nr');
  r = await bufctlHere(d.socket, 'reload');
  t.equal(r.code, 1);
  t.match(r.stderr, /EINVAL: .*\/hugepages\/0\/nr/);

  const st = await H.c.status();
  t.equal(st.coherency.mode, 'warn', 'coherency.mode unchanged');
  t.equal(st.hugepages.find((h) => h.size === HUGE_2M)!.nr, 256, 'hugepages unchanged');
  t.equal(st.pools.find((p) => p.name === 'default')!.maxBytes, null, 'pool limit unchanged');
  t.ok(st.clients.some((x) => x.id === H.c.id), 'the client is still connected');
  t.ok(await H.intact());
  t.ok(d.proc.exitCode === null, 'the daemon is running');

  // fixed: the next reload applies
  c['hugepages'][0].nr = 200;
  write(c);
  const ok = await reloadJson(d.socket);
  t.ok(ok.applied.includes('coherency.mode warn → strict'));
  t.equal((await hp2(H.c)).nr, 200);
  t.equal((await pool(H.c, 'default')).maxBytes, MiB);
});

t.test('a file failing semantic checks is rejected with EINVAL', async (t) => {
  const { d, write } = await start(t);
  const c = base();
  c['hugepages'][0].nr = 5000; // 5000 × 2 MiB > 8 GiB of dram
  write(c);
  const r = await bufctlHere(d.socket, 'reload');
  t.equal(r.code, 1);
  t.match(r.stderr, /EINVAL: reload rejected, the running configuration is unchanged: config \/hugepages\/0\/nr/);
  const bad = await hup(d, 'reload rejected: the old configuration stays');
  t.match(bad['err'], '/hugepages/0/nr');
});

t.test('a removed driver reports its registrations as leaks; a held one is not redefined', async (t) => {
  const { d, write } = await start(t);
  const H = await holder(t, d.socket);
  await H.c.register(H.h.handle, 'nic');
  t.equal((await H.c.status()).drivers.find((x) => x.name === 'nic')!.registrations, 1);

  const c = base();
  c['drivers'].find((x: Json) => x['name'] === 'nic').description = 'redefined';
  write(c);
  let r = await reloadJson(d.socket);
  t.same(r.applied, []);
  t.same(r.ignored, ["driver 'nic': 1 registration holds it; unregister it to redefine it"]);

  c['drivers'] = c['drivers'].filter((x: Json) => x['name'] !== 'nic');
  write(c);
  const leak = nextEvent<Record<string, unknown>>(H.c, 'leak');
  await H.c.subscribe({ topics: ['drivers'] });
  const removed = new Promise<Record<string, unknown>>((resolve) => {
    const on = (ev: Record<string, unknown>) => {
      if (ev['kind'] !== 'remove') return;
      H.c.off('activity', on);
      resolve(ev);
    };
    H.c.on('activity', on);
  });
  r = await reloadJson(d.socket);
  t.same(r.applied, ["driver 'nic' removed (1 registration reported as a leak)"]);
  const ev = await leak;
  t.equal(ev['driver'], 'nic');
  t.equal(ev['buffer'], H.h.buffer);
  t.match(await removed, { topic: 'drivers', kind: 'remove', driver: 'nic', leaks: 1, reload: true }, 'subscribers see the removal');
  const st = await H.c.status();
  t.notOk(st.drivers.some((x) => x.name === 'nic'), 'the driver is gone');
  t.equal(st.dma.leaks, 1);
  t.ok(await H.intact(), 'the buffer itself lives on');
  await t.rejects(H.c.register(H.h.handle, 'nic'), { code: 'ENOENT' }, 'no driver nic any more');
});

t.test('reload needs admin; without --config it reloads the embedded machine', async (t) => {
  const d = await startDaemon(t);
  const anon = await client(t, d.socket, 'anon', { useCookie: false });
  t.equal(anon.session.principal, 'anonymous');
  const e = await rejection(anon.reload());
  t.equal(e.code, 'EPERM');
  t.match(e.message, 'reload');
  const r = await reloadJson(d.socket);
  t.same(r, { source: '(embedded default machine)', applied: [], ignored: [] });
  await hup(d, 'configuration reloaded');
  t.equal((await hp2(anon)).nr, 256);
  t.ok(await anon.ping());
});
