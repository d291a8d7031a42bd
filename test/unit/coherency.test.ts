/**
 * Streaming-DMA ownership and the coherency checker (daemon/dma/coherency.ts):
 * each violation kind exactly when /tmp/coherency-semantics.md says, the
 * data each flow moves, bounce buffers, write-combine, and the modes.
 */
import t from 'tap';
import { rng } from '../../daemon/dma/cache.js';
import { VIOLATION_KINDS, type Violation } from '../../daemon/dma/coherency.js';
import { SharedBuffer } from '../../daemon/buffers/handles.js';
import type { Registration } from '../../daemon/dma/drivers.js';
import { BufferdError } from '../../protocol/errors.js';
import { drain } from '../../daemon/lib/slices.js';
import { world, PAGE, A, BOUNCE, C1, C2, DEV } from '../helpers/coherency-world.js';

const s = (x: string) => Buffer.from(x);
const z = (n: number) => Buffer.alloc(n);

t.test('the correct streaming flow on a non-coherent device moves data both ways with no violation', async (t) => {
  const { coh, cache, buffer, register, unregister, devRead, devWrite, kinds } = world();
  // two segments: one straddles a page boundary
  const b = buffer([{ addr: A + PAGE - 96, len: 128 }, { addr: A + 3 * PAGE + 32, len: 128 }]);
  const gpu = register(b, 'gpu', false);
  t.ok(cache.snapshot().cachedLines > 0, 'the device took it: its lines were prefetched');
  t.same(coh.sync(C1, b, 'start', 'write'), { cleaned: 0, invalidated: 0, flushed: 0 });
  coh.cpuWrite(C1, b, 120, s('across segments!'));
  t.same(coh.sync(C1, b, 'end', 'write'), { cleaned: 2, invalidated: 0, flushed: 0 });
  t.same(devRead(gpu, 120, 16), s('across segments!'));
  devWrite(gpu, 200, s('from the device'));
  t.equal(coh.sync(C1, b, 'start', 'read', 192, 64).invalidated, 2, 'only the lines of the range (segment 2 is not line aligned)');
  t.same(coh.cpuRead(C1, b, 200, 15), s('from the device'));
  t.same(coh.sync(C1, b, 'end', 'read'), { cleaned: 0, invalidated: 0, flushed: 0 });
  unregister(C1, gpu);
  t.same(coh.cpuRead(C1, b, 120, 16), s('across segments!'), 'after unregister the CPU owns it');
  t.same(kinds(), []);
  t.equal(coh.total, 0);
});

t.test('missing end: the device sees old bytes and a lost write is reported', async (t) => {
  const { coh, store, buffer, register, devRead, kinds, reported, w } = world();
  const b = buffer();
  const gpu = register(b, 'gpu', false);
  coh.sync(C1, b, 'start', 'write');
  coh.cpuWrite(C1, b, 0, s('new data'));
  w.clock = 1234.6;
  t.same(devRead(gpu, 0, 8), z(8), 'old bytes');
  t.same(kinds(), ['device-access-during-cpu-access', 'lost-write']);
  const lw = coh.violations({ kind: 'lost-write' })[0]!;
  t.match(lw, { seq: 2, timeMs: 1235, kind: 'lost-write', client: DEV, buffer: b.id, driver: 'gpu', op: 'device.read', range: { offset: 0, length: 8 }, mode: 'warn' });
  t.match(lw.message, "missing sync {phase:'end', access:'write'}");
  t.same(reported, coh.violations());
  // without any bracket at all: CPU write while the device owns it, then the device reads
  const b2 = buffer([{ addr: A + PAGE, len: 128 }]);
  const gpu2 = register(b2, 'gpu', false);
  coh.cpuWrite(C1, b2, 64, s('x'));
  t.same(devRead(gpu2, 0, 128), z(128));
  t.same(coh.violations({ buffer: b2.id }).map((v) => v.kind), ['cpu-access-while-device-owned', 'lost-write']);
  t.match(coh.violations({ buffer: b2.id })[0]!.message, "missing sync {phase:'start', access:'write'}");
  t.equal(store.residentPages, 0, 'memory never got the writes');
});

