/**
 * Property test of the machine: random operation sequences keep every
 * invariant; failed allocations change nothing.
 */
import t from 'tap';
import fc from 'fast-check';
import { Machine } from '../../daemon/alloc/machine.js';
import type { MachineConfig } from '../../daemon/config/machine-config.js';
import type { PhysBuffer } from '../../daemon/alloc/pool.js';
import { alignedUsize, SMALL_MAXCLASS } from '../../daemon/alloc/sizeclasses.js';
import { BufferdError } from '../../protocol/errors.js';
import { H, PAGE, withPools, defaultConfig, smallConfig, snap, diff, poolStat } from '../helpers/machine.js';

type Op =
  | { k: 'alloc'; pool: number; size: number; align: number; populate: boolean; owner: number }
  | { k: 'free'; i: number }
  | { k: 'touch'; i: number }
  | { k: 'hp'; which: number; nr: number; overcommit: number | null }
  | { k: 'tick'; ms: number }
  | { k: 'purge' }
  | { k: 'gone'; owner: number; freeFirst: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('alloc' as const),
      pool: fc.nat(),
      // small classes, large classes below the direct threshold, anything up to 3 pages of the pool
      size: fc.oneof(fc.integer({ min: 1, max: 3 * 4096 }), fc.integer({ min: -H, max: -1 }), fc.maxSafeNat()),
      align: fc.nat(),
      populate: fc.boolean(),
      owner: fc.nat(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('free' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('touch' as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('hp' as const), which: fc.nat(), nr: fc.nat(), overcommit: fc.option(fc.integer({ min: 0, max: 6 })) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 30_000 })) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('purge' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('gone' as const), owner: fc.nat(), freeFirst: fc.boolean() }) },
);

/** Per-pool settings the property test varies: decay time and arena sharing. */
const poolSettingsArb = (n: number, decays: number[]) =>
  fc.array(fc.record({ dirtyDecayMs: fc.constantFrom(...decays), shared: fc.boolean() }), { minLength: n, maxLength: n });

/** What changed the machine, to replay it on a fresh one. */
type Action =
  | { k: 'alloc'; pool: string; size: number; align: number; owner: number; populate: boolean; id: number }
  | { k: 'free'; id: number }
  | { k: 'touch'; id: number }
  | { k: 'hp'; size: number; nr: number; overcommit: number | undefined }
  | { k: 'clock'; now: number }
  | { k: 'purge' }
  /** A failed request purged the pool's dirty chunks. */
  | { k: 'forcePurge'; pool: string }
  | { k: 'gone'; owner: number };

function replay(cfg: MachineConfig, log: Action[]): Machine {
  let clock = 0;
  const m = new Machine(cfg, () => clock);
  for (const a of log) {
    if (a.k === 'alloc') {
      const b = m.alloc({ pool: a.pool, size: a.size, align: a.align, owner: a.owner, populate: a.populate });
      if (b.id !== a.id) throw new Error(`replay: buffer ${b.id}, expected ${a.id}`);
    } else if (a.k === 'free') m.free(m.buffer(a.id)!);
    else if (a.k === 'touch') m.touch(m.buffer(a.id)!);
    else if (a.k === 'hp') m.setHugepages(a.size, a.nr, a.overcommit);
    else if (a.k === 'clock') clock = a.now;
    else if (a.k === 'purge') m.purgeExpired();
    else if (a.k === 'forcePurge') m.pool(a.pool).purge(true);
    else m.ownerGone(a.owner);
  }
  return m;
}

/** Bytes of a buffer the test stamps and checks: all of a small one, head and tail of a big one. */
function stampRanges(size: number): [number, number][] {
  const n = 64 * 1024;
  return size <= 2 * n ? [[0, size]] : [[0, n], [size - n, n]];
}

