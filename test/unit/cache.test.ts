/**
 * The simulated CPU cache and write-combine buffer (daemon/dma/cache.ts):
 * every line state transition, device views, prefetch, eviction and stats.
 */
import t from 'tap';
import fc from 'fast-check';
import { CpuCache, rng, type CacheConfig } from '../../daemon/dma/cache.js';
import { PageStore } from '../../daemon/memory/pagestore.js';

const PAGE = 4096;
const A = 0x10000; // page 16, line aligned

function setup(over: Partial<CacheConfig> = {}) {
  const store = new PageStore();
  const cache = new CpuCache(store, { lineSize: 64, capacityLines: 1 << 20, eviction: 'none', wcLines: 8, seed: 1, ...over });
  const read = (addr: number, len: number) => {
    const out = Buffer.alloc(len);
    const { stale } = cache.read(addr, len, out);
    return { data: out, stale };
  };
  const dev = (addr: number, len: number, coherent: boolean) => {
    const out = Buffer.alloc(len);
    cache.deviceRead(addr, len, coherent, out);
    return out;
  };
  return { store, cache, read, dev };
}

const fill = (n: number, v: number) => Buffer.alloc(n, v);

t.test('a CPU write makes lines dirty; memory changes only when cleaned, then lines mirror memory', async (t) => {
  const { store, cache, read } = setup();
  cache.write(A, fill(64, 0xaa));
  t.same(cache.dirtyIn(A, 128), [[0, 64]]);
  t.match(cache.snapshot(), { cachedLines: 1, dirtyLines: 1, cleans: 0 });
  t.ok(store.read(A, 64).equals(fill(64, 0)), 'memory not yet written');
  t.same(read(A, 64), { data: fill(64, 0xaa), stale: [] }, 'the CPU sees its own write');
  t.equal(cache.clean(A, 64), 1);
  t.ok(store.read(A, 64).equals(fill(64, 0xaa)), 'clean wrote the line back');
  t.match(cache.snapshot(), { cachedLines: 1, dirtyLines: 0, cleans: 1 });
  t.same(cache.dirtyIn(A, 64), []);
  t.equal(cache.clean(A, 64), 0, 'nothing left to clean');
  // a mirroring line keeps no copy: a write to memory behind its back shows through
  store.write(A, fill(64, 0xbb));
  t.same(read(A, 64), { data: fill(64, 0xbb), stale: [] });
  t.equal(cache.snapshot().cleans, 1);
});

t.test('a partial-line CPU write keeps the rest of the line from memory', async (t) => {
  const { store, cache, read } = setup();
  store.fill(A, 64, 0x11);
  cache.write(A + 10, fill(4, 0xee));
  const want = fill(64, 0x11);
  want.fill(0xee, 10, 14);
  t.ok(read(A, 64).data.equals(want));
  t.ok(store.read(A, 64).equals(fill(64, 0x11)));
  cache.clean(A + 63, 1);
  t.ok(store.read(A, 64).equals(want), 'the whole line was written back');
});

t.test('invalidate drops dirty data without writing it back', async (t) => {
  const { store, cache, read } = setup();
  store.fill(A, 128, 0x11);
  cache.write(A, fill(128, 0xaa));
  t.equal(cache.invalidate(A + 70, 1), 1, 'only the line touched');
  t.same(cache.dirtyIn(A, 128), [[0, 64]]);
  t.equal(cache.invalidate(A, 128), 1);
  t.equal(cache.invalidate(A, 128), 0);
  t.ok(read(A, 128).data.equals(fill(128, 0x11)), 'the writes are lost');
  t.ok(store.read(A, 128).equals(fill(128, 0x11)));
  t.match(cache.snapshot(), { invalidates: 2, cleans: 0, dirtyLines: 0, cachedLines: 2 });
});

t.test('a CPU read fills mirroring lines; a non-coherent device write leaves them stale', async (t) => {
  const { store, cache, read } = setup();
  store.fill(A, 128, 0x11);
  t.same(read(A, 128), { data: fill(128, 0x11), stale: [] });
  t.match(cache.snapshot(), { cachedLines: 2, dirtyLines: 0 });
  cache.deviceWrite(A + 8, fill(16, 0x22), false);
  const mem = fill(128, 0x11);
  mem.fill(0x22, 8, 24);
  t.ok(store.read(A, 128).equals(mem), 'the device wrote memory');
  // the cache kept the old bytes: the CPU reads them, and the stale range is reported
  t.same(read(A, 128), { data: fill(128, 0x11), stale: [[0, 64]] });
  t.same(read(A + 16, 64), { data: fill(64, 0x11), stale: [[0, 48]] }, 'stale range relative to the read');
  t.same(read(A + 32, 64).stale, [], 'bytes equal to memory are not stale');
  t.same(read(A, 128).stale, [[0, 64]], 'still stale until invalidated');
  t.match(cache.snapshot(), { cachedLines: 2, dirtyLines: 0 });
  cache.invalidate(A, 128);
  t.same(read(A, 128), { data: mem, stale: [] });
});