t.test("missing start(read) with prefetch 'always': the CPU reads stale bytes", async (t) => {
  const { coh, buffer, register, devWrite, kinds } = world();
  const b = buffer();
  const gpu = register(b, 'gpu', false);
  devWrite(gpu, 70, s('fresh'));
  t.same(kinds(), [], 'device access while it owns the buffer is fine');
  t.same(coh.cpuRead(C1, b, 0, 128), z(128), 'the prefetched lines answer with old bytes');
  t.same(kinds(), ['cpu-access-while-device-owned', 'stale-read']);
  const v = coh.violations({ kind: 'stale-read' })[0]!;
  t.match(v, { client: C1, driver: 'gpu', op: 'read', range: { offset: 64, length: 64 } });
  t.match(v.message, "missing sync {phase:'start', access:'read'}");
  t.match(coh.violations()[0]!, { driver: 'gpu', range: { offset: 0, length: 128 } });
  coh.sync(C1, b, 'start', 'read');
  t.same(coh.cpuRead(C1, b, 70, 5), s('fresh'), 'sync start invalidated them');
  t.equal(coh.total, 2);
});

t.test("prefetch 'none': the same missing start reads correct data (why 'always' is the test default)", async (t) => {
  const { coh, cache, buffer, register, devWrite, kinds } = world({ prefetch: 'none' });
  const b = buffer();
  const gpu = register(b, 'gpu', false);
  t.equal(cache.snapshot().cachedLines, 0);
  devWrite(gpu, 70, s('fresh'));
  t.same(coh.cpuRead(C1, b, 70, 5), s('fresh'));
  t.same(kinds(), ['cpu-access-while-device-owned'], 'the ownership error is still caught, but no stale read shows');
  // 'random' prefetches each line with prefetchRate, from the cache's seeded generator
  const x = world({ prefetch: 'random' });
  x.register(x.buffer([{ addr: A, len: PAGE }]), 'gpu', false);
  const r = rng(1);
  let want = 0;
  for (let i = 0; i < 64; i++) if (r() < 0.5) want++;
  t.equal(x.cache.snapshot().cachedLines, want);
  t.ok(want > 0 && want < 64);
});

t.test('the same flows on a coherent device give correct data and no data-error violations', async (t) => {
  const { coh, cache, store, buffer, register, devRead, devWrite, kinds } = world();
  const b = buffer();
  const nic = register(b, 'nic', true);
  t.equal(cache.snapshot().cachedLines, 0, 'no device ownership, no prefetch');
  t.same(coh.cpuRead(C1, b, 0, 128), z(128));
  coh.cpuWrite(C1, b, 0, s('cpu'));
  t.same(devRead(nic, 0, 3), s('cpu'), 'the device snoops dirty lines');
  t.equal(store.residentPages, 0, 'without a write-back');
  devWrite(nic, 66, s('dev'));
  t.same(coh.cpuRead(C1, b, 66, 3), s('dev'), 'no stale line');
  t.same(kinds(), []);
  // missing end on a coherent device: correct data, only the bracket is reported
  coh.sync(C1, b, 'start', 'rw');
  coh.cpuWrite(C1, b, 10, s('more'));
  t.same(devRead(nic, 10, 4), s('more'));
  devWrite(nic, 20, s('xy'));
  t.same(coh.cpuRead(C1, b, 20, 2), s('xy'));
  t.same(kinds(), ['device-access-during-cpu-access', 'device-access-during-cpu-access']);
  t.match(coh.violations()[0]!, { driver: 'nic', op: 'device.read', client: DEV });
  coh.sync(C1, b, 'end', 'rw');
  devRead(nic, 0, 4);
  t.equal(coh.total, 2);
});

