/**
 * hostile (a)–(c): clients that misuse the connection itself.
 *
 * (a) amplification: one raw client allocates a 4 MiB buffer, pipelines
 *     AMP_READS reads of maxDataBytes and never reads its socket. Daemon RSS
 *     (VmRSS) is sampled while the answers pile up, and again after the
 *     client leaves. Target: growth ≤ AMP_FACTOR × server.maxUnsentBytes.
 * (b) trickle: TRICKLE_CONNS connections each send one frame one byte every
 *     frameTimeoutMs/2. Target: each closed with ETIMEDOUT within
 *     TRICKLE_SLACK × frameTimeoutMs of its first byte.
 * (c) silent sockets: maxConnections sockets that never send a byte.
 *     Target: each closed within SILENT_SLACK × server.helloTimeoutMs, and a
 *     well-behaved client can connect afterwards.
 *
 * Config keys the daemon does not know yet (server.maxUnsentBytes,
 * server.helloTimeoutMs) are left out and reported; the figures are
 * measured either way.
 */
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { encodeFrame } from '../../protocol/frame.js';
import { median } from '../harness.js';
import { MiB, RawConn, rssOf, sleep, startDaemon, withFutureKeys, type Part } from './common.js';
import { pack, frame } from './rawpack.js';

export const AMP_READS = 150;
/** server.maxUnsentBytes asked for (and its default once implemented). */
export const AMP_UNSENT_LIMIT = 4 * MiB;
/** Growth allowed, in multiples of the limit: the unsent answers, the answer being built (the bytes read and their encoding) and garbage not yet collected. */
export const AMP_FACTOR = 6;
const AMP_WATCH_MS = 8000;
const AMP_AFTER_MS = 2000;

export const TRICKLE_CONNS = 20;
export const TRICKLE_FRAME_TIMEOUT_MS = 1000;
export const TRICKLE_SLACK = 1.5;
/** How long the trickling goes on before the check gives up on a connection. */
const TRICKLE_WINDOW_MS = 5 * TRICKLE_FRAME_TIMEOUT_MS;

export const SILENT_MAX_CONNECTIONS = 16;
export const HELLO_TIMEOUT_MS = 1000;
export const SILENT_SLACK = 1.5;
const SILENT_WAIT_MS = 3 * HELLO_TIMEOUT_MS;

function unsupportedNote(part: Part, keys: string[]): string {
  if (keys.length === 0) return '';
  part.log(`config keys not known to this daemon, left out: ${keys.join(', ')}`);
  return ` (${keys.join(', ')} not supported yet)`;
}

