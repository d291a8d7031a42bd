/**
 * The client library delivers every event, including those that arrive in
 * the same read as the hello answer, before the application could attach a
 * listener. The peer here is a scripted socket that writes hello's answer
 * and 20 `handle` events in one write (the daemon can do the same when
 * handles are sent to a client the moment it connects; end-to-end in
 * test/integration/accept.test.ts).
 */
import t, { type Test } from 'tap';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type HandleEvent } from '../../client/index.js';
import { encodeFrame, FrameReader } from '../../protocol/frame.js';
import { decodeValue } from '../../protocol/codec.js';

const HELLO = {
  clientId: 7,
  name: null,
  protocolVersion: 1,
  server: { name: 'bufferd', version: 'test', pid: 1 },
  limits: { maxFrameBytes: 4 << 20, maxDataBytes: (4 << 20) - 1024, maxHandles: 1024, reservedHandles: 16, maxTokens: 4096 },
  capabilities: [],
  principal: 'anonymous',
  maxBytes: null,
  accept: 'any',
};

/** A peer that answers hello together with `events` in a single write. */
async function scripted(t: Test, events: Record<string, unknown>[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bufferd-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  const srv = createServer((sock) => {
    const r = new FrameReader();
    sock.on('data', (c) => {
      for (const f of r.push(c)) {
        const req = decodeValue(f) as { id: number; op: string };
        if (req.op === 'hello') sock.write(Buffer.concat([encodeFrame({ id: req.id, result: HELLO }), ...events.map((e) => encodeFrame(e))]));
        else sock.write(encodeFrame({ id: req.id, result: { uptimeMs: 1 } }));
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(path, r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return path;
}

const handleEvent = (n: number) => ({ event: 'handle', handle: n, rights: ['read'], from: { id: 1, name: 'a' }, buffer: 100 + n, size: 64, pool: 'default', cache: 'writeback' });

t.test('events in the same read as the hello answer reach listeners attached after connect()', async (t) => {
  const path = await scripted(t, Array.from({ length: 20 }, (_, i) => handleEvent(i)));
  const c = await connect({ socket: path, useCookie: false });
  t.teardown(() => c.disconnect());
  const seen: number[] = [];
  c.on('handle', (ev: HandleEvent) => seen.push(ev.handle));
  await c.ping();
  t.same(seen, Array.from({ length: 20 }, (_, i) => i), 'all 20, in order');
});

t.test('held events wait for a listener of their own kind; others are not held up by them', async (t) => {
  const path = await scripted(t, [handleEvent(0), { event: 'violation', kind: 'x' }, handleEvent(1)]);
  const c = await connect({ socket: path, useCookie: false });
  t.teardown(() => c.disconnect());
  const order: string[] = [];
  c.on('handle', (ev) => order.push(`handle ${ev.handle}`));
  await c.ping();
  t.same(order, ['handle 0', 'handle 1'], 'handle events, in order, past a violation nobody listens to');
  c.on('violation', () => order.push('violation'));
  await c.ping();
  t.same(order, ['handle 0', 'handle 1', 'violation'], 'the violation when its listener comes');
});

t.test('events nobody listens to are held up to a bound', async (t) => {
  const path = await scripted(t, Array.from({ length: 1100 }, (_, i) => ({ event: 'leak', buffer: i })));
  const c = await connect({ socket: path, useCookie: false });
  t.teardown(() => c.disconnect());
  await c.ping();
  const all: number[] = [];
  c.on('event', (ev) => all.push(ev['buffer'] as number));
  await c.ping();
  t.equal(all.length, 1024, 'at most 1,024 events are held');
  t.equal(all[0], 1100 - 1024, 'the oldest went first');
});