t.test('end-without-start and start-while-open are per client', async (t) => {
  const { coh, buffer, register, devRead, kinds } = world();
  const b = buffer();
  const gpu = register(b, 'gpu', false);
  coh.sync(C1, b, 'end', 'write');
  t.same(kinds(), ['end-without-start']);
  t.match(coh.violations()[0]!, { client: C1, op: 'sync end', range: { offset: 0, length: 256 } });
  t.match(coh.violations()[0]!.message, "missing sync {phase:'start'}");
  coh.sync(C2, b, 'start', 'read');
  coh.sync(C1, b, 'start', 'read', 0, 64);
  t.same(kinds(), ['end-without-start'], "another client's bracket does not count");
  coh.sync(C1, b, 'start', 'write');
  t.same(kinds(), ['end-without-start', 'start-while-open']);
  t.match(coh.violations({ kind: 'start-while-open' })[0]!.message, "opened for 'read'");
  coh.sync(C1, b, 'end', 'write');
  coh.sync(C1, b, 'end', 'write');
  t.equal(coh.countsByKind()['end-without-start'], 2, "C1's end closed only its own bracket");
  devRead(gpu, 0, 4);
  t.equal(coh.countsByKind()['device-access-during-cpu-access'], 1, "C2's bracket is still open");
  coh.sync(C2, b, 'end', 'read');
  devRead(gpu, 0, 4);
  coh.cpuRead(C2, b, 0, 4);
  t.equal(coh.countsByKind()['cpu-access-while-device-owned'], 1, 'the last end gave the device the buffer back');
  t.equal(coh.total, 5);
});

t.test('cpu-write-in-read-bracket: a write inside a read bracket of the same client', async (t) => {
  const { coh, buffer, register, kinds } = world();
  const b = buffer();
  register(b, 'gpu', false);
  coh.sync(C1, b, 'start', 'read');
  coh.cpuRead(C1, b, 0, 8);
  coh.cpuWrite(C2, b, 0, s('ok')); // C2 has no bracket, but the CPU side owns the buffer
  t.same(kinds(), []);
  coh.cpuWrite(C1, b, 8, s('bad'));
  t.same(kinds(), ['cpu-write-in-read-bracket']);
  t.match(coh.violations()[0]!, { client: C1, op: 'write', range: { offset: 8, length: 3 }, driver: null });
  coh.sync(C1, b, 'end', 'read');
  coh.sync(C1, b, 'start', 'rw');
  coh.cpuWrite(C1, b, 8, s('ok'));
  coh.sync(C1, b, 'end', 'rw');
  t.equal(coh.total, 1);
});

t.test('unsynced-unregister: dirty lines, an open bracket, both; none after proper syncs', async (t) => {
  const { coh, buffer, register, unregister } = world();
  const unreg = (setup: (b: SharedBuffer) => void) => {
    const b = buffer();
    const r = register(b, 'gpu', false);
    setup(b);
    const before = coh.total;
    unregister(C1, r);
    return coh.violations({ kind: 'unsynced-unregister', buffer: b.id }).map((v) => ({ ...v, fresh: coh.total > before }));
  };
  const dirty = unreg((b) => coh.cpuWrite(C1, b, 0, s('x'.repeat(70))));
  t.equal(dirty.length, 1);
  t.match(dirty[0]!, { op: 'unregister', driver: 'gpu', range: { offset: 0, length: 256 } });
  t.match(dirty[0]!.message, /with 2 dirty or pending cache line\(s\): missing sync \{phase:'end'\}/);
  const open = unreg((b) => coh.sync(C1, b, 'start', 'read'));
  t.match(open[0]!.message, /with a CPU bracket open: missing/);
  const both = unreg((b) => {
    coh.sync(C1, b, 'start', 'write');
    coh.cpuWrite(C1, b, 0, s('x'));
  });
  t.match(both[0]!.message, /1 dirty or pending cache line\(s\) and a CPU bracket open/);
  const fine = unreg((b) => {
    coh.sync(C1, b, 'start', 'write');
    coh.cpuWrite(C1, b, 0, s('x'));
    coh.sync(C1, b, 'end', 'write');
  });
  t.same(fine, []);
});