t.test('an absent line is not made stale by a device write', async (t) => {
  const { store, cache, read } = setup();
  cache.deviceWrite(A, fill(64, 0x33), false);
  t.equal(cache.snapshot().cachedLines, 0);
  t.same(read(A, 64), { data: fill(64, 0x33), stale: [] });
  t.ok(store.read(A, 64).equals(fill(64, 0x33)));
});

t.test('a coherent device write cleans and invalidates first', async (t) => {
  const { store, cache, read } = setup();
  store.fill(A, 128, 0x11);
  read(A + 64, 64); // mirroring line
  cache.write(A, fill(64, 0xaa)); // dirty line
  cache.deviceWrite(A + 16, fill(8, 0x55), true);
  cache.deviceWrite(A + 64, fill(64, 0x66), true);
  const want = Buffer.concat([fill(16, 0xaa), fill(8, 0x55), fill(40, 0xaa), fill(64, 0x66)]);
  t.ok(store.read(A, 128).equals(want), "the CPU's other dirty bytes of the line were written back first");
  t.same(read(A, 128), { data: want, stale: [] }, 'no stale data');
  t.match(cache.snapshot(), { cleans: 1, invalidates: 2, dirtyLines: 0, cachedLines: 2 });
});

t.test('device reads: non-coherent ones see memory, coherent ones snoop dirty lines', async (t) => {
  const { store, cache, dev } = setup();
  store.fill(A, 192, 0x11);
  cache.write(A + 64, fill(64, 0xaa));
  t.ok(dev(A, 192, false).equals(fill(192, 0x11)));
  t.ok(dev(A, 192, true).equals(Buffer.concat([fill(64, 0x11), fill(64, 0xaa), fill(64, 0x11)])));
  t.ok(dev(A + 100, 40, true).equals(Buffer.concat([fill(28, 0xaa), fill(12, 0x11)])), 'partial ranges');
  t.match(cache.snapshot(), { dirtyLines: 1, cleans: 0 }, 'a snoop does not clean');
  t.ok(store.read(A + 64, 64).equals(fill(64, 0x11)));
});

t.test('prefetch: rate 1 caches every line; a rate below 1 is deterministic for a seed', async (t) => {
  const { cache } = setup();
  t.equal(cache.prefetch(A, PAGE), 64);
  t.equal(cache.prefetch(A, PAGE), 0, 'already cached lines are skipped');
  t.match(cache.snapshot(), { prefetches: 64, cachedLines: 64, dirtyLines: 0 });

  // which lines a half-rate prefetch picks: seen through stale reads after a device write
  const picked = (seed: number) => {
    const { cache, read } = setup({ seed });
    const n = cache.prefetch(A, PAGE, 0.5);
    cache.deviceWrite(A, fill(PAGE, 0x77), false);
    const lines = read(A, PAGE).stale.map(([at]) => at / 64);
    t.equal(lines.length, n);
    t.equal(cache.snapshot().prefetches, n);
    return lines;
  };
  const expect = (seed: number) => {
    const r = rng(seed);
    const out: number[] = [];
    for (let i = 0; i < 64; i++) if (r() < 0.5) out.push(i);
    return out;
  };
  const a = picked(7);
  t.ok(a.length > 0 && a.length < 64, `some lines (${a.length})`);
  t.same(picked(7), a, 'same seed, same lines');
  t.same(a, expect(7), 'one draw per absent line, in address order');
  t.notSame(picked(8), a, 'another seed, other lines');
  t.equal(setup().cache.prefetch(A, PAGE, 0), 0, 'rate 0 caches nothing');
});

