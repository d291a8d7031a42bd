/**
 * The replay driver on journals written by hand (the real daemon writes
 * them in test/integration/record-replay.test.ts): a response that differs
 * is the first divergence, with both sides; a missing event too; CPU
 * writes that cannot be replayed, a gap and a client that said hello
 * before the recording are warnings; importFd is skipped with its reason.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeFrame } from '../../protocol/frame.js';
import { encodeValue } from '../../protocol/codec.js';
import { loadConfig } from '../../daemon/config/config.js';
import { replay, filler } from '../../daemon/server/replay.js';
import { formatReport } from '../../daemon/server/replay-cli.js';
import { tempDir } from '../helpers/daemon.js';

const PEER = { pid: 4242, uid: 1000, gid: 1000 };

function write(dir: string, entries: Record<string, unknown>[], recordData = false): string {
  const header = { k: 'bufferd-journal', v: 1, part: 0, t: 0, wallTime: '2026-12-01T00:00:00.000Z', version: 'test', config: loadConfig(), socket: '/s', pid: 1, recordData, maxDataBytes: 1 << 20 };
  const f = join(dir, 'j');
  writeFileSync(f, Buffer.concat([header, ...entries].map((e) => encodeFrame(e))));
  return f;
}

const req = (t: number, c: number, v: unknown) => ({ k: 'req', t, c, b: encodeValue(v) });
const res = (t: number, c: number, v: unknown) => ({ k: 'res', t, c, b: encodeValue(v) });

t.test('a response that differs is the first divergence, with the request and both sides', async (t) => {
  const dir = tempDir(t);
  const f = write(dir, [
    { k: 'conn', t: 1, c: 1, peer: PEER, open: false, name: null, principal: null },
    req(2, 1, { id: 1, op: 'hello', version: 1, name: 'a' }),
    res(3, 1, { id: 1, result: { clientId: 1 } }),
    req(4, 1, { id: 2, op: 'ping' }),
    res(5, 1, { id: 2, result: { uptimeMs: 5 } }),
    req(6, 1, { id: 3, op: 'close', handle: 99 }),
    res(7, 1, { id: 3, result: { handle: 99, closed: true } }),
    req(8, 1, { id: 4, op: 'ping' }),
  ]);
  const r = await replay({ file: f, config: null, speed: 'max' });
  t.equal(r.identical, false);
  t.match(r.divergence, { kind: 'response', request: 1, client: 1, op: 'hello' }, 'the hello result has more members than recorded');
  const text = formatReport(r, false);
  t.match(text, /DIVERGED at request 1 of client 1 \(hello\)/);
  t.match(text, /recorded without --record-data/, 'the hint about bytes not journaled');
});

t.test('a request whose response was not journaled (the daemon stopped first) is replayed, not compared', async (t) => {
  const dir = tempDir(t);
  const f = write(dir, [
    { k: 'conn', t: 1, c: 1, peer: PEER, open: false, name: null, principal: null },
    req(2, 1, { id: 1, op: 'hello', version: 1 }),
  ]);
  const r = await replay({ file: f, config: null, speed: 'max' });
  t.equal(r.requests, 1);
  t.equal(r.compared, 0);
  t.equal(r.identical, true);
  t.same(r.warnings, []);
  t.equal(r.summary.end.liveBuffers, 0);
});

t.test('events: one recorded and not replayed is a divergence; warnings for what cannot be replayed', async (t) => {
  const dir = tempDir(t);
  const f = write(dir, [
    { k: 'conn', t: 1, c: 7, peer: PEER, open: true, name: 'late', principal: 'anonymous' },
    { k: 'cpu', t: 2, untracked: 'too large' },
    { k: 'cpu', t: 2, buffer: 3, off: 0, b: { $bin: 'sha256:x', len: 8192 } },
    { k: 'cpu', t: 2, buffer: 3, off: 0, b: new Uint8Array(4096) },
    req(3, 7, { id: 1, op: 'importFd', nonce: 'AAAAAAAAAAAAAAAAAAAAAA==' }),
    res(4, 7, { id: 1, result: {} }),
    res(5, 7, { id: 2, result: {} }),
    { k: 'ev', t: 6, c: 7, b: encodeValue({ event: 'handle', handle: 1 }) },
    { k: 'close', t: 7, c: 7 },
  ]);
  const r = await replay({ file: f, config: null, speed: 'max' });
  t.match(r.skipped, [{ op: 'importFd', reason: /fd socket/ }]);
  const w = r.warnings.join('\n');
  t.match(w, /client 7 had said hello before the recording began/);
  t.match(w, /not journaled: too large/);
  t.match(w, /journaled as a digest only/);
  t.match(w, /the replayed buffer is not mapped/);
  t.match(w, /a response for client 7 with no request before it/);
  t.match(r.divergence, { kind: 'event', client: 7, op: 'event #1 (handle)', path: '(the whole value)' });
  t.equal(r.summary.divergences, 1);
});

t.test('a gap stops the replay there', async (t) => {
  const dir = tempDir(t);
  const f = write(dir, [
    { k: 'conn', t: 1, c: 1, peer: null, open: false, name: null, principal: null },
    { k: 'gap', t: 2, dropped: 5, bytes: 500 },
    req(3, 1, { id: 1, op: 'hello', version: 1 }),
  ]);
  const r = await replay({ file: f, config: null, speed: 'max' });
  t.equal(r.requests, 0, 'nothing after the gap');
  t.match(r.warnings.join('\n'), /lost 5 entries here/);
});

t.test('the filler for bytes journaled as digests: exact length, the same for the same digest', async (t) => {
  const a = filler('sha256:AAAA', 4099);
  t.equal(a.length, 4099);
  t.same(filler('sha256:AAAA', 4099), a, 'deterministic');
  t.not(Buffer.compare(filler('sha256:BBBB', 4099), a), 0, 'another digest, other bytes');
  t.ok(a.some((x) => x !== 0), 'not zeros');
});