t.test('sync-out-of-range is recorded, then EINVAL', async (t) => {
  const { coh, buffer, register } = world();
  const b = buffer();
  register(b, 'gpu', false);
  const e = t.throws(() => coh.sync(C1, b, 'start', 'read', 200, 100)) as unknown as BufferdError;
  t.equal(e.code, 'EINVAL');
  t.match(e.details, { offset: 200, length: 100, size: 256 });
  t.match(coh.violations(), [{ kind: 'sync-out-of-range', op: 'sync start', range: { offset: 200, length: 100 } }]);
  coh.sync(C1, b, 'end', 'read');
  t.equal(coh.countsByKind()['end-without-start'], 1, 'no bracket was opened');
  coh.sync(C1, b, 'start', 'read', 200, 56);
  t.equal(coh.total, 2, 'up to the end is fine');
});

t.test('write-combine: the device sees data only after sync end or a fence', async (t) => {
  const { coh, store, buffer, register, devRead, kinds } = world();
  const b = buffer([{ addr: A, len: 256 }], 'writecombine');
  const gpu = register(b, 'gpu', false);
  coh.sync(C1, b, 'start', 'write');
  coh.cpuWrite(C1, b, 60, s('combined'));
  t.same(coh.cpuRead(C1, b, 60, 8), s('combined'), 'the CPU sees its pending writes');
  t.same(store.read(A + 60, 8), z(8));
  t.same(coh.sync(C1, b, 'end', 'write'), { cleaned: 0, invalidated: 0, flushed: 2 });
  t.same(devRead(gpu, 60, 8), s('combined'));
  t.same(kinds(), []);
  // a coherent device does not snoop the WC buffer either: fence
  const b2 = buffer([{ addr: A + PAGE, len: 256 }], 'writecombine');
  const nic = register(b2, 'nic', true);
  coh.cpuWrite(C1, b2, 0, s('wc'));
  t.same(devRead(nic, 0, 2), z(2));
  t.equal(coh.fence(b2), 1);
  t.equal(coh.fence(b2), 0);
  t.same(devRead(nic, 0, 2), s('wc'));
  t.same(kinds(), []);
  // pending WC lines on a non-coherent device read are a lost write
  coh.cpuWrite(C1, b, 0, s('late'));
  t.same(devRead(gpu, 0, 4), z(4));
  t.same(kinds(), ['cpu-access-while-device-owned', 'lost-write']);
});

t.test('uncached memory needs no syncs for correct data', async (t) => {
  const { coh, cache, store, buffer, register, devRead, devWrite } = world();
  const b = buffer([{ addr: A, len: 256 }], 'uncached');
  const gpu = register(b, 'gpu', false);
  coh.cpuWrite(C1, b, 0, s('direct'));
  t.same(store.read(A, 6), s('direct'));
  t.same(devRead(gpu, 0, 6), s('direct'));
  devWrite(gpu, 100, s('back'));
  t.same(coh.cpuRead(C1, b, 100, 4), s('back'));
  t.equal(cache.snapshot().cachedLines, 0);
  t.equal(coh.countsByKind()['stale-read'], 0);
  t.equal(coh.countsByKind()['lost-write'], 0);
  // ownership is policy-independent per the semantics: unbracketed CPU access is still reported
  t.equal(coh.countsByKind()['cpu-access-while-device-owned'], 2);
});