t.test('write-combine: writes wait until flushed; the CPU sees them, devices do not', async (t) => {
  const { store, cache, dev } = setup();
  store.fill(A, 128, 0x11);
  cache.wc.write(A + 4, fill(4, 0xcc));
  cache.wc.write(A + 60, fill(8, 0xdd)); // spans two lines
  t.ok(cache.wc.pending(A, 64));
  t.ok(cache.wc.pending(A + 100, 1), 'line 1');
  t.notOk(cache.wc.pending(A + 128, 64));
  t.equal(cache.snapshot().wcPendingLines, 2);
  t.match(cache.snapshot(), { cachedLines: 0, dirtyLines: 0 }, 'WC bypasses the cache');
  const cpu = Buffer.alloc(128);
  cache.wc.read(A, 128, cpu);
  const want = fill(128, 0x11);
  want.fill(0xcc, 4, 8).fill(0xdd, 60, 68);
  t.ok(cpu.equals(want), 'the CPU sees its own pending bytes');
  t.ok(dev(A, 128, false).equals(fill(128, 0x11)), 'a device sees memory only');
  t.ok(dev(A, 128, true).equals(fill(128, 0x11)), 'coherent devices do not snoop WC');
  t.equal(cache.wc.flush(A + 64, 64), 1);
  t.equal(cache.wc.flush(A, 64), 1);
  t.equal(cache.wc.flush(A, 128), 0);
  t.ok(store.read(A, 128).equals(want), 'only the written bytes reached memory');
  t.notOk(cache.wc.pending(A, 128));
  t.match(cache.snapshot(), { wcFlushes: 2, wcPendingLines: 0 });
});

t.test('a full write-combine buffer pushes its oldest line to memory', async (t) => {
  const { store, cache } = setup({ wcLines: 3 });
  for (let k = 0; k < 3; k++) cache.wc.write(A + k * 64, fill(64, 0x10 + k));
  cache.wc.write(A + 64, fill(1, 0x99)); // an already pending line takes no new slot
  t.match(cache.snapshot(), { wcPendingLines: 3, wcFlushes: 0 });
  cache.wc.write(A + 3 * 64, fill(64, 0x13));
  t.match(cache.snapshot(), { wcPendingLines: 3, wcFlushes: 1 });
  t.ok(store.read(A, 64).equals(fill(64, 0x10)), 'the oldest line was pushed');
  t.ok(store.read(A + 64, 192).equals(fill(192, 0)), 'the others wait');
  t.notOk(cache.wc.pending(A, 64));
  t.ok(cache.wc.pending(A + 64, 192));
});

t.test('dirtyIn lists dirty line ranges relative to the address', async (t) => {
  const { cache } = setup();
  cache.write(A + 60, fill(10, 1)); // lines 0 and 1
  cache.write(A + 200, fill(1, 2)); // line 3
  t.same(cache.dirtyIn(A, 256), [[0, 64], [64, 64], [192, 64]]);
  t.same(cache.dirtyIn(A + 32, 64), [[0, 32], [32, 32]]);
  t.same(cache.dirtyIn(A + 128, 64), []);
  t.same(cache.dirtyIn(A + PAGE, 64), [], 'an untouched page');
});

t.test('forget drops lines and pending WC without write-back', async (t) => {
  const { store, cache, read } = setup();
  cache.write(A, fill(100, 0xaa));
  read(A + 128, 64);
  cache.wc.write(A + 256, fill(8, 0xbb));
  cache.wc.write(A + PAGE, fill(8, 0xcc)); // outside the range
  cache.forget(A, PAGE);
  t.match(cache.snapshot(), { cachedLines: 0, dirtyLines: 0, wcPendingLines: 1, cleans: 0, invalidates: 0, wcFlushes: 0 });
  t.notOk(cache.wc.pending(A, PAGE));
  t.ok(cache.wc.pending(A + PAGE, 64));
  t.equal(store.residentPages, 0, 'nothing was written back');
  t.same(read(A, 300).data, fill(300, 0));
});

