/**
 * Streaming DMA across two client processes (test/fixtures/client.mjs), on
 * a non-coherent and a coherent device — client drivers attached by the
 * consumer (only a client driver's own client may act as its device), then
 * the built-in 'video' (non-coherent) and 'nic' (coherent), which any
 * holder may drive. The producer writes a frame inside sync start/end
 * write; the consumer, which got the handle by send, has the device read
 * it; the device writes; the consumer's CPU read without sync start is
 * reported against the CONSUMER (id and name), and every holder hears of
 * it; with sync start read the consumer reads the device's bytes. Brackets
 * are per client.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient, pattern, sha256, rejection, poll, type Line } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { total, kinds } from '../helpers/coherency.js';
import type { HandleInfo, ViolationInfo } from '../../client/index.js';

const SIZE = 64 * 1024;
const d = await startDaemon(t);
const obs = await client(t, d.socket, 'observer');

const FLOWS = [
  { label: 'non-coherent client driver', driver: 'cam-nc', coherent: false, builtin: false },
  { label: 'coherent client driver', driver: 'cam-co', coherent: true, builtin: false },
  { label: "built-in non-coherent 'video'", driver: 'video', coherent: false, builtin: true },
  { label: "built-in coherent 'nic'", driver: 'nic', coherent: true, builtin: true },
] as const;

const want = (seed: number) => ({ equal: true, length: SIZE, firstMismatch: -1, sha256: sha256(pattern(SIZE, seed)) });

for (const f of FLOWS) {
  t.test(`${f.label}: producer → device → consumer`, async (t) => {
    const pname = `producer-${f.driver}`;
    const cname = `consumer-${f.driver}`;
    const producer = await spawnClient(t, d.socket, pname);
    const consumer = await spawnClient(t, d.socket, cname);
    if (!f.builtin) await consumer.call('attachDriver', f.driver, { coherent: f.coherent });

    const h = await producer.call<HandleInfo>('alloc', { pool: 'default', size: SIZE });
    await producer.call('send', h.handle, cname);
    const ev = await consumer.wait((l) => l['event'] === 'handle' && l['buffer'] === h.buffer, 'the handle event');
    const ch = ev['handle'] as number;
    await producer.call('register', h.handle, f.driver);
    if (!f.builtin) {
      const reg = await consumer.wait((l) => l['event'] === 'registration' && l['buffer'] === h.buffer, 'the registration event');
      t.match(reg, { driver: f.driver, registrant: producer.id }, 'the consumer, as the driver, hears of the registration');
      const e = await rejection(producer.call('device.read', f.driver, h.handle, 0, 16));
      t.equal(e.code, 'EPERM', "the producer may not act as the consumer's device");
    }
    const seq0 = await total(obs);

    // the producer writes the frame inside a write bracket
    await producer.call('sync', h.handle, { phase: 'start', access: 'write' });
    await producer.cmd('fill', { handle: h.handle, length: SIZE, seed: 1 });
    t.match(await producer.call('sync', h.handle, { phase: 'end', access: 'write' }), { cleaned: SIZE / 64 }, 'sync end cleans the frame');

    // the consumer's device reads it
    t.same(await consumer.cmd('devverify', { driver: f.driver, handle: ch, length: SIZE, seed: 1 }), want(1), "the device reads the producer's frame");
    t.equal(await total(obs), seq0, 'the correct hand-over records nothing');

    // the device writes; the consumer reads without sync start
    await consumer.cmd('devfill', { driver: f.driver, handle: ch, length: SIZE, seed: 2 });
    const bad = await consumer.cmd<{ equal: boolean; sha256: string }>('verify', { handle: ch, length: SIZE, seed: 2 });
    const vs = (await obs.violations({ buffer: h.buffer })).violations.filter((v) => v.seq > seq0);
    if (!f.coherent) {
      t.equal(bad.equal, false, 'the consumer reads stale bytes');
      t.equal(bad.sha256, sha256(pattern(SIZE, 1)), "they are the producer's old frame, still in the cache");
      t.same(kinds(vs), ['cpu-access-while-device-owned', 'stale-read']);
      for (const v of vs) {
        t.match(v, { client: { id: consumer.id, name: cname }, buffer: h.buffer, op: 'read', mode: 'warn' }, `${v.kind}: reported against the consumer`);
        t.not(v.client.id, producer.id, `${v.kind}: not against the producer`);
        t.match(v.message, new RegExp(`client ${consumer.id} read`), `${v.kind}: the message names the consumer`);
        t.match(v.message, /missing sync \{phase:'start', access:'read'\}/);
      }
      t.match(vs.find((v) => v.kind === 'stale-read'), { range: { offset: 0, length: SIZE } }, 'every line was stale');
      t.match(vs.find((v) => v.kind === 'cpu-access-while-device-owned'), { driver: f.driver });
      // both holders hear of it, with the consumer named
      for (const [who, p] of [['producer', producer], ['consumer', consumer]] as const) {
        for (const v of vs) {
          const got = await p.wait((l: Line) => l['event'] === 'violation' && l['seq'] === v.seq, `${who}: violation ${v.seq}`);
          t.same(got, { event: 'violation', ...v }, `${who} gets the ${v.kind} event naming the consumer`);
        }
      }
    } else {
      t.same(bad, want(2), "coherent: the consumer reads the device's frame");
      t.same(vs, [], 'nothing recorded');
    }

    // with sync start read first, the consumer reads the device's bytes
    const seq1 = await total(obs);
    await consumer.call('sync', ch, { phase: 'start', access: 'read' });
    t.same(await consumer.cmd('verify', { handle: ch, length: SIZE, seed: 2 }), want(2), "after sync start read: the device's frame");
    await consumer.call('sync', ch, { phase: 'end', access: 'read' });
    // the producer's read is unsynced: with a non-coherent device only the ownership rule complains
    t.same(await producer.cmd('verify', { handle: h.handle, length: SIZE, seed: 2 }), want(2), "the cache is clean now: the producer's read sees the frame too");
    const after = (await obs.violations({ buffer: h.buffer })).violations.filter((v) => v.seq > seq1);
    t.same(kinds(after), f.coherent ? [] : ['cpu-access-while-device-owned'], f.coherent ? 'nothing recorded' : "only the producer's missing sync start");
    if (!f.coherent) t.match(after[0], { client: { id: producer.id, name: pname } });

    await producer.call('unregister', h.handle, f.driver);
  });
}

t.test('brackets are per client', async (t) => {
  const a = await spawnClient(t, d.socket, 'bracket-a');
  const b = await spawnClient(t, d.socket, 'bracket-b');
  const h = await a.call<HandleInfo>('alloc', { pool: 'default', size: SIZE });
  await a.call('send', h.handle, 'bracket-b');
  const bh = (await b.wait((l) => l['event'] === 'handle', 'the handle'))['handle'] as number;
  await a.call('register', h.handle, 'video');
  const seq0 = await total(obs);
  const since = async (): Promise<ViolationInfo[]> => (await obs.violations({ buffer: h.buffer })).violations.filter((v) => v.seq > seq0);

  await a.call('sync', h.handle, { phase: 'start', access: 'read' });
  await b.call('sync', bh, { phase: 'end', access: 'read' }); // b opened nothing
  t.match(await since(), [{ kind: 'end-without-start', client: { id: b.id, name: 'bracket-b' } }], "b's end does not close a's bracket");
  await b.cmd('fill', { handle: bh, length: 64, seed: 3 });
  t.equal((await since()).length, 1, "b writing inside a's read bracket: b has no read bracket, and the CPU owns the buffer");
  await b.call('device.write', 'video', bh, 0, Buffer.alloc(64, 1));
  const dv = (await since()).at(-1)!;
  t.match(dv, { kind: 'device-access-during-cpu-access', client: { id: b.id }, driver: 'video', op: 'device.write' });
  t.match(dv.message, new RegExp(`client\\(s\\) ${a.id} had CPU access open`), "the message names the bracket's owner");
  await a.call('sync', h.handle, { phase: 'start', access: 'write' });
  t.match((await since()).at(-1), { kind: 'start-while-open', client: { id: a.id } });
  await a.call('sync', h.handle, { phase: 'end', access: 'write' });
  await b.call('sync', bh, { phase: 'start', access: 'rw' });
  await b.call('sync', bh, { phase: 'end', access: 'rw' });
  t.equal((await since()).length, 3, "each client's own bracket is fine");
});

t.test("a departed client's open bracket goes with it", async (t) => {
  const keeper = await client(t, d.socket, 'keeper');
  const quitter = await spawnClient(t, d.socket, 'quitter');
  const h = await keeper.alloc({ pool: 'default', size: SIZE });
  await keeper.register(h.handle, 'video');
  await keeper.send(h.handle, 'quitter');
  const qh = (await quitter.wait((l) => l['event'] === 'handle', 'the handle'))['handle'] as number;
  await quitter.call('sync', qh, { phase: 'start', access: 'write' });
  await quitter.kill();
  const gone = await poll(() => obs.status(), (st) => !st.clients.some((c) => c.id === quitter.id));
  t.notOk(gone.clients.some((c) => c.id === quitter.id), 'the quitter is gone');
  const seq0 = await total(obs);
  await keeper.device.read('video', h.handle, 0, SIZE);
  const vs = (await obs.violations({ buffer: h.buffer })).violations.filter((v) => v.seq > seq0);
  t.same(kinds(vs), [], 'no device-access-during-cpu-access naming a client that left');
  await keeper.device.write('video', h.handle, 0, pattern(SIZE, 5));
  const st = await keeper.violations({ buffer: h.buffer });
  t.notOk(st.violations.some((v) => v.client.id === keeper.id && v.kind === 'device-access-during-cpu-access'), 'the device is not blocked by a dead bracket');
});