t.test('bounce pieces: data crosses only at mapped(), sync and unmapping()', async (t) => {
  const { coh, store, buffer, register, unregister, devRead, devWrite, kinds } = world();
  const b = buffer();
  coh.cpuWrite(C1, b, 0, s('before map')); // nobody else has it yet
  t.same(kinds(), []);
  const gpu = register(b, 'gpu', false, BOUNCE);
  t.same(store.read(BOUNCE, 10), s('before map'), 'mapped cleaned and copied to the bounce slot');
  t.same(devRead(gpu, 0, 10), s('before map'));
  coh.sync(C1, b, 'start', 'write');
  coh.cpuWrite(C1, b, 0, s('second'));
  t.same(store.read(BOUNCE, 6), s('before'), 'not before sync end');
  coh.sync(C1, b, 'end', 'write');
  t.same(store.read(A, 6), s('second'));
  t.same(devRead(gpu, 0, 6), s('second'));
  devWrite(gpu, 128, s('dev'));
  t.same(store.read(A + 128, 3), z(3), 'the device wrote the slot, not the buffer');
  coh.sync(C1, b, 'start', 'read', 128, 64);
  t.same(coh.cpuRead(C1, b, 128, 3), s('dev'), 'sync start copied it back');
  coh.sync(C1, b, 'end', 'read');
  devWrite(gpu, 200, s('last'));
  t.same(store.read(A + 200, 4), z(4));
  unregister(C1, gpu);
  t.same(store.read(A + 200, 4), s('last'), 'unmapping copied the slot back');
  t.same(coh.cpuRead(C1, b, 200, 4), s('last'), 'and dropped the stale lines');
  t.same(kinds(), []);
});

t.test('strict: each offending op throws ECOHERENCY and changes no data', async (t) => {
  const cases: [string, (x: ReturnType<typeof world>, b: SharedBuffer, r: Registration) => () => unknown][] = [
    ['cpu-access-while-device-owned', (x, b) => () => x.coh.cpuWrite(C1, b, 0, s('zzz'))],
    ['cpu-write-in-read-bracket', (x, b) => (x.coh.sync(C1, b, 'start', 'read'), () => x.coh.cpuWrite(C1, b, 0, s('zzz')))],
    ['device-access-during-cpu-access', (x, b, r) => (x.coh.sync(C1, b, 'start', 'write'), x.coh.cpuWrite(C1, b, 0, s('cpu')), () => x.devWrite(r, 0, s('zzz')))],
    ['lost-write', (x, b, r) => (x.coh.cpuWrite(C1, b, 0, s('cpu')), () => x.devRead(r, 0, 8))],
    ['end-without-start', (x, b) => (x.coh.sync(C1, b, 'start', 'write'), x.coh.cpuWrite(C1, b, 0, s('cpu')), () => x.coh.sync(C2, b, 'end', 'write'))],
    ['start-while-open', (x, b) => (x.coh.sync(C1, b, 'start', 'write'), x.coh.cpuWrite(C1, b, 0, s('cpu')), () => x.coh.sync(C1, b, 'start', 'read'))],
    ['unsynced-unregister', (x, b, r) => (x.coh.sync(C1, b, 'start', 'write'), x.coh.cpuWrite(C1, b, 0, s('cpu')), () => drain(x.coh.checkUnmap(C1, r)))],
    ['stale-read', (x, b, r) => (x.devWrite(r, 0, s('dev')), x.coh.sync(C1, b, 'start', 'write'), () => x.coh.cpuRead(C1, b, 0, 8))],
    ['sync-out-of-range', (x, b) => (x.coh.sync(C1, b, 'start', 'write'), x.coh.cpuWrite(C1, b, 0, s('cpu')), () => x.coh.sync(C1, b, 'end', 'write', 0, 999))],
  ];
  const cpuWrote = new Set(['device-access-during-cpu-access', 'lost-write', 'end-without-start', 'start-while-open', 'unsynced-unregister', 'sync-out-of-range']);
  for (const [kind, prepare] of cases) {
    const x = world();
    const b = x.buffer();
    x.store.fill(A, 256, 0x11);
    const r = x.register(b, 'gpu', false);
    const op = prepare(x, b, r);
    const mem = x.store.read(A, 256);
    const stats = x.cache.snapshot();
    const cpuBefore = Buffer.alloc(256);
    x.cache.read(A, 256, cpuBefore); // the CPU's view, bypassing the checker
    t.same(cpuBefore.subarray(0, 3), cpuWrote.has(kind) ? s('cpu') : Buffer.alloc(3, 0x11), `${kind}: set up as intended`);
    const before = x.coh.total;
    x.w.mode = 'strict';
    let got: unknown;
    const e = t.throws(() => (got = op()), kind) as unknown as BufferdError;
    t.equal(got, undefined, `${kind}: no result`);
    // an invalid request keeps its own error in strict mode too; the violation is still recorded
    if (kind === 'sync-out-of-range') {
      t.equal(e.code, 'EINVAL', kind);
      t.match(x.reported.at(-1), { kind, mode: 'strict' }, `${kind}: reported`);
    } else {
      t.equal(e.code, 'ECOHERENCY', kind);
      t.match(e.details, { violation: { kind, mode: 'strict' } }, kind);
      t.equal(x.reported.at(-1), (e.details as { violation: Violation }).violation, `${kind}: reported`);
    }
    t.equal(x.coh.total, before + 1, `${kind}: recorded once`);
    x.w.mode = 'warn';
    t.same(x.store.read(A, 256), mem, `${kind}: memory unchanged`);
    t.match(x.cache.snapshot(), { dirtyLines: stats.dirtyLines, cleans: stats.cleans, invalidates: stats.invalidates, wcFlushes: stats.wcFlushes }, `${kind}: cache unchanged`);
    t.same(x.coh.cpuRead(C1, b, 0, 256), cpuBefore, `${kind}: the CPU's view is unchanged`);
  }
});