export async function amplification(part: Part): Promise<void> {
  const what = '(a) amplification';
  await part.sub(what, async (s) => {
    const { config, unsupported } = withFutureKeys(DEFAULT_MACHINE, { 'server.maxUnsentBytes': AMP_UNSENT_LIMIT });
    const note = unsupportedNote(part, unsupported);
    const d = await startDaemon(s, { config });
    const c = await RawConn.open(d.socket);
    s.defer(() => c.destroy());
    c.write(encodeFrame({ id: 1, op: 'hello', version: 1, name: 'amplifier' }));
    c.write(encodeFrame({ id: 2, op: 'alloc', pool: 'default', size: 4 * MiB }));
    await c.waitUntil(() => c.replies >= 2, 5000);
    const hello = c.msgs.find((m) => m['id'] === 1)?.['result'] as { limits: { maxDataBytes: number } } | undefined;
    const handle = (c.msgs.find((m) => m['id'] === 2)?.['result'] as { handle: number } | undefined)?.handle;
    if (hello === undefined || handle === undefined) throw new Error(`hello/alloc failed: ${JSON.stringify(c.msgs).slice(0, 300)}`);
    const rssBase = median([rssOf(d), (await sleep(50), rssOf(d)), (await sleep(50), rssOf(d))]);
    c.sock.pause(); // never read again
    const reads = Array.from({ length: AMP_READS }, (_, i) => encodeFrame({ id: 10 + i, op: 'read', handle, offset: 0, length: Math.min(4 * MiB, hello.limits.maxDataBytes) }));
    c.write(Buffer.concat(reads));
    let peak = rssBase;
    const t0 = Date.now();
    let last = rssBase;
    let still = 0;
    while (Date.now() - t0 < AMP_WATCH_MS && d.alive()) {
      await sleep(100);
      const r = rssOf(d);
      peak = Math.max(peak, r);
      still = Math.abs(r - last) < MiB ? still + 1 : 0;
      last = r;
      if (still >= 10 && Date.now() - t0 > 2000) break; // settled
    }
    c.destroy();
    await sleep(AMP_AFTER_MS);
    const after = rssOf(d);
    const growth = peak - rssBase;
    const limit = AMP_FACTOR * AMP_UNSENT_LIMIT;
    part.fig('a amplification', 'rssBase', rssBase / MiB, 'MiB');
    part.fig('a amplification', 'rssPeakGrowth', growth / MiB, 'MiB');
    part.fig('a amplification', 'rssGrowthAfterLeave', (after - rssBase) / MiB, 'MiB');
    part.fig('a amplification', 'answersRequested', (AMP_READS * Math.min(4 * MiB, hello.limits.maxDataBytes)) / MiB, 'MiB');
    part.fig('a amplification', 'growthOverUnsentLimit', growth / AMP_UNSENT_LIMIT, 'x');
    part.fig('a amplification', 'maxUnsentBytesConfigured', unsupported.length === 0 ? 1 : 0, 'bool');
    part.check(
      what,
      d.alive() && growth <= limit,
      `RSS grew ${(growth / MiB).toFixed(1)} MiB for ${AMP_READS} unread 4 MiB answers (limit ${AMP_FACTOR} × ${AMP_UNSENT_LIMIT / MiB} MiB = ${limit / MiB} MiB); ${((after - rssBase) / MiB).toFixed(1)} MiB above the start once it left${note}${d.alive() ? '' : '; the daemon died'}`,
    );
  });
}

export async function trickle(part: Part): Promise<void> {
  const what = '(b) trickle';
  await part.sub(what, async (s) => {
    const config = { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, frameTimeoutMs: TRICKLE_FRAME_TIMEOUT_MS } };
    const d = await startDaemon(s, { config });
    // one frame that takes far longer than the window to trickle in full
    const bytes = frame(pack({ id: 1, op: 'ping', pad: Buffer.alloc(200, 0x61) }));
    const gap = TRICKLE_FRAME_TIMEOUT_MS / 2;
    const results = await Promise.all(
      Array.from({ length: TRICKLE_CONNS }, async (_, i) => {
        const c = await RawConn.open(d.socket);
        s.defer(() => c.destroy());
        await sleep((i * gap) / TRICKLE_CONNS); // spread the bytes out
        const first = Date.now();
        let sent = 0;
        while (!c.closed && Date.now() - first < TRICKLE_WINDOW_MS && sent < bytes.length) {
          c.write(bytes.subarray(sent, sent + 1));
          sent++;
          await c.waitUntil(() => c.closed, gap);
        }
        await c.waitUntil(() => c.closed, 200);
        const ms = c.closed ? c.closedAt! - first : -1;
        return { ms, sent, timedOut: c.codes().includes('ETIMEDOUT') };
      }),
    );
    const closed = results.filter((r) => r.ms >= 0);
    const inTime = results.filter((r) => r.timedOut && r.ms >= 0 && r.ms <= TRICKLE_SLACK * TRICKLE_FRAME_TIMEOUT_MS);
    part.fig('b trickle', 'connections', TRICKLE_CONNS, 'count');
    part.fig('b trickle', 'closedWithETIMEDOUT', results.filter((r) => r.timedOut).length, 'count');
    part.fig('b trickle', 'closedInTime', inTime.length, 'count');
    part.fig('b trickle', 'medianTimeToClose', closed.length > 0 ? median(closed.map((r) => r.ms)) : -1, 'ms');
    part.fig('b trickle', 'maxTimeToClose', closed.length > 0 ? Math.max(...closed.map((r) => r.ms)) : -1, 'ms');
    part.fig('b trickle', 'medianBytesSent', median(results.map((r) => r.sent)), 'bytes');
    part.check(
      what,
      inTime.length === TRICKLE_CONNS,
      `${inTime.length}/${TRICKLE_CONNS} closed with ETIMEDOUT within ${TRICKLE_SLACK} × frameTimeoutMs (${TRICKLE_FRAME_TIMEOUT_MS} ms) of their first byte; ` +
        `${closed.length} closed at all within ${TRICKLE_WINDOW_MS} ms, one byte every ${gap} ms`,
    );
  });
}

