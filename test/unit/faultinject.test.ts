/**
 * Unit tests of fault injection: the injector's should_fail semantics (nth,
 * times, probability with a seed, client and pool filters, one request one
 * call), and each point where it is asked, failing on the real path: the
 * same error as the real failure (plus details.injected) and the same
 * counters after.
 */
import t from 'tap';
import fc from 'fast-check';
import { FaultInjector, checkFaultSpec, markInjected, tagInjected, FAULT_POINTS } from '../../daemon/lib/faultinject.js';
import { Machine } from '../../daemon/alloc/machine.js';
import { Swiotlb } from '../../daemon/dma/swiotlb.js';
import { Iommu } from '../../daemon/dma/iommu.js';
import { TokenTable } from '../../daemon/buffers/tokens.js';
import { SharedBuffer, R_ALL } from '../../daemon/buffers/handles.js';
import { BufferdError } from '../../protocol/errors.js';
import { buildConfig, ConfigError } from '../../daemon/config/config.js';
import { SMALL_RAW } from '../helpers/machine.js';
import { smallConfig, eager, snap, sameSnap, errorOf, hpStat, MiB, H } from '../helpers/machine.js';

/** Which of n calls fail. */
function fires(f: FaultInjector, n: number, point: 'alloc' = 'alloc', site = {}): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (f.shouldFail(point, site)) out.push(i);
  return out;
}

t.test('unarmed points never fail; nth is the interval, times the limit', async (t) => {
  const f = new FaultInjector();
  t.same(fires(f, 10), [], 'not armed: no failure');
  f.arm('alloc', {});
  t.same(fires(f, 3), [1, 2, 3], 'defaults: every call fails, no limit');
  f.arm('alloc', { nth: 3 });
  t.same(fires(f, 10), [3, 6, 9], 'nth 3: every third call');
  f.arm('alloc', { nth: 3, times: 1 });
  t.same(fires(f, 10), [3], 'nth 3, times 1: the third call only (fail-nth)');
  t.match(f.list(), [{ point: 'alloc', nth: 3, times: 0, calls: 3, fired: 1, source: 'op' }], 'inert once times is spent; later calls are not counted');
  t.equal(f.totals.alloc, 3 + 3 + 1);
  t.equal(f.fired, 7);
  t.same(f.clear('alloc'), ['alloc']);
  t.same(fires(f, 3), [], 'cleared');
  t.same(f.clear(), [], 'nothing left to clear');
  t.equal(f.status().total, 7, 'totals survive clearing');
});

t.test('property: with probability 100, call k fails iff k is a multiple of nth, for the first `times` such calls', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }), fc.integer({ min: 0, max: 60 }), (nth, times, n) => {
        const f = new FaultInjector();
        f.arm('iova', times === undefined ? { nth } : { nth, times });
        const got: number[] = [];
        for (let i = 1; i <= n; i++) if (f.shouldFail('iova')) got.push(i);
        const want: number[] = [];
        for (let k = nth; k <= n && (times === undefined || want.length < times); k += nth) want.push(k);
        return JSON.stringify(got) === JSON.stringify(want);
      }),
    ),
  );
});

t.test('probability is a seeded percentage: same seed, same failures', async (t) => {
  const run = (seed: number, p: number) => {
    const f = new FaultInjector();
    f.arm('alloc', { probability: p, seed });
    return fires(f, 2000);
  };
  t.same(run(7, 30), run(7, 30), 'repeatable');
  t.not(JSON.stringify(run(7, 30)), JSON.stringify(run(8, 30)), 'another seed, other calls');
  const n = run(1, 30).length;
  t.ok(n > 500 && n < 700, `about 30% of 2000 calls fail (${n})`);
  t.same(run(1, 0), [], 'probability 0: never');
  t.equal(run(1, 100).length, 2000, 'probability 100: always');
});