t.test("eviction 'random' writes dirty lines back and counts evictions, deterministically", async (t) => {
  const run = (seed: number) => {
    const { store, cache, read } = setup({ eviction: 'random', capacityLines: 4, seed });
    for (let k = 0; k < 6; k++) cache.write(A + k * PAGE, fill(64, 0xa0 + k));
    const snap = cache.snapshot();
    const inMemory = [0, 1, 2, 3, 4, 5].filter((k) => store.read(A + k * PAGE, 1)[0] === 0xa0 + k);
    // last write wins whatever was evicted (reads may evict again)
    for (let k = 0; k < 6; k++) t.ok(read(A + k * PAGE, 64).data.equals(fill(64, 0xa0 + k)), `page ${k}`);
    return { snap, inMemory };
  };
  const a = run(3);
  t.match(a.snap, { evictions: 2, cachedLines: 4, dirtyLines: 4 });
  t.equal(a.inMemory.length, 2, 'the evicted dirty lines were written back');
  t.same(run(3), a, 'same seed, same evictions');
  // a whole page goes at once, mirroring lines included
  const { cache, read } = setup({ eviction: 'random', capacityLines: 4 });
  read(A, 8 * 64);
  t.match(cache.snapshot(), { evictions: 8, cachedLines: 0 });
  cache.prefetch(A + PAGE, 4 * 64);
  t.match(cache.snapshot(), { evictions: 8, cachedLines: 4, prefetches: 4 }, 'at capacity is fine');
});

t.test('stats counters are exact', async (t) => {
  const { cache, read } = setup();
  cache.write(A, fill(200, 1)); // lines 0-3 dirty
  read(A + 256, 128); // lines 4-5 mirroring
  cache.prefetch(A, 512); // lines 6-7
  cache.clean(A, 64); // 1
  cache.invalidate(A + 64, 64); // 1
  cache.wc.write(A + PAGE, fill(8, 2));
  cache.wc.write(A + PAGE + 64, fill(8, 2));
  cache.wc.flush(A + PAGE, 64);
  t.same(cache.snapshot(), {
    lineSize: 64, cachedLines: 7, dirtyLines: 2, cleans: 1, invalidates: 1, prefetches: 2, wcFlushes: 1, wcPendingLines: 1, evictions: 0,
  });
});

for (const lineSize of [32, 128]) {
  t.test(`line size ${lineSize}`, async (t) => {
    const L = lineSize;
    const { store, cache, read } = setup({ lineSize: L });
    t.equal(cache.line, L);
    cache.write(A + L - 2, fill(4, 0xaa)); // two lines
    t.same(cache.dirtyIn(A, 4 * L), [[0, L], [L, L]]);
    t.match(cache.snapshot(), { lineSize: L, dirtyLines: 2, cachedLines: 2 });
    t.equal(cache.clean(A, 4 * L), 2);
    read(A, 4 * L);
    cache.deviceWrite(A + 3 * L, fill(1, 0x55), false);
    t.same(read(A, 4 * L).stale, [[3 * L, L]], 'stale granularity is one line');
    t.equal(cache.prefetch(A, PAGE), PAGE / L - 4);
    cache.wc.write(A + L - 1, fill(2, 0xcc));
    t.equal(cache.snapshot().wcPendingLines, 2);
    t.equal(cache.wc.flush(A + L, 1), 1);
    t.equal(store.read(A + L, 1)[0], 0xcc);
    t.equal(cache.snapshot().wcPendingLines, 1);
  });
}

t.test('accesses spanning page and line boundaries', async (t) => {
  const { store, cache, read, dev } = setup();
  const at = A + PAGE - 40;
  const data = Buffer.from(Array.from({ length: 100 }, (_, i) => i + 1));
  cache.write(at, data);
  t.same(cache.dirtyIn(at, 100), [[0, 40], [40, 60]], 'last line of page 16, first of page 17');
  t.same(read(at, 100).data, data);
  t.ok(dev(at, 100, true).equals(data));
  t.ok(dev(at, 100, false).equals(Buffer.alloc(100)));
  t.equal(cache.clean(A, 2 * PAGE), 2);
  t.ok(store.read(at, 100).equals(data));
  cache.deviceWrite(at, fill(100, 0x77), false);
  const r = read(at, 100);
  t.same(r.stale, [[0, 40], [40, 60]]);
  t.same(r.data, data);
  t.equal(cache.invalidate(at, 100), 2);
  t.same(read(at, 100).data, fill(100, 0x77));
  t.equal(cache.prefetch(at, 100), 0, 'the read left them mirroring');
  t.equal(cache.invalidate(A, 2 * PAGE), 2);
  t.equal(cache.snapshot().cachedLines, 0);
});

