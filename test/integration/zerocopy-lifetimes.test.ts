/**
 * Lifetimes of shared buffers, and the daemon without shared memory.
 *
 * A mapping holds its buffer as mmap outlives close(fd): the buffer lives
 * after every handle is closed (status buffers.live, refs.mappings) and its
 * pages go back to the pool when the last mapping goes, also when the
 * process holding it is SIGKILLed. An exported fd does not hold its buffer:
 * once freed, the fd is its holder's private copy (old bytes), a new buffer
 * on the same pages reads zeros and is not seen through it, and importFd of
 * it is EINVAL. With BUFFERD_NO_NATIVE=1 hello's fdSocket is nil, map with
 * a nonce, exportFd and importFd answer ENOTSUP naming why, and the rest
 * (alloc, read, write, send, register, sync, device access, daemon-side
 * mappings) still works.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, sha256, poll, rejection } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { spawnMapper, patternSha, sys, usage, KiB, MiB, PAGE } from '../helpers/zerocopy.js';
import { closeFd, type HandleInfo, type HandleEvent, type Status } from '../../client/index.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

/** Empty chunks go back at once, so a freed buffer leaves no trace in the pool's numbers. */
const EAGER = { ...DEFAULT_MACHINE, pools: DEFAULT_MACHINE.pools.map((p) => ({ ...p, dirtyDecayMs: 0 })) };
const d = await startDaemon(t, { config: EAGER, logLevel: 'info' });
const obs = await client(t, d.socket, 'observer');

const CASES = [
  { label: 'direct', size: 4 * MiB + 100, align: undefined },
  { label: 'large', size: 100 * KiB, align: undefined },
  { label: 'small, align 4096', size: 100, align: PAGE },
] as const;
const alloc = (c: { size: number; align: number | undefined }) => ({ pool: 'default', size: c.size, ...(c.align === undefined ? {} : { align: c.align }) });
const clientRow = (st: Status, name: string) => st.clients.find((c) => c.name === name);
const want = (length: number, seed: number, offset = 0) => ({ equal: true, length, firstMismatch: -1, sha256: patternSha(length, seed, offset) });

for (const [i, c] of CASES.entries()) {
  t.test(`${c.label}: a mapped buffer outlives close of every handle; its pages go back at the last unmap`, async (t) => {
    const name = `life-${i}`;
    const base = await usage(obs);
    const a = await spawnMapper(t, d.socket, name);
    const h = await a.call<HandleInfo>('alloc', alloc(c));
    t.equal(h.kind, c.label.split(',')[0]);
    const got = new Promise<HandleEvent>((resolve) => obs.once('handle', resolve));
    await a.call('send', h.handle, 'observer');
    const oh = (await got).handle;
    const m = await a.cmd<{ mapping: number }>('map', { handle: h.handle });
    await a.cmd('mfill', { mapping: m.mapping, length: c.size, seed: 100 + i });

    await a.call('close', h.handle);
    t.match(await obs.info(oh), { refs: { handles: 1, mappings: 1 }, holders: 1 }, "after the mapper's close: the observer's handle and the mapping");
    await obs.close(oh);
    const held = await usage(obs);
    t.same(held, { live: base.live + 1, allocated: base.allocated + h.usize, active: held.active, buffers: base.buffers + 1 }, 'no handle left anywhere: the buffer still lives, its bytes still allocated');
    t.match(clientRow(await obs.status(), name), { handles: 0, mappings: 1 }, 'held by the mapping alone');

    t.same(await a.cmd('mverify', { mapping: m.mapping, length: c.size, seed: 100 + i }), want(c.size, 100 + i), 'the mapping still holds the bytes');
    t.same(await a.cmd('verify', { mapping: m.mapping, length: c.size, seed: 100 + i }), want(c.size, 100 + i), 'and the daemon reads them through {mapping}');
    await a.cmd('mfill', { mapping: m.mapping, length: c.size, seed: 110 + i });
    t.same(await a.cmd('verify', { mapping: m.mapping, length: c.size, seed: 110 + i }), want(c.size, 110 + i), 'a new store through it is what the daemon reads');

    await a.cmd('unmap', { mapping: m.mapping });
    t.same(await usage(obs), base, 'the last unmap frees it: live buffers and the pool back to where they were');
    t.match(clientRow(await obs.status(), name), { handles: 0, mappings: 0 });
  });
}