/** Run one random sequence on a fresh machine; throws naming the step that broke a rule. */
function run(cfg: MachineConfig, ops: Op[]): void {
  let clock = 0;
  const m = new Machine(cfg, () => clock);
  const fail = (what: string, step: number): never => {
    throw new Error(`step ${step} (${JSON.stringify(ops[step])}): ${what}`);
  };
  const pools = [...m.pools.values()];
  const sizes = [...m.hugepages.keys()];
  const heldBy = (region: string) => [...m.hugepages.values()].filter((h) => h.region === region).reduce((a, h) => a + h.total * h.size, 0);
  const start = new Map(m.regionStatus().map((r) => [r.name, r.free + heldBy(r.name)]));
  const live: PhysBuffer[] = [];
  const log: Action[] = [];
  /** Current client ids; a client that went away is replaced by a new one (ids are never reused). */
  const owners = [1, 2, 3];
  let nextOwner = 4;
  const gone = new Set<number>();
  const sumPools = (k: 'dirty' | 'mapped') => m.poolStatus().reduce((a, p) => a + p[k], 0);

  const zeroed = (b: PhysBuffer, step: number) => {
    for (const [off, len] of stampRanges(b.size)) {
      if (!m.read(b, off, len).every((x) => x === 0)) fail(`buffer ${b.id} (${b.kind}, ${b.size} bytes) is not zeroed at ${off}..${off + len}`, step);
      m.fill(b, off, len, 0xa0 | (b.id & 0xf));
    }
  };
  const freeBuf = (b: PhysBuffer) => {
    live.splice(live.indexOf(b), 1);
    m.free(b);
    log.push({ k: 'free', id: b.id });
  };

  const bad0 = m.checkInvariants();
  if (bad0.length > 0) fail(bad0.join('; '), -1);
  ops.forEach((o, step) => {
    if (o.k === 'alloc') {
      const pool = pools[o.pool % pools.length]!;
      const span = 3 * Math.max(pool.pageSize, H);
      const size = o.size < 0 ? -o.size : o.size <= 3 * 4096 ? Math.max(1, o.size) : 1 + (o.size % span);
      const align = 2 ** (o.align % (Math.log2(pool.maxAlign) + 2));
      const owner = owners[o.owner % owners.length]!;
      const before = snap(m);
      const dirtyBefore = poolStat(m, pool.name).dirty;
      const purgesBefore = poolStat(m, pool.name).purges;
      let b: PhysBuffer;
      try {
        b = m.alloc({ pool: pool.name, size, align, owner, populate: o.populate });
      } catch (e) {
        if (!(e instanceof BufferdError) || (e.code !== 'ENOMEM' && e.code !== 'EINVAL')) throw e;
        if (e.code === 'ENOMEM' && !e.message.startsWith(`pool '${pool.name}': cannot allocate `)) fail(`ENOMEM text: ${e.message}`, step);
        if (dirtyBefore === 0 || e.code === 'EINVAL') {
          if (snap(m) !== before) fail(`failed alloc (${e.code}: ${e.message}) changed the machine\n${diff(before, snap(m))}`, step);
        } else {
          // the only permitted side effect: the pool's dirty chunks were purged early
          const st = poolStat(m, pool.name);
          if (st.dirty !== 0 || st.purges <= purgesBefore) fail(`failed alloc kept dirty chunks: ${JSON.stringify(st)}`, step);
          const twin = replay(cfg, log);
          if (snap(twin) !== before) fail(`replay is not deterministic\n${diff(snap(twin), before)}`, step);
          twin.pool(pool.name).purge(true);
          if (snap(m) !== snap(twin)) fail(`failed alloc (${e.message}) did more than purge dirty chunks\n${diff(snap(twin), snap(m))}`, step);
          log.push({ k: 'forcePurge', pool: pool.name });
        }
        return;
      }
      live.push(b);
      log.push({ k: 'alloc', pool: pool.name, size, align, owner, populate: o.populate, id: b.id });
      const usize = alignedUsize(size, align);
      const direct = usize >= pool.directThreshold || align > pool.directThreshold;
      if (b.size !== size || b.owner !== owner || b.align !== align) fail(`buffer fields ${JSON.stringify({ size: b.size, owner: b.owner, align: b.align })}`, step);
      if (direct) {
        // whole pages, or the size class in a pool that keeps freed direct pages (decay off) unless only the pages fit
        const exact = Math.ceil(size / pool.pageSize) * pool.pageSize;
        const count = b.usize / pool.pageSize;
        if (b.kind !== 'direct' || (b.usize !== exact && b.usize !== pool.usizeFor(size, align, true)) || b.addr !== -1 || b.arena !== null) fail(`direct buffer ${b.kind} usize ${b.usize} addr ${b.addr}`, step);
        const lazy = b.reservedPages > 0;
        if (lazy && (o.populate || pool.pageSize === PAGE || pool.cfg.contiguous || b.reservedPages !== count)) fail(`lazy buffer from ${pool.name}`, step);
        if (!lazy && b.blocks.reduce((a, x) => a + x.npages * PAGE, 0) !== b.usize) fail(`direct buffer holds pages for ${b.usize} bytes`, step);
      } else {
        if (b.kind !== (usize <= SMALL_MAXCLASS ? 'small' : 'large') || b.usize !== usize || b.arena === null || b.blocks.length !== 0 || b.reservedPages !== 0) {
          fail(`arena buffer ${b.kind} usize ${b.usize} (class ${usize}) reserved ${b.reservedPages}`, step);
        }
        if (b.segments.length !== 1 || b.segments[0]!.addr !== b.addr || b.addr % align !== 0) fail(`arena buffer at 0x${b.addr.toString(16)}`, step);
      }
      if (b.reservedPages === 0) {
        if (b.segments[0]!.addr % align !== 0) fail(`buffer not aligned to ${align}`, step);
        zeroed(b, step);
      }
    } else if (o.k === 'free' || o.k === 'touch') {
      if (live.length === 0) return;
      if (o.k === 'free') freeBuf(live[o.i % live.length]!);
      else {
        const lazy = live.filter((b) => b.reservedPages > 0);
        const b = lazy.length > 0 ? lazy[o.i % lazy.length]! : live[o.i % live.length]!;
        const wasLazy = b.reservedPages > 0;
        const before = wasLazy ? null : snap(m);
        m.touch(b);
        log.push({ k: 'touch', id: b.id });
        if (b.reservedPages !== 0 || b.segments.reduce((a, s) => a + s.len, 0) !== b.size) fail('touch did not back the buffer', step);
        if (before !== null && snap(m) !== before) fail('touching a backed buffer changed the machine', step);
        if (wasLazy) {
          if (b.blocks.length !== b.usize / b.pool.pageSize) fail('touch backed the wrong number of pages', step);
          zeroed(b, step);
        }
      }
    } else if (o.k === 'hp') {
      const size = sizes[o.which % sizes.length]!;
      const hp = m.hugepages.get(size)!;
      const slots = m.mem.region(hp.region).size / size;
      const nr = o.nr % (Math.min(slots, 600) + 3);
      try {
        const r = m.setHugepages(size, nr, o.overcommit ?? undefined);
        if (r.reached !== hp.persistent || r.reached > nr) fail(`setHugepages reached ${r.reached}`, step);
        log.push({ k: 'hp', size, nr, overcommit: o.overcommit ?? undefined });
      } catch (e) {
        if (!(e instanceof BufferdError) || e.code !== 'EINVAL' || !hp.isGigantic) throw e;
      }
    } else if (o.k === 'tick') {
      clock += o.ms;
      log.push({ k: 'clock', now: clock });
    } else if (o.k === 'purge') {
      const dirty = sumPools('dirty');
      const mapped = sumPools('mapped');
      const pages = m.purgeExpired();
      log.push({ k: 'purge' });
      if (dirty - sumPools('dirty') !== pages * PAGE || mapped - sumPools('mapped') !== pages * PAGE) fail(`purged ${pages} pages, dirty ${dirty} → ${sumPools('dirty')}`, step);
      const d = m.nextDecayDeadline();
      if (d !== null && d <= clock) fail(`a dirty chunk due at ${d} survived the purge at ${clock}`, step);
    } else {
      const slot = o.owner % owners.length;
      const owner = owners[slot]!;
      if (o.freeFirst) for (const b of live.filter((x) => x.owner === owner)) freeBuf(b);
      m.ownerGone(owner);
      log.push({ k: 'gone', owner });
      gone.add(owner);
      owners[slot] = nextOwner++;
      if (o.freeFirst) {
        for (const p of pools) {
          if (p.cfg.arena === 'per-client' && m.poolDetail(p.name).arenas.some((a) => a.owner === owner)) fail(`pool ${p.name} kept the arena of client ${owner}`, step);
        }
      }
    }
    const bad = m.checkInvariants();
    if (bad.length > 0) fail(bad.join('; '), step);
    for (const p of pools) {
      const arenas = m.poolDetail(p.name).arenas;
      if (p.cfg.arena === 'shared' ? arenas.some((a) => a.owner !== 0) || arenas.length > 1 : arenas.some((a) => a.owner === 0)) {
        fail(`pool ${p.name} (${p.cfg.arena}) has arenas of ${arenas.map((a) => a.owner).join(', ')}`, step);
      }
      // a gone client's arena lives on only while its buffers do
      for (const a of arenas) if (gone.has(a.owner) && a.live === 0) fail(`pool ${p.name} kept the empty arena of gone client ${a.owner}`, step);
      const st = poolStat(m, p.name);
      if (p.cfg.dirtyDecayMs === 0 && st.dirty !== 0) fail(`pool ${p.name} has dirty chunks with decay 0`, step);
      if (st.arenas !== arenas.length || st.directBuffers !== live.filter((b) => b.pool === p && b.kind === 'direct').length) fail(`pool ${p.name} counts ${JSON.stringify(st)}`, step);
    }
  });
  // every client goes away after freeing its buffers (with decay off a pool keeps freed direct pages dirty: dirtycache.ts)
  for (const b of [...live]) freeBuf(b);
  for (const o of [...owners, ...gone]) m.ownerGone(o);
  let bad = m.checkInvariants();
  if (bad.length > 0) fail(bad.join('; '), ops.length);
  for (const p of m.poolStatus()) {
    const per = p.arena === 'per-client';
    if (p.requested !== 0 || p.allocated !== 0 || p.active !== 0 || p.buffers !== 0 || p.retained !== 0 || (per && (p.arenas !== 0 || p.mapped !== (p.dirtyDecayMs === -1 ? p.dirty : 0)))) {
      fail(`pool ${p.name} not empty: ${JSON.stringify(p)}`, ops.length);
    }
  }
  // the shared arenas keep their dirty chunks until they decay
  clock += 10_001;
  m.purgeExpired();
  for (const p of m.poolStatus()) {
    if (p.dirtyDecayMs >= 0 && p.dirtyDecayMs <= 10_000 && p.mapped !== 0) fail(`pool ${p.name} holds ${p.mapped} bytes after decay`, ops.length);
    if (p.mapped !== p.dirty) fail(`pool ${p.name}: ${JSON.stringify(p)}`, ops.length);
  }
  for (const p of pools) p.purge(true);
  bad = m.checkInvariants();
  if (bad.length > 0) fail(bad.join('; '), ops.length);
  for (const p of m.poolStatus()) if (p.mapped !== 0 || p.pages !== 0 || p.dirty !== 0) fail(`pool ${p.name} holds pages: ${JSON.stringify(p)}`, ops.length);
  for (const h of m.hugepageStatus()) if (h.surplus !== 0 || h.reserved !== 0 || h.inUse !== 0) fail(`hugepages left: ${JSON.stringify(h)}`, ops.length);
  for (const r of m.regionStatus()) {
    if (r.free !== start.get(r.name)! - heldBy(r.name)) fail(`region ${r.name}: ${r.free} free, expected ${start.get(r.name)! - heldBy(r.name)}`, ops.length);
  }
}