t.test('client and pool filters: only matching calls count', async (t) => {
  const f = new FaultInjector();
  f.arm('alloc', { client: 'victim', nth: 2 });
  t.same(fires(f, 4, 'alloc', { client: 'other' }), [], 'another client: never, not counted');
  t.same(fires(f, 4, 'alloc', { client: 'victim' }), [2, 4]);
  f.current = { client: 'victim', pool: null, failed: null };
  t.ok(f.shouldFail('alloc') === false && f.shouldFail('alloc'), 'the current site is the default');
  f.current = { client: null, pool: null, failed: null };
  f.arm('token', { pool: 'wc' });
  t.notOk(f.shouldFail('token', { pool: 'default' }));
  t.ok(f.shouldFail('token', { pool: 'wc' }));
});

t.test('within: a point that fired keeps failing to the end of the request, uncounted; current is restored', async (t) => {
  const f = new FaultInjector();
  f.arm('hugepage', { times: 1 });
  const seen = f.within({ client: 'a', pool: 'huge' }, () => [f.shouldFail('hugepage'), f.shouldFail('hugepage'), f.current.client, f.current.pool]);
  t.same(seen, [true, true, 'a', 'huge'], 'the retry inside the same request fails too');
  t.match(f.list(), [{ fired: 1, calls: 1, times: 0 }]);
  t.notOk(f.shouldFail('hugepage'), 'the next request: times spent');
  t.same(f.current, { client: null, pool: null, failed: null }, 'restored');
  t.throws(() => f.within({ client: 'b' }, () => { throw new Error('x'); }));
  t.equal(f.current.client, null, 'restored after a throw');
});

t.test('bad specs are EINVAL naming the field and the limit, and change nothing', async (t) => {
  const f = new FaultInjector();
  for (const [point, spec, field] of [
    ['nope', {}, 'point'],
    ['alloc', { nth: 0 }, 'nth'],
    ['alloc', { times: 1.5 }, 'times'],
    ['alloc', { probability: 101 }, 'probability'],
    ['alloc', { probability: Number.NaN }, 'probability'],
    ['alloc', { seed: -1 }, 'seed'],
  ] as const) {
    const e = errorOf(() => f.arm(point, spec as never));
    t.equal(e.code, 'EINVAL');
    t.match(e.message, `field '${field}'`, `${field}: ${e.message}`);
  }
  t.same(f.list(), [], 'nothing armed');
  t.equal(checkFaultSpec('connection', {}), 'connection');
  t.equal(FAULT_POINTS.length, 7);
});

t.test('markInjected and tagInjected add details.injected to typed errors only', async (t) => {
  const e = markInjected(new BufferdError('ENOMEM', 'x', { pool: 'p' })) as BufferdError;
  t.same(e.details, { pool: 'p', injected: true });
  const plain = new Error('y');
  t.equal(markInjected(plain), plain);
  const f = new FaultInjector();
  t.equal(tagInjected(null, () => 3), 3);
  const untouched = errorOf(() => tagInjected(f, () => { throw new BufferdError('EINVAL', 'z'); }));
  t.equal(untouched.details, undefined, 'no injection fired: the error is not marked');
});

/** A machine with an injector; eager decay so purges change nothing between runs. */
function machine(f: FaultInjector | null = null): Machine {
  const m = new Machine(eager(smallConfig()));
  m.injectFaults(f);
  return m;
}