t.test('property: with no device, a CPU read returns what "last CPU write wins, invalidate drops unwritten data" predicts', async (t) => {
  const BASE = A + PAGE - 256; // 16 lines across a page boundary
  const SIZE = 1024;
  const range = fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: 200 })).map(([o, n]) => [o, Math.min(n, SIZE - o)] as const);
  const op = fc.oneof(
    fc.record({ k: fc.constant('write' as const), r: range, v: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ k: fc.constant('clean' as const), r: range }),
    fc.record({ k: fc.constant('invalidate' as const), r: range }),
    fc.record({ k: fc.constant('read' as const), r: range }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const { store, cache, read } = setup();
      const mem = new Uint8Array(SIZE);
      const view = new Uint8Array(SIZE);
      const dirty = new Set<number>();
      const linesOf = (o: number, n: number) => {
        const out: number[] = [];
        for (let l = Math.floor(o / 64); l <= Math.floor((o + n - 1) / 64); l++) out.push(l);
        return out;
      };
      for (const x of ops) {
        const [o, n] = x.r;
        if (x.k === 'write') {
          cache.write(BASE + o, fill(n, x.v));
          view.fill(x.v, o, o + n);
          for (const l of linesOf(o, n)) dirty.add(l);
        } else if (x.k === 'clean') {
          cache.clean(BASE + o, n);
          for (const l of linesOf(o, n)) if (dirty.delete(l)) mem.set(view.subarray(l * 64, l * 64 + 64), l * 64);
        } else if (x.k === 'invalidate') {
          cache.invalidate(BASE + o, n);
          for (const l of linesOf(o, n)) if (dirty.delete(l)) view.set(mem.subarray(l * 64, l * 64 + 64), l * 64);
        }
        const got = read(BASE + o, n);
        if (got.stale.length !== 0) return false;
        if (!got.data.equals(view.subarray(o, o + n))) return false;
      }
      return (
        store.read(BASE, SIZE).equals(mem) &&
        read(BASE, SIZE).data.equals(view) &&
        cache.snapshot().dirtyLines === dirty.size &&
        cache.dirtyIn(BASE, SIZE).length === dirty.size
      );
    }),
    { seed: 20240607, numRuns: 300 },
  );
  t.pass('property held');
});

t.test('per-page line counters always agree with the line states (whole-page fast paths)', async (t) => {
  const PAGES = 6;
  const op = fc.record({
    k: fc.constantFrom('read', 'write', 'clean', 'invalidate', 'prefetch', 'prefetchHalf', 'forget', 'devw', 'devwc', 'wc', 'flushWc'),
    a: fc.nat(PAGES * PAGE),
    n: fc.integer({ min: 1, max: 3 * PAGE }),
    v: fc.nat(255),
  });
  t.doesNotThrow(() => fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const { cache, read } = setup({ capacityLines: 200, eviction: 'random', wcLines: 4 });
      for (const o of ops) {
        const d = fill(o.n, o.v);
        if (o.k === 'read') read(o.a, o.n);
        else if (o.k === 'write') cache.write(o.a, d);
        else if (o.k === 'clean') cache.clean(o.a, o.n);
        else if (o.k === 'invalidate') cache.invalidate(o.a, o.n);
        else if (o.k === 'prefetch') cache.prefetch(o.a, o.n);
        else if (o.k === 'prefetchHalf') cache.prefetch(o.a, o.n, 0.5);
        else if (o.k === 'forget') cache.forget(o.a, o.n);
        else if (o.k === 'devw') cache.deviceWrite(o.a, d, false);
        else if (o.k === 'devwc') cache.deviceWrite(o.a, d, true);
        else if (o.k === 'wc') cache.wc.write(o.a, d);
        else cache.wc.flush(o.a, o.n);
        let cached = 0;
        let dirty = 0;
        for (const p of (cache as unknown as { pages: Map<number, { state: Uint8Array; data: Uint8Array | null; n: number; k: number; d: number }> }).pages.values()) {
          let n = 0;
          let k = 0;
          let dd = 0;
          for (const x of p.state) {
            if (x !== 0) n++;
            if (x === 2 || x === 3) k++;
            if (x === 3) dd++;
          }
          if (n !== p.n || k !== p.k || dd !== p.d) throw new Error(`page counters ${p.n}/${p.k}/${p.d}, states say ${n}/${k}/${dd}`);
          if (n === 0) throw new Error('an empty page record was kept');
          if (k > 0 && p.data === null) throw new Error('kept lines without data');
          cached += n;
          dirty += dd;
        }
        const snap = cache.snapshot();
        if (snap.cachedLines !== cached || snap.dirtyLines !== dirty) throw new Error('global counters');
      }
    }),
    { numRuns: 1000, seed: 5 },
  ), '1000 random operation sequences: every property holds');
});