t.test("mode 'off' records nothing and the model still runs", async (t) => {
  const { coh, buffer, register, devWrite, reported, kinds } = world({ mode: 'off' });
  const b = buffer();
  const gpu = register(b, 'gpu', false);
  devWrite(gpu, 0, s('fresh'));
  t.same(coh.cpuRead(C1, b, 0, 5), z(5), 'still stale');
  coh.sync(C1, b, 'end', 'read');
  t.throws(() => coh.sync(C1, b, 'start', 'read', 0, 999), { code: 'EINVAL' });
  t.same(kinds(), []);
  t.same(reported, []);
  t.equal(coh.total, 0);
  t.same(coh.countsByKind(), Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])));
});

t.test('the ring keeps ringSize entries while counts keep counting; violations() filters', async (t) => {
  const { coh, buffer, register } = world({ ringSize: 3 });
  const b1 = buffer();
  const b2 = buffer([{ addr: A + PAGE, len: 64 }]);
  register(b1, 'gpu', false);
  for (let i = 0; i < 4; i++) coh.sync(C1, b1, 'end', 'read');
  coh.cpuRead(C2, b1, 0, 1);
  coh.sync(C1, b2, 'end', 'write');
  t.equal(coh.total, 6);
  t.same(coh.violations().map((v) => v.seq), [4, 5, 6], 'oldest dropped');
  t.match(coh.countsByKind(), { 'end-without-start': 5, 'cpu-access-while-device-owned': 1, 'lost-write': 0 });
  t.same(Object.keys(coh.countsByKind()), [...VIOLATION_KINDS]);
  t.same(coh.violations({ kind: 'end-without-start' }).map((v) => v.seq), [4, 6]);
  t.same(coh.violations({ buffer: b1.id }).map((v) => v.seq), [4, 5]);
  t.same(coh.violations({ buffer: b2.id, kind: 'end-without-start' }).map((v) => v.seq), [6]);
  t.same(coh.violations({ limit: 2 }).map((v) => v.seq), [5, 6], 'the newest N');
  t.same(coh.violations({ kind: 'stale-read' }), []);
  t.match(coh.violations({ kind: 'cpu-access-while-device-owned' })[0]!, { client: { id: 2, name: null }, buffer: b1.id });
});

t.test(
  'unregistering from a coherent device keeps the CPU data it never had to sync',
  async (t) => {
    const { coh, store, buffer, register, unregister, kinds } = world();
    const b = buffer();
    const nic = register(b, 'nic', true);
    coh.cpuWrite(C1, b, 0, s('payload'));
    unregister(C1, nic);
    t.ok(store.read(A, 7).equals(s('payload')) || coh.cache.dirtyIn(A, 64).length === 1, 'the data is still dirty in the cache or in memory');
    t.same(coh.cpuRead(C1, b, 0, 7), s('payload'));
    t.same(kinds(), [], 'a coherent device needs no syncs, so nothing was unsynced');
  },
);
