/**
 * Zero copy between real client processes (test/fixtures/mapper.mjs, which
 * counts every request its client makes): two processes map the same
 * 64 MiB buffer; what one stores through its mapping the other's mapping
 * and the daemon's `read` return, and no request is made per access. A
 * read-only mapping (access 'read', or a handle sent with rights ['read'])
 * is PROT_READ: a store through it kills the process with SIGSEGV and the
 * buffer keeps its bytes.
 */
import t, { type Test } from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, sha256, poll, rejection, type Line } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { spawnMapper, patternSha, MiB, KiB } from '../helpers/zerocopy.js';
import type { HandleInfo } from '../../client/index.js';

const d = await startDaemon(t, { logLevel: 'info' });
const obs = await client(t, d.socket, 'observer');

interface MapResult {
  mapping: number;
  size: number;
  cache: string;
  rights: string[];
  length: number;
}
interface Requests {
  total: number;
  byOp: Record<string, number>;
}
const delta = (a: Requests, b: Requests) => ({
  total: b.total - a.total,
  byOp: Object.fromEntries(Object.entries(b.byOp).map(([k, v]) => [k, v - (a.byOp[k] ?? 0)]).filter(([, v]) => v !== 0)),
});

t.test('two processes map one 64 MiB buffer: stores through one mapping are the bytes of the other and of read, with no request per access', async (t) => {
  const SIZE = 64 * MiB;
  const a = await spawnMapper(t, d.socket, 'writer');
  const b = await spawnMapper(t, d.socket, 'reader');
  const h = await a.call<HandleInfo>('alloc', { pool: 'default', size: SIZE });
  t.match(h, { size: SIZE, cache: 'writeback', kind: 'direct' });
  await a.call('send', h.handle, 'reader');
  const ev = await b.wait((l) => l['event'] === 'handle' && l['buffer'] === h.buffer, 'the handle event');
  const bh = ev['handle'] as number;

  const ma = await a.cmd<MapResult>('map', { handle: h.handle });
  const mb = await b.cmd<MapResult>('map', { handle: bh });
  for (const [who, m] of [['writer', ma], ['reader', mb]] as const) {
    t.same(m, { mapping: m.mapping, size: SIZE, cache: 'writeback', rights: ['read', 'write'], length: SIZE }, `${who}'s mapping: the whole buffer, writable`);
  }
  t.match(await obs.status(), { clients: [{ name: 'observer', mappings: 0 }, { name: 'writer', mappings: 1 }, { name: 'reader', mappings: 1 }] });
  t.same(await b.cmd('mdigest', { mapping: mb.mapping, length: SIZE }), { length: SIZE, nonZero: 0, sha256: sha256(Buffer.alloc(SIZE)) }, 'a new buffer maps as zeros');

  // A stores 64 MiB through its mapping: no request at all
  const a0 = await a.cmd<Requests>('requests');
  const b0 = await b.cmd<Requests>('requests');
  t.same(await a.cmd('mfill', { mapping: ma.mapping, length: SIZE, seed: 5 }), { stored: SIZE });
  const a1 = await a.cmd<Requests>('requests');
  t.same(delta(a0, a1), { total: 0, byOp: {} }, 'storing 64 MiB through the mapping made no request');

  // B's mapping already holds them (it was mapped before A wrote: shared pages, not a copy)
  const want = { equal: true, length: SIZE, firstMismatch: -1, sha256: patternSha(SIZE, 5) };
  t.same(await b.cmd('mverify', { mapping: mb.mapping, length: SIZE, seed: 5 }), want, "B's mapping shows A's 64 MiB");
  const b1 = await b.cmd<Requests>('requests');
  t.same(delta(b0, b1), { total: 0, byOp: {} }, 'reading 64 MiB through the mapping made no request');

  // read through the daemon: the same bytes, and what that costs in requests for contrast
  t.same(await b.cmd('verify', { handle: bh, length: SIZE, seed: 5 }), want, "the daemon's read returns the same 64 MiB");
  const b2 = await b.cmd<Requests>('requests');
  const perRead = Math.ceil(SIZE / obs.session.limits.maxDataBytes);
  t.same(delta(b1, b2), { total: perRead, byOp: { read: perRead } }, `read through the daemon: ${perRead} requests of at most maxDataBytes`);

  // and the other way: B stores the last 64 KiB and a byte in the middle; A and the daemon see them
  t.same(await b.cmd('mfill', { mapping: mb.mapping, offset: SIZE - 64 * KiB, length: 64 * KiB, seed: 6 }), { stored: 64 * KiB });
  await b.cmd('mpoke', { mapping: mb.mapping, offset: SIZE / 2, value: 0x5a });
  t.same(await a.cmd('mverify', { mapping: ma.mapping, offset: SIZE - 64 * KiB, length: 64 * KiB, seed: 6 }), { equal: true, length: 64 * KiB, firstMismatch: -1, sha256: patternSha(64 * KiB, 6, SIZE - 64 * KiB) }, "A's mapping shows B's store");
  t.same(await a.cmd('mdigest', { mapping: ma.mapping, offset: SIZE / 2, length: 1 }), { length: 1, nonZero: 1, sha256: sha256(Buffer.from([0x5a])) }, "and B's single byte");
  t.same(await a.cmd('verify', { handle: h.handle, offset: SIZE - 64 * KiB, length: 64 * KiB, seed: 6 }), { equal: true, length: 64 * KiB, firstMismatch: -1, sha256: patternSha(64 * KiB, 6, SIZE - 64 * KiB) }, 'read through the daemon agrees');

  // the whole window, map to unmap, is a handful of requests
  t.same(await a.cmd('unmap', { mapping: ma.mapping }), { unmapped: ma.mapping });
  t.same(await b.cmd('unmap', { mapping: mb.mapping }), { unmapped: mb.mapping });
  const a2 = await a.cmd<Requests>('requests');
  const window = delta(a0, a2);
  t.ok(window.total <= 4, `the writer made ${window.total} request(s) from before its 64 MiB store to its unmap (${JSON.stringify(window.byOp)})`);
  t.match(await a.call<HandleInfo>('info', h.handle), { refs: { handles: 2, mappings: 0 } }, 'unmapped in both processes: no mapping reference left');
});