t.test('alloc: the same ENOMEM as a pool that really ran out, and the same counters', async (t) => {
  // pool 'low' has maxBytes 6M: a 4 MiB buffer, then another, really fails
  const real = machine();
  real.alloc({ pool: 'low', size: 4 * MiB, owner: 1 });
  const before = snap(real);
  const eReal = errorOf(() => real.alloc({ pool: 'low', size: 4 * MiB, owner: 1 }));
  sameSnap(t, snap(real), before, 'a real failure changes nothing');

  const f = new FaultInjector();
  const inj = machine(f);
  inj.alloc({ pool: 'low', size: 4 * MiB, owner: 1 });
  f.arm('alloc', { pool: 'low' });
  const eInj = errorOf(() => inj.alloc({ pool: 'low', size: 4 * MiB, owner: 1 }));
  t.equal(eInj.code, eReal.code);
  t.equal(eInj.message, eReal.message, 'same message');
  t.same(eInj.details, { ...eReal.details, injected: true }, 'same details, plus injected');
  sameSnap(t, snap(inj), snap(real), 'same counters as the real failure');

  // where it would succeed: it fails, changes nothing, and the next call succeeds
  f.arm('alloc', { nth: 2, times: 1 });
  const fresh = snap(inj);
  inj.alloc({ pool: 'default', size: 1000, owner: 2 });
  const mid = snap(inj);
  const e = errorOf(() => inj.alloc({ pool: 'default', size: 1000, owner: 2 }));
  t.match(e, { code: 'ENOMEM', details: { pool: 'default', injected: true } });
  t.match(e.message, /^pool 'default': cannot allocate 1000 B \(1000 bytes\): /);
  sameSnap(t, snap(inj), mid, 'the injected failure changed nothing');
  t.not(mid, fresh);
  inj.alloc({ pool: 'default', size: 1000, owner: 2 });
  t.same(inj.checkInvariants(), []);
});

t.test('hugepage: no surplus page, as when overcommit is reached; counters as the real shortfall', async (t) => {
  // real: overcommit 0, the 4 persistent pages taken, the 5th fails
  const real = machine();
  real.setHugepages(H, 4, 0);
  real.alloc({ pool: 'huge', size: 4 * H, owner: 1 });
  const eReal = errorOf(() => real.alloc({ pool: 'huge', size: H, owner: 1 }));
  const f = new FaultInjector();
  const inj = machine(f);
  inj.alloc({ pool: 'huge', size: 4 * H, owner: 1 });
  f.arm('hugepage', { times: 1 });
  const eInj = errorOf(() => inj.alloc({ pool: 'huge', size: H, owner: 1 }));
  t.equal(eInj.code, 'ENOMEM');
  t.equal(eInj.details?.['injected'], true);
  t.same(Object.keys(eInj.details!).sort(), [...Object.keys(eReal.details!), 'injected'].sort(), 'same details');
  t.match(eInj.message, /^pool 'huge': cannot allocate 2 MiB \(2097152 bytes\): 0 of 4 2 MiB hugepages available/);
  // everything but the configured overcommit is the same
  const norm = (m: Machine) => snap(m).replace(/"overcommit":\d+/g, '"overcommit":_');
  sameSnap(t, norm(inj), norm(real), 'same hugepage and pool counters');
  t.match(hpStat(inj), { surplus: 0, total: 4 });
  t.match(f.list(), [{ point: 'hugepage', fired: 1, calls: 1 }], 'one request, one call: the retry after purge failed with it');
  inj.alloc({ pool: 'huge', size: H, owner: 1 });
  t.equal(hpStat(inj).surplus, 1, 'disarmed by times: a surplus page comes');
  t.same(inj.checkInvariants(), []);
});