t.test('random operation sequences keep every invariant, and failed allocations change nothing', async (t) => {
  for (const [name, base, maxLength] of [
    ['default machine', defaultConfig(), 40],
    ['small machine', smallConfig(), 60],
  ] as const) {
    const n = base.pools.length;
    const cfgOf = (s: { dirtyDecayMs: number; shared: boolean }[]) =>
      withPools(base, (_p, i) => ({ dirtyDecayMs: s[i]!.dirtyDecayMs, arena: s[i]!.shared ? 'shared' : 'per-client' }));
    const seqs = fc.array(opArb, { minLength: 10, maxLength, size: 'max' });
    // decay 0: no dirty chunks, so a failed allocation changes nothing at all
    fc.assert(fc.property(poolSettingsArb(n, [0]), seqs, (s, ops) => run(cfgOf(s), ops)), { seed: 7, numRuns: 60 });
    t.pass(`${name}, decay 0`);
    // dirty chunks decay (or never do): a failed allocation may only purge them early
    fc.assert(fc.property(poolSettingsArb(n, [-1, 0, 1, 100, 10_000]), seqs, (s, ops) => run(cfgOf(s), ops)), { seed: 7, numRuns: 80 });
    t.pass(`${name}, mixed decay`);
    // the shipped settings: per-client arenas, 10 s decay
    fc.assert(fc.property(seqs, (ops) => run(base, ops)), { seed: 7, numRuns: 40 });
    t.pass(`${name}, as configured`);
  }
});