/** An owner in the test process writes a pattern; a mapper process maps it; returns what the test needs. */
async function shared(t: Test, name: string, rights: ('read' | 'write' | 'share')[] | undefined, seed: number) {
  const SIZE = 64 * KiB;
  const owner = await client(t, d.socket, `owner-${name}`);
  const p = await spawnMapper(t, d.socket, name);
  const h = await owner.alloc({ pool: 'default', size: SIZE });
  await owner.write(h.handle, 0, pattern(SIZE, seed));
  await owner.send(h.handle, name, rights === undefined ? {} : { rights });
  const ev = await p.wait((l: Line) => l['event'] === 'handle' && l['buffer'] === h.buffer, 'the handle event');
  return { SIZE, owner, p, h, ph: ev['handle'] as number };
}

const RO = [
  { label: "access 'read' on a handle with every right", rights: undefined, access: 'read' },
  { label: "a handle sent with rights ['read'], default access", rights: ['read'], access: undefined },
] as const;

for (const [i, c] of RO.entries()) {
  t.test(`PROT_READ (${c.label}): reads work, a store kills the process with SIGSEGV, the buffer keeps its bytes`, async (t) => {
    const seed = 20 + i;
    const { SIZE, owner, p, h, ph } = await shared(t, `ro-${i}`, c.rights === undefined ? undefined : [...c.rights], seed);
    if (c.rights !== undefined) {
      for (const access of ['write', 'readwrite'] as const) {
        const e = await rejection(p.cmd('map', { handle: ph, access }));
        t.equal(e.code, 'EPERM', `map with access '${access}' on a read-only handle: EPERM`);
        t.match(e.details, { handle: ph, missing: 'write' });
      }
      t.equal((await owner.info(h.handle)).refs.mappings, 0, 'the refused maps hold nothing');
    }
    const m = await p.cmd<MapResult>('map', c.access === undefined ? { handle: ph } : { handle: ph, access: c.access });
    t.same(m.rights, ['read'], "the mapping lacks 'write'");
    t.same(await p.cmd('mverify', { mapping: m.mapping, length: SIZE, seed }), { equal: true, length: SIZE, firstMismatch: -1, sha256: patternSha(SIZE, seed) }, 'the process reads the buffer through it');
    t.equal((await owner.info(h.handle)).refs.mappings, 1);

    p.send({ id: 9999, cmd: 'mpoke', mapping: m.mapping, offset: 1000, value: (pattern(1, seed, 1000)[0]! + 1) & 0xff });
    const exit = await p.exited;
    t.same(exit, { code: null, signal: 'SIGSEGV' }, 'the store faulted: the process died by SIGSEGV');
    t.notOk(p.lines.some((l) => l['reply'] === 9999), 'it never answered the store');

    t.equal(sha256(await owner.read(h.handle, 0, SIZE)), patternSha(SIZE, seed), 'the buffer kept its bytes (the byte stored to is unchanged)');
    const refs = await poll(() => owner.info(h.handle), (x) => x.refs.mappings === 0 && x.holders === 1);
    t.match(refs, { refs: { handles: 1, mappings: 0 }, holders: 1 }, "the dead process's mapping and handle are released");
  });
}

t.test('control: a writable mapping takes the same store, and the owner reads it', async (t) => {
  const seed = 30;
  const { owner, p, h, ph } = await shared(t, 'rw', undefined, seed);
  const m = await p.cmd<MapResult>('map', { handle: ph });
  t.same(m.rights, ['read', 'write']);
  const value = (pattern(1, seed, 1000)[0]! + 1) & 0xff;
  t.same(await p.cmd('mpoke', { mapping: m.mapping, offset: 1000, value }), { poked: 1000 }, 'the process survives the store');
  t.same([...(await owner.read(h.handle, 999, 3))], [pattern(1, seed, 999)[0], value, pattern(1, seed, 1001)[0]], 'the owner reads the stored byte through the daemon, its neighbours untouched');
  t.equal(p.child.exitCode, null, 'still running');
});