export async function silent(part: Part): Promise<void> {
  const what = '(c) silent sockets';
  await part.sub(what, async (s) => {
    const base = { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, maxConnections: SILENT_MAX_CONNECTIONS } };
    const { config, unsupported } = withFutureKeys(base, { 'server.helloTimeoutMs': HELLO_TIMEOUT_MS });
    const note = unsupportedNote(part, unsupported);
    const d = await startDaemon(s, { config });
    await sleep(200); // the start-up probe's connection is gone
    const t0 = Date.now();
    const conns: RawConn[] = [];
    for (let i = 0; i < SILENT_MAX_CONNECTIONS; i++) {
      const c = await RawConn.open(d.socket);
      s.defer(() => c.destroy());
      conns.push(c);
    }
    await Promise.all(conns.map((c) => c.waitUntil(() => c.closed, SILENT_WAIT_MS)));
    const closed = conns.filter((c) => c.closed);
    const inTime = closed.filter((c) => c.closedAt! - t0 <= SILENT_SLACK * HELLO_TIMEOUT_MS);
    // a well-behaved client: hello, then ping (raw, to see an EBUSY frame if that is the answer)
    let newClient = 'ok';
    try {
      const c = await RawConn.open(d.socket);
      s.defer(() => c.destroy());
      c.write(encodeFrame({ id: 1, op: 'hello', version: 1, name: 'latecomer' }));
      c.write(encodeFrame({ id: 2, op: 'ping' }));
      await c.waitUntil(() => c.replies >= 2 || c.closed, 2000);
      const ping = c.msgs.find((m) => m['id'] === 2);
      if (ping === undefined || ping['result'] === undefined) {
        newClient = c.codes().length > 0 ? `refused: ${c.codes().join(',')}` : c.closed ? 'closed without an answer' : 'no answer within 2 s';
      }
    } catch (e) {
      newClient = `cannot connect: ${(e as Error).message}`.slice(0, 160);
    }
    part.fig('c silent', 'sockets', SILENT_MAX_CONNECTIONS, 'count');
    part.fig('c silent', 'closedByDaemon', closed.length, 'count');
    part.fig('c silent', 'closedInTime', inTime.length, 'count');
    part.fig('c silent', 'maxTimeToClose', closed.length > 0 ? Math.max(...closed.map((c) => c.closedAt! - t0)) : -1, 'ms');
    part.fig('c silent', 'newClientServed', newClient === 'ok' ? 1 : 0, 'bool');
    part.fig('c silent', 'helloTimeoutConfigured', unsupported.length === 0 ? 1 : 0, 'bool');
    part.check(
      what,
      inTime.length === SILENT_MAX_CONNECTIONS && newClient === 'ok',
      `${inTime.length}/${SILENT_MAX_CONNECTIONS} silent sockets closed within ${SILENT_SLACK} × helloTimeoutMs (${HELLO_TIMEOUT_MS} ms), ${closed.length} within ${SILENT_WAIT_MS} ms; ` +
        `a new client afterwards: ${newClient}${note}`,
    );
  });
}
