/**
 * Export tokens end to end: single use, expiry releasing the in-flight
 * reference, indistinguishable failures, tokens outliving their exporter,
 * and their size.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient, rejection, pattern, sha256, poll, type Line } from '../helpers/procs.js';
import { connect, type BufferClient, type HandleInfo, type Status } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

async function anon(t: { teardown(fn: () => unknown): void }, socket: string, name?: string): Promise<BufferClient> {
  const c = await connect(name === undefined ? { socket, useCookie: false } : { socket, name, useCookie: false });
  t.teardown(() => c.disconnect());
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const poolOf = (st: Status, name: string) => st.pools.find((p) => p.name === name)!;

t.test('a token is single use', async (t) => {
  const d = await startDaemon(t);
  const a = await anon(t, d.socket, 'a');
  const b = await anon(t, d.socket, 'b');
  const c = await anon(t, d.socket, 'c');
  const x = await a.alloc({ pool: 'default', size: 1000 });
  const ex = await a.export(x.handle);
  t.equal(ex.expiresInMs, 30_000, 'default lifetime 30 s');
  t.same(ex.rights, ['read', 'write', 'share'], "default rights: the handle's");
  let st = await a.status();
  t.match(st.buffers, { live: 1, tokensInFlight: 1, tokensIssued: 1, tokensImported: 0 });
  const imp = await b.import(ex.token);
  t.equal(imp.buffer, x.buffer);
  st = await a.status();
  t.match(st.buffers, { tokensInFlight: 0, tokensImported: 1 });
  for (const [who, cl] of [['the importer', b], ['a third client', c], ['the exporter', a]] as const) {
    const e = await rejection(cl.import(ex.token));
    t.equal(e.code, 'ENOENT', `second import by ${who}`);
  }
  t.same((await b.info(imp.handle)).refs, { handles: 2, inflight: 0, registrations: 0, mappings: 0 }, 'the failed imports added nothing');
  // two tokens for one handle are two references
  const e1 = await a.export(x.handle);
  const e2 = await a.export(x.handle);
  t.not(e1.token, e2.token);
  t.equal((await a.info(x.handle)).refs.inflight, 2);
  await c.import(e2.token);
  await c.import(e1.token);
  t.same((await a.info(x.handle)).refs, { handles: 4, inflight: 0, registrations: 0, mappings: 0 });
});

t.test('expiry releases the reference: the buffer is freed without any import', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, pools: DEFAULT_MACHINE.pools.map((p) => ({ ...p, dirtyDecayMs: 0 })) } });
  const a = await anon(t, d.socket, 'exporter');
  const obs = await anon(t, d.socket, 'watch');
  const base = await obs.status();
  const x = await a.alloc({ pool: 'huge', size: 3 << 20 });
  const ex = await a.export(x.handle, { ttlMs: 300 });
  t.equal(ex.expiresInMs, 300);
  const t0 = Date.now();
  await a.close(x.handle);
  let st = await obs.status();
  t.match(st.buffers, { live: 1, tokensInFlight: 1 }, 'the exporter closed its handle: the token holds the buffer');
  t.equal(poolOf(st, 'huge').buffers, 1);
  await sleep(100);
  st = await obs.status();
  t.equal(st.buffers.live, 1, 'still alive before the token expires');
  st = await poll(
    () => obs.status(),
    (s) => s.buffers.live === 0,
    3000,
    10,
  );
  const freedAfter = Date.now() - t0;
  t.equal(st.buffers.live, 0, `freed at expiry, nobody imported (after ${freedAfter} ms)`);
  t.ok(freedAfter >= 250, 'not before the lifetime');
  t.ok(freedAfter < 1500, 'soon after it');
  t.match(st.buffers, { tokensInFlight: 0, tokensExpired: 1, tokensImported: 0 });
  t.same(
    { ...poolOf(st, 'huge'), nmalloc: 0, ndalloc: 0 },
    { ...poolOf(base, 'huge'), nmalloc: 0, ndalloc: 0 },
    'the pool is as before',
  );
  t.same(st.hugepages, base.hugepages);
  const e = await rejection(obs.import(ex.token));
  t.equal(e.code, 'ENOENT', 'an expired token cannot be imported');
});

t.test(
  "a chunk emptied by a token's expiry decays on time",
  async (t) => {
    const d = await startDaemon(t, {
      config: { ...DEFAULT_MACHINE, pools: DEFAULT_MACHINE.pools.map((p) => ({ ...p, dirtyDecayMs: p.name === 'default' ? 100 : 0 })) },
    });
    const a = await anon(t, d.socket, 'exporter');
    const obs = await anon(t, d.socket, 'watch');
    const x = await a.alloc({ pool: 'default', size: 5000 });
    await a.export(x.handle, { ttlMs: 100 });
    await a.close(x.handle);
    // token expires at ~100 ms, its chunk is dirty from then and due at ~200 ms
    await sleep(800);
    const st = await obs.status();
    t.equal(st.buffers.live, 0, 'the token expired');
    t.equal(poolOf(st, 'default').dirty, 0, 'the empty chunk was purged after dirtyDecayMs');
  },
);

t.test('unknown, used and expired tokens get the same answer', async (t) => {
  const d = await startDaemon(t);
  const a = await anon(t, d.socket, 'a');
  const b = await anon(t, d.socket, 'b');
  const x = await a.alloc({ pool: 'default', size: 10 });
  const used = (await a.export(x.handle)).token;
  await b.import(used);
  const expired = (await a.export(x.handle, { ttlMs: 1 })).token;
  await sleep(30);
  const swept = (await a.export(x.handle, { ttlMs: 50 })).token;
  await sleep(200); // the expiry timer has run for this one
  const unknown = 'Zm9yZ2VkLXRva2VuLW5vdC1pc3N1ZWQx'; // 32 characters, never issued
  const tampered = used.slice(0, -1) + (used.endsWith('A') ? 'B' : 'A');
  const answers = [];
  for (const tok of [unknown, used, expired, swept, tampered, 'x']) {
    const e = await rejection(b.import(tok));
    answers.push({ code: e.code, message: e.message, details: e.details });
  }
  t.equal(answers[0]!.code, 'ENOENT');
  for (const [i, what] of ['used', 'expired', 'expired and swept', 'tampered', 'short'].entries()) {
    t.same(answers[i + 1], answers[0], `${what} answers as unknown`);
  }
  t.match((await b.status()).buffers, { tokensExpired: 2, tokensInFlight: 0 });
});

t.test("a token outlives its exporter's connection and process", async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, pools: DEFAULT_MACHINE.pools.map((p) => ({ ...p, dirtyDecayMs: 0 })) } });
  const obs = await anon(t, d.socket, 'watch');
  const base = await obs.status();
  const importer = await spawnClient(t, d.socket, 'importer');
  for (const how of ['disconnect', 'SIGKILL'] as const) {
    const exporter = await spawnClient(t, d.socket, `exporter-${how}`);
    const size = 50_000;
    const seed = how === 'SIGKILL' ? 2 : 1;
    const a = await exporter.call<HandleInfo>('alloc', { pool: 'default', size });
    await exporter.cmd('fill', { handle: a.handle, length: size, seed });
    const tok = await exporter.call<{ token: string }>('export', a.handle, { rights: ['read'], ttlMs: 10_000 });
    if (how === 'disconnect') await exporter.cmd('exit');
    else await exporter.kill('SIGKILL');
    const st = await poll(
      () => obs.status(),
      (s) => !s.clients.some((c) => c.name === `exporter-${how}`),
    );
    t.notOk(st.clients.some((c) => c.name === `exporter-${how}`), `the exporter is gone (${how})`);
    t.match(st.buffers, { live: 1, tokensInFlight: 1 }, 'the token still holds the buffer');
    const imp = await importer.call<HandleInfo>('import', tok.token);
    t.match(imp, { buffer: a.buffer, rights: ['read'], creator: exporter.id, holders: 1 });
    const v = await importer.cmd<Line>('verify', { handle: imp.handle, length: size, seed });
    t.equal(v['sha256'], sha256(pattern(size, seed)), `contents intact after the exporter's ${how}`);
    await importer.call('close', imp.handle);
    const after = await obs.status();
    t.equal(after.buffers.live, 0);
    t.same(
      { ...poolOf(after, 'default'), nmalloc: 0, ndalloc: 0, purges: 0 },
      { ...poolOf(base, 'default'), nmalloc: 0, ndalloc: 0, purges: 0 },
      "the dead exporter's arena went with its last buffer",
    );
  }
  // an unused token of a dead exporter expires and frees its buffer
  const exporter = await spawnClient(t, d.socket, 'short-lived');
  const a = await exporter.call<HandleInfo>('alloc', { pool: 'huge', size: 100 });
  await exporter.call('export', a.handle, { ttlMs: 200 });
  await exporter.kill('SIGKILL');
  const st = await poll(
    () => obs.status(),
    (s) => s.buffers.live === 0 && !s.clients.some((c) => c.name === 'short-lived'),
    3000,
  );
  t.equal(st.buffers.live, 0, 'expired with nobody left to import it');
  t.same(
    { ...poolOf(st, 'huge'), nmalloc: 0, ndalloc: 0, purges: 0 },
    { ...poolOf(base, 'huge'), nmalloc: 0, ndalloc: 0, purges: 0 },
    'and its arena is gone',
  );
});

t.test('tokens carry at least 128 random bits', async (t) => {
  const d = await startDaemon(t);
  const a = await anon(t, d.socket);
  const x = await a.alloc({ pool: 'default', size: 10 });
  const tokens = await Promise.all(Array.from({ length: 200 }, async () => (await a.export(x.handle, { ttlMs: 60_000 })).token));
  t.same(
    tokens.filter((tok) => !/^[A-Za-z0-9_-]{32}$/.test(tok)),
    [],
    'every token is 32 base64url characters',
  );
  const seen = new Set(tokens);
  t.equal(seen.size, 200, 'all different');
  // 32 base64url characters = 24 bytes = 192 bits
  t.ok(Buffer.from([...seen][0]!, 'base64url').length * 8 >= 128);
  for (const ttlMs of [0, 24 * 3600 * 1000 + 1]) t.equal((await rejection(a.export(x.handle, { ttlMs }))).code, 'EINVAL', `ttlMs ${ttlMs}`);
  t.equal((await a.export(x.handle, { ttlMs: 24 * 3600 * 1000 })).expiresInMs, 86_400_000, 'up to a day');
});
