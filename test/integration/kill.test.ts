/**
 * A client process holding 1,000 handles is SIGKILLed in the middle of
 * pipelined work: the daemon releases everything it held (buffers, its
 * per-client arenas) and is back to its baseline, while another client
 * connected throughout keeps working.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { spawnFixture, pattern, poll } from '../helpers/procs.js';
import { connect, type Status } from '../../client/index.js';

/** Everything status shows of memory and pools, without history counters. */
const present = (st: Status) => ({
  memory: st.memory,
  hugepages: st.hugepages,
  pools: st.pools.map(({ nmalloc: _a, ndalloc: _b, purges: _c, conversions: _d, conversionCostUs: _e, ...rest }) => rest),
  buffers: { live: st.buffers.live, tokensInFlight: st.buffers.tokensInFlight },
});

t.test('SIGKILL a client holding 1,000 handles: back to the baseline, others unaffected', async (t) => {
  // the embedded default machine: empty chunks decay after 10 s, so only a
  // dead client's arena being dropped can bring the pools back in time
  const d = await startDaemon(t, { logLevel: 'debug' });
  const obs = await connect({ socket: d.socket, name: 'observer', useCookie: false });
  t.teardown(() => obs.disconnect());
  // the observer's own long-lived buffer: its arena chunk stays while it churns
  const keep = await obs.alloc({ pool: 'default', size: 1000 });
  await obs.write(keep.handle, 0, pattern(1000, 42));
  const shared = await obs.alloc({ pool: 'huge', size: 5000 });
  await obs.write(shared.handle, 0, pattern(5000, 7));
  const base = await obs.status();

  const hoarder = await spawnFixture(t, 'hoarder.mjs', [d.socket, 'hoarder', '1000'], { timeoutMs: 30_000 });
  t.equal(hoarder.ready['handles'], 1000);
  t.equal(hoarder.ready['maxHandle'], 999, 'numbers 0..999');
  const mid = await obs.status();
  const me = mid.clients.find((c) => c.name === 'hoarder')!;
  t.equal(me.handles, 1000, 'status counts its handles');
  t.equal(mid.buffers.live, base.buffers.live + 1000);
  const byPool = hoarder.ready['byPool'] as Record<string, number>;
  for (const [pool, n] of Object.entries(byPool)) {
    const p0 = base.pools.find((p) => p.name === pool)!;
    const p1 = mid.pools.find((p) => p.name === pool)!;
    t.equal(p1.buffers - p0.buffers, n, `${pool}: ${n} buffers`);
  }
  t.ok(mid.pools.filter((p) => p.arenas > 0).length >= 6, 'arenas in many pools');
  // the hoarder also holds a buffer of the observer's
  await obs.send(shared.handle, 'hoarder');
  t.match(await obs.info(shared.handle), { holders: 2, refs: { handles: 2 } });

  // the observer works all along: ping, alloc, write, read back, close
  let stop = false;
  let rounds = 0;
  const failures: string[] = [];
  const worker = (async () => {
    while (!stop) {
      try {
        await obs.ping();
        const b = await obs.alloc({ pool: 'default', size: 1000 });
        const data = pattern(1000, rounds);
        await obs.write(b.handle, 0, data);
        if (!(await obs.read(b.handle, 0, 1000)).equals(data)) failures.push(`round ${rounds}: bad data`);
        await obs.close(b.handle);
        rounds++;
      } catch (e) {
        failures.push(`round ${rounds}: ${(e as Error).message}`);
        return;
      }
    }
  })();

  hoarder.send({ cmd: 'churn' });
  await hoarder.wait((l) => l['churning'] === true, 'churning');
  await new Promise((r) => setTimeout(r, 100)); // requests in flight both ways
  const roundsBefore = rounds;
  const killedAt = Date.now();
  const ex = await hoarder.kill('SIGKILL');
  t.equal(ex.signal, 'SIGKILL');

  const st = await poll(
    () => obs.status(),
    (s) => !s.clients.some((c) => c.name === 'hoarder') && s.buffers.live === base.buffers.live,
    5000,
    10,
  );
  const took = Date.now() - killedAt;
  t.notOk(st.clients.some((c) => c.name === 'hoarder'), 'the dead client is gone');
  t.equal(st.buffers.live, base.buffers.live, `every buffer released (${took} ms after the kill)`);
  t.ok(took < 3000, 'within a short time');
  const keys = ['requested', 'allocated', 'buffers', 'active', 'mapped', 'resident', 'dirty', 'arenas', 'pages'] as const;
  for (const p of st.pools) {
    const b = base.pools.find((x) => x.name === p.name)!;
    t.same(
      Object.fromEntries(keys.map((k) => [k, p[k]])),
      Object.fromEntries(keys.map((k) => [k, b[k]])),
      `${p.name}: requested/allocated/buffers/active/mapped as before the client started`,
    );
  }
  t.same(present(st), present(base), 'memory, hugepages and pools all as at the start');
  t.equal(d.proc.exitCode, null, 'the daemon is running');

  await new Promise((r) => setTimeout(r, 100));
  stop = true;
  await worker;
  t.same(failures, [], 'the other client never failed');
  t.ok(rounds > roundsBefore, `it kept working during and after the kill (${roundsBefore} rounds before, ${rounds} in all)`);
  t.ok((await obs.read(keep.handle, 0, 1000)).equals(pattern(1000, 42)), 'its own buffer is intact');
  t.match(await obs.info(shared.handle), { holders: 1, refs: { handles: 1, inflight: 0 } }, "the dead client's handle on the observer's buffer is gone");
  t.ok((await obs.read(shared.handle, 0, 5000)).equals(pattern(5000, 7)), 'and the buffer lives on intact');
  const after = await obs.alloc({ pool: 'huge', size: 3 << 20 });
  await obs.write(after.handle, 0, pattern(3 << 20, 9));
  t.ok((await obs.read(after.handle, 0, 3 << 20)).equals(pattern(3 << 20, 9)), 'a big transfer works afterwards');
  await obs.close(after.handle);
  t.same(present(await obs.status()), present(base), 'and leaves nothing behind');
  await obs.close(shared.handle);
  t.ok(d.logs.some((l) => l['event'] === 'disconnect' && l['clientName'] === 'hoarder'), 'the daemon logged the disconnect (debug)');
  const again = await connect({ socket: d.socket, name: 'hoarder', useCookie: false });
  t.equal(again.session.name, 'hoarder', "the dead client's name is free again");
  t.equal((await again.alloc({ pool: 'default', size: 10 })).handle, 0, 'a new client starts with a fresh table');
  await again.disconnect();
});