t.test('SIGKILL of a process holding mappings releases them', async (t) => {
  const base = await usage(obs);
  const p = await spawnMapper(t, d.socket, 'doomed');
  // a buffer only its mapping holds, and one the observer holds too
  const own = await p.call<HandleInfo>('alloc', { pool: 'default', size: 4 * MiB });
  const m1 = await p.cmd<{ mapping: number }>('map', { handle: own.handle });
  await p.call('close', own.handle);
  const shared = await obs.alloc({ pool: 'default', size: 256 * KiB });
  await obs.write(shared.handle, 0, pattern(256 * KiB, 120));
  const got = p.wait((l) => l['event'] === 'handle' && l['buffer'] === shared.buffer, 'the handle event');
  await obs.send(shared.handle, 'doomed');
  const ph = (await got)['handle'] as number;
  const m2 = await p.cmd<{ mapping: number }>('map', { handle: ph });
  await p.cmd('mfill', { mapping: m2.mapping, length: 4 * KiB, seed: 121 });
  t.not(m1.mapping, m2.mapping);
  t.match(await obs.info(shared.handle), { refs: { handles: 2, mappings: 1 }, holders: 2 });
  t.same(await usage(obs), { ...base, live: base.live + 2, allocated: base.allocated + own.usize + shared.usize, active: (await usage(obs)).active, buffers: base.buffers + 2 });

  t.same(await p.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
  const after = await poll(() => usage(obs), (u) => u.live === base.live + 1);
  t.same(after, { live: base.live + 1, allocated: base.allocated + shared.usize, active: after.active, buffers: base.buffers + 1 }, 'the buffer only its mapping held is freed');
  t.match(await obs.info(shared.handle), { refs: { handles: 1, mappings: 0 }, holders: 1 }, "the other loses the dead process's mapping and handle");
  t.equal(clientRow(await obs.status(), 'doomed'), undefined, 'the process is gone from status');
  const bytes = await obs.read(shared.handle, 0, 8 * KiB);
  t.equal(sha256(bytes), sha256(Buffer.concat([pattern(4 * KiB, 121), pattern(4 * KiB, 120, 4 * KiB)])), 'what it stored before it died stays in the buffer');
  await obs.close(shared.handle);
  t.same(await usage(obs), base, 'and back to the baseline when the observer lets go');
});

t.test('after unmap: a view still held reads zeros and its stores go nowhere; the Mapping says it is unmapped', async (t) => {
  const h = await obs.alloc({ pool: 'default', size: 64 * KiB });
  t.teardown(() => obs.close(h.handle));
  const m = await obs.map(h.handle);
  const view = m.bytes;
  view.fill(5);
  t.equal((await obs.read(h.handle, 0, 1))[0], 5, 'a store through the mapping');
  await m.unmap();
  t.match(await obs.info(h.handle), { refs: { mappings: 0 } }, 'unmapped in the daemon');
  t.same([view.length, view[0], view[64 * KiB - 1]], [64 * KiB, 0, 0], 'the view still held reads zeros (no fault)');
  view[1] = 7;
  t.same([...(await obs.read(h.handle, 0, 2))], [5, 5], 'a store through it goes nowhere: the buffer keeps its bytes');
  await t.resolves(m.unmap(), 'a second unmap is a no-op');
  t.match(await obs.info(h.handle), { refs: { mappings: 0 } }, 'and releases nothing more');
  const e1 = (() => { try { return m.bytes; } catch (e) { return e as Error; } })();
  t.match(e1, { code: 'EBADF', message: /unmapped/ }, 'bytes after unmap: an error saying so');
  const e2 = (() => { try { return m.window(0, 16); } catch (e) { return e as Error; } })();
  t.match(e2, { name: 'BufferdError', code: 'EBADF', message: /unmapped/ }, 'window() after unmap: an error saying so');
});

for (const c of CASES.slice(0, 2)) {
  t.test(`${c.label}: a freed buffer's fd keeps its old bytes, the new buffer on its pages is not seen through it, importFd is EINVAL`, async (t) => {
    const n = sys();
    const base = await usage(obs);
    const h = await obs.alloc(alloc(c));
    await obs.write(h.handle, 0, pattern(c.size, 130));
    const e = await obs.exportFd(h.handle);
    t.teardown(() => closeFd(e.fd));
    const ino = n.stat(e.fd).ino;
    await obs.close(h.handle);
    t.same(await usage(obs), base, 'the fd does not hold the buffer: closing its only handle frees it');

    const old = n.map(e.fd, 0, e.bytes, false);
    t.teardown(() => n.unmap(old));
    t.equal(sha256(old.bytes.subarray(0, c.size)), patternSha(c.size, 130), 'the held fd keeps the old bytes');

    const h2 = await obs.alloc(alloc(c));
    t.same(h2.segments, h.segments, 'a new buffer of the same size gets the same pages');
    const fresh = await obs.read(h2.handle, 0, c.size);
    t.equal(fresh.filter((x) => x !== 0).length, 0, 'it reads as zeros: the old bytes did not stay on the pages');
    await obs.write(h2.handle, 0, pattern(c.size, 131));
    t.equal(sha256(old.bytes.subarray(0, c.size)), patternSha(c.size, 130), 'its bytes are not visible through the old fd');
    const m2 = await obs.map(h2.handle);
    t.teardown(() => m2.unmap());
    m2.bytes.fill(0xee, 0, 4096);
    t.equal(old.bytes[0], pattern(1, 130)[0], "nor are stores through the new buffer's mapping");

    const err = await rejection(obs.importFd(e.fd));
    t.equal(err.code, 'EINVAL', 'importFd of the stale fd: EINVAL');
    t.match(err.message, /freed/, 'saying the buffer was freed');
    const e2 = await obs.exportFd(h2.handle);
    t.teardown(() => closeFd(e2.fd));
    t.not(n.stat(e2.fd).ino, ino, "the new buffer's file is another file (a memfd is never reused)");
    t.match(await obs.importFd(e2.fd), { buffer: h2.buffer, rights: ['read', 'write', 'share'] }, 'importFd of a live buffer works (control)');
  });
}

t.test('a client without native calls: map, exportFd and importFd are ENOTSUP naming why', async (t) => {
  const p = await spawnMapper(t, d.socket, 'no-native-client', { BUFFERD_NO_NATIVE: '1' });
  const h = await p.call<HandleInfo>('alloc', { pool: 'default', size: 64 * KiB });
  for (const [what, cmd] of [['map', () => p.cmd('map', { handle: h.handle })], ['exportFd', () => p.call('exportFd', h.handle)], ['importFd', () => p.call('importFd', 0)]] as const) {
    const e = await rejection(cmd());
    t.equal(e.code, 'ENOTSUP', `${what}: ENOTSUP`);
    t.match(e.message, /this process cannot use: native system calls are switched off \(BUFFERD_NO_NATIVE=1\)/, `${what}: the client names why`);
  }
  t.match(await p.call('info', h.handle), { refs: { mappings: 0 } }, 'nothing was mapped');
});

t.test('a daemon without native calls (BUFFERD_NO_NATIVE=1): no fd socket, ENOTSUP naming why, the rest works', async (t) => {
  const nd = await startDaemon(t, { logLevel: 'info', env: { BUFFERD_NO_NATIVE: '1' } });
  const c = await client(t, nd.socket, 'plain');
  t.equal(c.session.fdSocket, null, "hello's fdSocket is nil");
  const SIZE = 256 * KiB;
  const h = await c.alloc({ pool: 'default', size: SIZE });
  const nonce = () => randomBytes(16).toString('base64');
  const raw = [
    ['map with a nonce', () => c.request('map', { handle: h.handle, nonce: nonce() })],
    ['exportFd', () => c.request('exportFd', { handle: h.handle, nonce: nonce() })],
    ['importFd', () => c.request('importFd', { nonce: nonce() })],
  ] as const;
  for (const [what, req] of raw) {
    const e = await rejection(req());
    t.equal(e.code, 'ENOTSUP', `${what}: the daemon answers ENOTSUP`);
    t.match(e.message, /BUFFERD_NO_NATIVE=1/, `${what}: naming the reason`);
    t.match(e.details, { reason: /BUFFERD_NO_NATIVE=1/ });
  }
  for (const [what, call] of [['map', () => c.map(h.handle)], ['exportFd', () => c.exportFd(h.handle)], ['importFd', () => c.importFd(0)]] as const) {
    const e = await rejection(call());
    t.equal(e.code, 'ENOTSUP', `client.${what}: ENOTSUP`);
    t.match(e.message, /fdSocket is nil/, `client.${what}: the daemon offers no fd socket`);
  }
  t.match(await c.info(h.handle), { refs: { handles: 1, mappings: 0 } }, 'the refused requests hold nothing');
  t.match(clientRow(await c.status(), 'plain'), { mappings: 0, handles: 1 });

  // a short smoke run: another process (also without native calls) allocates, writes, sends; a device reads
  const p = await spawnMapper(t, nd.socket, 'plain-proc', { BUFFERD_NO_NATIVE: '1' });
  const ph = await p.call<HandleInfo>('alloc', { pool: 'default', size: SIZE });
  t.same(await p.cmd('fill', { handle: ph.handle, length: SIZE, seed: 140 }), { written: SIZE }, 'write');
  t.same(await p.cmd('verify', { handle: ph.handle, length: SIZE, seed: 140 }), want(SIZE, 140), 'read');
  const got = new Promise<HandleEvent>((resolve) => c.once('handle', resolve));
  await p.call('send', ph.handle, 'plain');
  const ch = (await got).handle;
  t.equal(sha256(await c.read(ch, 0, SIZE)), patternSha(SIZE, 140), 'send: the receiver reads the bytes');
  t.match(await p.call('register', ph.handle, 'video'), { driver: 'video', buffer: ph.buffer }, 'register with a non-coherent device');
  const seq0 = (await c.violations()).total;
  await p.call('sync', ph.handle, { phase: 'start', access: 'write' });
  await p.cmd('fill', { handle: ph.handle, length: SIZE, seed: 141 });
  await p.call('sync', ph.handle, { phase: 'end', access: 'write' });
  t.equal(sha256(await c.device.read('video', ch, 0, SIZE)), patternSha(SIZE, 141), 'sync end write: the device reads the new bytes');
  await c.device.write('video', ch, 0, pattern(SIZE, 142));
  await p.call('sync', ph.handle, { phase: 'start', access: 'read' });
  t.same(await p.cmd('verify', { handle: ph.handle, length: SIZE, seed: 142 }), want(SIZE, 142), "sync start read: the CPU reads the device's bytes");
  await p.call('sync', ph.handle, { phase: 'end', access: 'read' });
  const mr = await p.call<{ mapping: number; fd: boolean }>('mapRemote', ph.handle);
  t.match(mr, { fd: false, size: SIZE, bytes: SIZE }, 'a daemon-side mapping (no nonce) still works');
  await p.call('sync', ph.handle, { phase: 'start', access: 'read' });
  t.same(await p.cmd('verify', { mapping: mr.mapping, length: SIZE, seed: 142 }), want(SIZE, 142), 'and reads through {mapping}');
  await p.call('sync', ph.handle, { phase: 'end', access: 'read' });
  await p.call('unregister', ph.handle, 'video');
  t.equal((await c.violations()).total, seq0, 'the synced flow recorded no violation');
});