t.test('iova and bounce: the allocator finds no room; the same error and counters as the real exhaustion', async (t) => {
  const io = new Iommu('tiny', [4096], 64 * 1024);
  const big = [{ addr: 0x8000_0000, len: 128 * 1024 }];
  const eReal = errorOf(() => io.map(big));
  const eInj = errorOf(() => io.map(big, () => true));
  t.equal(eInj.message, eReal.message);
  t.same(eInj.details, { ...eReal.details, injected: true });
  const roomy = new Iommu('roomy', [4096], 2 ** 30);
  const seg = [{ addr: 0x8000_0000, len: 60 * 1024 }];
  const e = errorOf(() => roomy.map(seg, () => true));
  t.match(e, { code: 'ENOMEM', details: { device: 'roomy', injected: true } });
  t.equal(roomy.map(seg, () => false).deviceAddress > 0, true, 'not injected: mapped');

  const tlb = new Swiotlb(0x1000_0000, 8 * 2048);
  tlb.map('cam', 6 * 2048);
  const bReal = errorOf(() => tlb.map('cam', 4 * 2048));
  const counts = () => [tlb.usedSlots, tlb.maps, tlb.full];
  const after = counts();
  const f = new FaultInjector();
  tlb.faults = f;
  f.arm('bounce', { times: 2 });
  const bInj = errorOf(() => tlb.map('cam', 4 * 2048));
  t.equal(bInj.message, bReal.message);
  t.same(bInj.details, { ...bReal.details, injected: true });
  t.same(counts(), [after[0], after[1], after[2]! + 1], 'full counted once more, nothing mapped');
  t.match(errorOf(() => tlb.map('cam', 2048)), { details: { injected: true } }, 'fits, but injected');
  t.equal(tlb.map('cam', 2048), 0x1000_0000 + 6 * 2048, 'times spent: mapped');
});

t.test('token: a live token taken for expired, as a real expiry is', async (t) => {
  const clock = { now: 1000 };
  const f = new FaultInjector();
  const run = (inject: boolean) => {
    const tokens = new TokenTable(() => clock.now);
    if (inject) tokens.faults = f;
    const released: number[] = [];
    const b = new SharedBuffer({ id: 1, pool: { name: 'default' } } as never, 1, (x) => released.push(x.id));
    const owner = { name: 'p', usage: { bytes: 0, tokens: 0 }, maxTokens: 10 };
    const { token } = tokens.export(b, R_ALL, inject ? 60_000 : 10, 1, null, owner);
    if (!inject) clock.now += 10;
    const e = errorOf(() => tokens.take(token));
    clock.now = 1000;
    return { e, counts: [tokens.size, tokens.issued, tokens.imported, tokens.expired, owner.usage.tokens, b.refs.inflight], released };
  };
  f.arm('token', { pool: 'default' });
  const real = run(false);
  const inj = run(true);
  t.equal(inj.e.message, real.e.message);
  t.equal(inj.e.code, 'ENOENT');
  t.same(inj.e.details, { injected: true });
  t.same(inj.counts, real.counts, 'same table counters and references');
  t.same(inj.released, real.released, 'the buffer freed alike');
  t.same(inj.counts, [0, 1, 0, 1, 0, 0]);
});

t.test("the config's faultInjection: a spec per point, checked by the schema; a pool filter names a configured pool", async (t) => {
  const cfg = (fi: unknown) => buildConfig({ ...structuredClone(SMALL_RAW), faultInjection: fi }, 'test');
  t.same(buildConfig(structuredClone(SMALL_RAW), 'test').faultInjection, {}, 'absent: nothing armed');
  t.same(cfg({ alloc: { nth: 3, times: 1, pool: 'low' }, connection: { client: 'x' } }).faultInjection, { alloc: { nth: 3, times: 1, pool: 'low' }, connection: { client: 'x' } });
  for (const [bad, where] of [
    [{ alloc: { pool: 'nosuch' } }, /\/faultInjection\/alloc\/pool: no pool named 'nosuch'/],
    [{ alloc: { nth: 0 } }, /\/faultInjection\/alloc\/nth/],
    [{ alloc: { probability: 200 } }, /\/faultInjection\/alloc\/probability/],
    [{ oom: {} }, /\/faultInjection\/oom: unknown field/],
    [{ token: { every: 2 } }, /\/faultInjection\/token\/every: unknown field/],
  ] as const) {
    t.throws(() => cfg(bad), ConfigError);
    try {
      cfg(bad);
    } catch (e) {
      t.match((e as Error).message, where);
    }
  }
});
