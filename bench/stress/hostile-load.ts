/**
 * hostile (d)–(f): clients that make the daemon hold or do too much.
 *
 * (d) tokens: one token principal exports tokens (long ttlMs) until
 *     TOKENS_LIVE are live. Export latency is measured as pipelined batches
 *     (TOKEN_BATCH exports, TOKEN_ROUNDS rounds, median per export) at ~10
 *     live tokens and again at TOKENS_LIVE; a bystander pings meanwhile.
 *     Target: ratio ≤ TOKEN_RATIO_LIMIT (filling stops after
 *     TOKEN_FILL_BUDGET_MS, which fails the check). limits.maxTokens is set to
 *     MAX_TOKENS when the daemon knows the key.
 * (e) long ops: a LONG_BUFFER buffer registered with the non-coherent
 *     `video` device; sync start/end and device.fill of all of it in a loop
 *     for LONG_MS while a bystander pings. Target: ping p99 < LONG_P99_MS.
 * (f) unsolicited handles: client A sends UNSOLICITED handles to client B,
 *     who never asked for any. Target: B's own alloc still succeeds.
 */
import { connect } from '../../client/connect.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { median } from '../harness.js';
import { MiB, reportPings, sleep, startBystander, startDaemon, withFutureKeys, type Part } from './common.js';

export const TOKENS_LIVE = 100_000;
export const MAX_TOKENS = 200_000;
export const TOKEN_RATIO_LIMIT = 1.5;
const TOKEN_BATCH = 100;
const TOKEN_ROUNDS = 3;
const TOKEN_FILL_BATCH = 1000;
const TOKEN_FILL_BUDGET_MS = 240_000;
const TOKEN_TTL_MS = 3_600_000;
const TOKEN_SECRET = 'stress-exporter-secret-0123456789';

export const LONG_BUFFER = 512 * MiB;
export const LONG_P99_MS = 50;
const LONG_MS = { short: 5_000, full: 20_000 };

export const UNSOLICITED = 1024;

export async function tokens(part: Part): Promise<void> {
  const what = '(d) tokens';
  await part.sub(what, async (s) => {
    const target = TOKENS_LIVE;
    const base = {
      ...DEFAULT_MACHINE,
      auth: { ...DEFAULT_MACHINE.auth, tokens: [{ name: 'exporter', secret: TOKEN_SECRET, capabilities: [], maxHandles: 1 << 20 }] },
    };
    const { config, unsupported } = withFutureKeys(base, { 'limits.maxTokens': MAX_TOKENS });
    if (unsupported.length > 0) part.log(`config keys not known to this daemon, left out: ${unsupported.join(', ')}`);
    const d = await startDaemon(s, { config });
    const c = await connect({ socket: d.socket, token: TOKEN_SECRET, useCookie: false });
    s.defer(() => c.disconnect());
    if (c.session.principal !== 'exporter') throw new Error(`authenticated as ${c.session.principal}`);
    const h = (await c.alloc({ pool: 'default', size: 4096 })).handle;
    const exportBatch = (n: number) => Promise.all(Array.from({ length: n }, () => c.export(h, { ttlMs: TOKEN_TTL_MS })));
    let live = 0;
    const measure = async () => {
      const us: number[] = [];
      for (let i = 0; i < TOKEN_ROUNDS; i++) {
        const t0 = process.hrtime.bigint();
        await exportBatch(TOKEN_BATCH);
        us.push(Number(process.hrtime.bigint() - t0) / 1000 / TOKEN_BATCH);
        live += TOKEN_BATCH;
      }
      return median(us);
    };
    const bystander = await startBystander(s, d.socket);
    await exportBatch(10);
    live = 10;
    const small = await measure();
    const t0 = Date.now();
    const budget = TOKEN_FILL_BUDGET_MS;
    while (live < target && Date.now() - t0 < budget) {
      const n = Math.min(TOKEN_FILL_BATCH, target - live);
      await exportBatch(n);
      live += n;
    }
    const fillMs = Date.now() - t0;
    const reached = live;
    const large = await measure();
    const st = await c.status();
    const stats = await bystander.stop();
    const ratio = large / small;
    part.fig('d tokens', 'exportUsAt10', small, 'us');
    part.fig('d tokens', `exportUsAt${target}`, large, 'us');
    part.fig('d tokens', 'ratio', ratio, 'x');
    part.fig('d tokens', 'liveTokensReached', reached, 'count');
    part.fig('d tokens', 'tokensInFlight', st.buffers.tokensInFlight, 'count');
    part.fig('d tokens', 'fillTime', fillMs / 1000, 's');
    part.fig('d tokens', 'maxTokensConfigured', unsupported.length === 0 ? 1 : 0, 'bool');
    reportPings(part, 'd tokens', stats);
    part.check(
      what,
      reached >= target && ratio <= TOKEN_RATIO_LIMIT,
      `export ${small.toFixed(1)} µs at ~10 live tokens, ${large.toFixed(1)} µs at ${reached}: ${ratio.toFixed(2)}× (limit ${TOKEN_RATIO_LIMIT}×)` +
        `${reached < target ? `; only ${reached} of ${target} live tokens within ${budget / 1000} s` : ''}; filling took ${(fillMs / 1000).toFixed(1)} s; bystander p99 ${stats.p99} ms, max ${stats.max} ms`,
    );
  });
}

export async function longOps(part: Part): Promise<void> {
  const what = '(e) long ops';
  await part.sub(what, async (s) => {
    const d = await startDaemon(s, {});
    const c = await connect({ socket: d.socket, name: 'long-ops', useCookie: false });
    s.defer(() => c.disconnect());
    const b = await c.alloc({ pool: 'default', size: LONG_BUFFER });
    await c.register(b.handle, 'video');
    const bystander = await startBystander(s, d.socket);
    await sleep(200);
    const t0 = Date.now();
    const worst = { syncStart: 0, syncEnd: 0, fill: 0 };
    let iterations = 0;
    const timed = async (k: keyof typeof worst, f: () => Promise<unknown>) => {
      const t = performance.now();
      await f();
      worst[k] = Math.max(worst[k], performance.now() - t);
    };
    while (iterations === 0 || Date.now() - t0 < LONG_MS[part.opts.short ? 'short' : 'full']) {
      await timed('syncStart', () => c.sync(b.handle, { phase: 'start', access: 'rw' }));
      await timed('syncEnd', () => c.sync(b.handle, { phase: 'end', access: 'rw' }));
      await timed('fill', () => c.device.fill('video', b.handle, 0, LONG_BUFFER, 0x5a ^ (iterations & 0xff)));
      iterations++;
    }
    const stats = await bystander.stop();
    await c.unregister(b.handle, 'video');
    part.fig('e long ops', 'iterations', iterations, 'count');
    part.fig('e long ops', 'worstSyncStart', worst.syncStart, 'ms');
    part.fig('e long ops', 'worstSyncEnd', worst.syncEnd, 'ms');
    part.fig('e long ops', 'worstFill', worst.fill, 'ms');
    reportPings(part, 'e long ops', stats);
    part.check(
      what,
      stats.p99 < LONG_P99_MS && stats.failures === 0,
      `bystander ping p99 ${stats.p99} ms (limit ${LONG_P99_MS} ms), max ${stats.max} ms, while ${LONG_BUFFER / MiB} MiB sync start/end and device.fill ran ` +
        `(worst ${worst.syncStart.toFixed(0)}/${worst.syncEnd.toFixed(0)}/${worst.fill.toFixed(0)} ms, ${iterations} rounds)`,
    );
  });
}

export async function unsolicited(part: Part): Promise<void> {
  const what = '(f) unsolicited handles';
  await part.sub(what, async (s) => {
    const d = await startDaemon(s, {});
    const a = await connect({ socket: d.socket, name: 'sender', useCookie: false });
    s.defer(() => a.disconnect());
    const b = await connect({ socket: d.socket, name: 'victim', useCookie: false });
    s.defer(() => b.disconnect());
    let received = 0;
    b.on('handle', () => received++);
    const h = (await a.alloc({ pool: 'default', size: 4096 })).handle;
    const sent = await Promise.allSettled(Array.from({ length: UNSOLICITED }, () => a.send(h, b.id)));
    const ok = sent.filter((x) => x.status === 'fulfilled').length;
    const codes = [...new Set(sent.flatMap((x) => (x.status === 'rejected' ? [(x.reason as { code?: string }).code ?? 'ERROR'] : [])))];
    await b.ping();
    const held = (await a.status()).clients.find((x) => x.name === 'victim')?.handles ?? -1;
    let alloc = 'ok';
    try {
      await b.alloc({ pool: 'default', size: 4096 });
    } catch (e) {
      alloc = `${(e as { code?: string }).code ?? 'ERROR'}: ${(e as Error).message}`.slice(0, 160);
    }
    part.fig('f unsolicited', 'sendsAccepted', ok, 'count');
    part.fig('f unsolicited', 'handleEventsAtVictim', received, 'count');
    part.fig('f unsolicited', 'victimHandles', held, 'count');
    part.fig('f unsolicited', 'victimAllocOk', alloc === 'ok' ? 1 : 0, 'bool');
    part.check(
      what,
      alloc === 'ok',
      `${ok}/${UNSOLICITED} sends accepted${codes.length > 0 ? ` (refused: ${codes.join(',')})` : ''}, the victim holds ${held} handles it never asked for; its own alloc: ${alloc}`,
    );
  });
}
