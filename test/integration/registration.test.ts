/**
 * Registration refuses a buffer whose real attributes don't satisfy the
 * driver, with code EATTR, every failing attribute in details.mismatches
 * ({attribute, required, actual}) and a pool that would satisfy the driver
 * in details.hint. Merging several drivers' constraints: LCM of the
 * alignments, the smallest mask, the cache intersection (EINVAL with the
 * conflicts when empty); alloc {for} fails the same way, or ENOENT with the
 * reason each pool doesn't fit.
 */
import t, { type Test } from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { rejection } from '../helpers/procs.js';
import { client, driverStatus, KiB, MiB, GiB } from '../helpers/drivers.js';
import { alignmentOf, type Mismatch, type Conflict } from '../../protocol/attributes.js';
import type { BufferClient, Constraints, HandleInfo, MergeResult } from '../../client/index.js';

const hex = (n: number) => `0x${n.toString(16)}`;

/** Register and expect EATTR with exactly these mismatches; returns the hint. */
async function refused(t: Test, c: BufferClient, h: HandleInfo, driver: string, want: Mismatch[], what: string): Promise<string | null> {
  const e = await rejection(c.register(h.handle, driver));
  t.equal(e.code, 'EATTR', `${what}: EATTR`);
  const det = e.details as { driver: string; buffer: number; mismatches: Mismatch[]; hint: string | null };
  t.same(det.mismatches, want, `${what}: exactly ${want.map((m) => m.attribute).join(', ')}`);
  t.match(det, { driver, buffer: h.buffer });
  for (const m of want) t.match(e.message, m.attribute, `${what}: the message names ${m.attribute}`);
  t.same((await c.info(h.handle)).registrations, [], `${what}: not registered`);
  return det.hint;
}

/** A scatter-gather buffer: a 4K pool's direct buffers come in buddy blocks; the first one on a fresh machine may be one run. */
async function scattered(t: Test, c: BufferClient, size = 5 * MiB): Promise<HandleInfo> {
  for (let i = 0; i < 4; i++) {
    const h = await c.alloc({ pool: 'default', size });
    if (h.segments.length > 1) return h;
  }
  t.fail('no scatter-gather buffer in 4 tries');
  throw new Error('no scatter-gather buffer');
}

/** The hint names a pool from which a buffer for the driver does register. */
async function hintWorks(t: Test, c: BufferClient, hint: string | null, driver: string, align?: number): Promise<void> {
  t.type(hint, 'string', `${driver}: a hint`);
  const pools = (await c.pools()).pools.map((p) => p.name);
  t.ok(pools.includes(hint!), `${driver}: hint '${hint}' is a pool`);
  const h = await c.alloc({ pool: hint!, size: 4 * KiB, ...(align !== undefined ? { align } : {}) });
  const r = await c.register(h.handle, driver);
  t.equal(r.driver, driver, `${driver}: a buffer from '${hint}' registers`);
  await c.unregister(h.handle, driver);
  await c.close(h.handle);
}

t.test('each single mismatch is reported alone', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const drv = await client(t, d.socket, 'custom');

  // alignment: jpeg wants 64 KiB; the second 4 KiB contig buffer lands 4K- but not 64K-aligned
  const first = await c.alloc({ pool: 'contig', size: 4 * KiB });
  let mis = await c.alloc({ pool: 'contig', size: 4 * KiB });
  if (mis.segments[0]!.addr % (64 * KiB) === 0) mis = await c.alloc({ pool: 'contig', size: 4 * KiB });
  const addr = mis.segments[0]!.addr;
  t.ok(addr % (4 * KiB) === 0 && addr % (64 * KiB) !== 0, `contig buffer at ${hex(addr)}: 4K- but not 64K-aligned`);
  let hint = await refused(t, c, mis, 'jpeg', [{ attribute: 'align', required: 64 * KiB, actual: alignmentOf(addr) }], 'align (jpeg)');
  t.equal(hint, 'contig');
  await hintWorks(t, c, hint, 'jpeg', 64 * KiB);
  t.equal((await c.register(first.handle, 'jpeg')).deviceAddress, first.segments[0]!.addr, 'the 64K-aligned neighbour registers');

  // alignment again, with a client driver wanting 2 MiB and a 4 KiB buffer that isn't 2M-aligned
  await drv.attachDriver('align2m', { align: 2 * MiB });
  t.ok(mis.segments[0]!.addr % (2 * MiB) !== 0);
  await refused(t, c, mis, 'align2m', [{ attribute: 'align', required: 2 * MiB, actual: alignmentOf(addr) }], 'align (2 MiB)');

  // cache policy: a write-back buffer on the gpu (the IOMMU hides everything physical)
  const wb = await c.alloc({ pool: 'default', size: 64 * KiB });
  hint = await refused(t, c, wb, 'gpu', [{ attribute: 'cache', required: ['writecombine', 'uncached'], actual: 'writeback' }], 'cache (gpu)');
  t.equal(hint, 'wc');
  await hintWorks(t, c, hint, 'gpu');

  // contiguity: a scatter-gather buffer on a contiguous device without a mask
  const sg = await scattered(t, c);
  t.ok(sg.segments.length > 1, `5 MiB 'default' buffer has ${sg.segments.length} segments`);
  t.equal(sg.segments[0]!.addr % 4096, 0);
  await drv.attachDriver('contig-only', { contiguous: true });
  hint = await refused(t, c, sg, 'contig-only', [{ attribute: 'contiguous', required: true, actual: `${sg.segments.length} segments` }], 'contiguous');
  await hintWorks(t, c, hint, 'contig-only');

  // region: the dsp reaches only the TCM
  const ct = await c.alloc({ pool: 'contig', size: 4 * KiB });
  hint = await refused(t, c, ct, 'dsp', [{ attribute: 'regions', required: ['tcm'], actual: 'carveout' }], 'regions (dsp)');
  t.equal(hint, 'tcm');
  await hintWorks(t, c, hint, 'dsp');

  // DMA mask without bounce: a single-segment buffer above 4 GiB on a 32-bit device
  const hi = await c.alloc({ pool: 'default', size: 4 * KiB });
  const end = hi.segments[0]!.addr + hi.segments[0]!.len;
  t.equal(hi.segments.length, 1);
  t.ok(hi.segments[0]!.addr >= 4 * GiB, `'default' buffer at ${hex(hi.segments[0]!.addr)}: above 4 GiB`);
  await drv.attachDriver('dma32-only', { dmaMask: 32 });
  hint = await refused(t, c, hi, 'dma32-only', [{ attribute: 'dmaMask', required: '32 bits (below 0x100000000)', actual: `segment ends at ${hex(end)}` }], 'dmaMask');
  await hintWorks(t, c, hint, 'dma32-only');

  // segment limits: capture takes at most 256 KiB per segment; a scatter-gather
  // device gets longer segments split (its scatterlist shows the entries)…
  const bigseg = sg.segments.reduce((a, s) => Math.max(a, s.len), 0);
  t.ok(bigseg > 256 * KiB);
  const capReg = await c.register(sg.handle, 'capture');
  t.ok(capReg.segments.every((s) => s.len <= 256 * KiB), 'every capture entry is at most 256 KiB');
  t.equal(capReg.segments.reduce((a, s) => a + s.len, 0), sg.size, 'and they cover the buffer');
  t.ok(capReg.segments.length > sg.segments.length, `${sg.segments.length} segments became ${capReg.segments.length} entries`);
  await c.unregister(sg.handle, 'capture');
  // …but a device that needs one range, or has too few entries, refuses
  await drv.attachDriver('one-256k', { contiguous: true, maxSegmentSize: 256 * KiB });
  const contigBig = await c.alloc({ pool: 'contig', size: 512 * KiB });
  await refused(t, c, contigBig, 'one-256k', [{ attribute: 'maxSegmentSize', required: 256 * KiB, actual: 512 * KiB }], 'maxSegmentSize (one range)');
  await drv.attachDriver('few-entries', { maxSegments: 2, maxSegmentSize: 256 * KiB });
  const pieces = sg.segments.reduce((a, s) => a + Math.ceil(s.len / (256 * KiB)), 0);
  await refused(t, c, sg, 'few-entries', [{ attribute: 'maxSegments', required: 2, actual: pieces }], 'maxSegments after splitting');
  await drv.attachDriver('boundary', { segmentBoundary: 64 * KiB, maxSegments: 1 });
  const crossing = contigBig.segments[0]!;
  await refused(t, c, contigBig, 'boundary', [{ attribute: 'segmentBoundary', required: 64 * KiB, actual: `segment ${hex(crossing.addr)}+${crossing.len} crosses it` }], 'segmentBoundary');

  // every refusal counted
  t.match(await driverStatus(c, 'jpeg'), { refused: 1, registered: 2, registrations: 1 });
  t.match(await driverStatus(c, 'gpu'), { refused: 1, registered: 1, registrations: 0 });
  t.match(await driverStatus(c, 'dsp'), { refused: 1 });
});

t.test('a buffer wrong in three ways lists all three', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  // display: contiguous, write-combine, below 4 GiB; this buffer is scatter-gather, write-back, above 4 GiB
  const h = await scattered(t, c);
  t.ok(h.segments.length > 1);
  const last = h.segments.find((s) => s.addr + s.len > 4 * GiB)!;
  const hint = await refused(
    t,
    c,
    h,
    'display',
    [
      { attribute: 'cache', required: ['writecombine'], actual: 'writeback' },
      { attribute: 'contiguous', required: true, actual: `${h.segments.length} segments` },
      { attribute: 'dmaMask', required: '32 bits (below 0x100000000)', actual: `segment ends at ${hex(last.addr + last.len)}` },
    ],
    'display',
  );
  t.equal(hint, 'contig');
  await hintWorks(t, c, hint, 'display');
  // the dsp: regions, cache is fine (it doesn't care), contiguous and mask fail too
  await refused(
    t,
    c,
    h,
    'dsp',
    [
      { attribute: 'regions', required: ['tcm'], actual: 'dram' },
      { attribute: 'contiguous', required: true, actual: `${h.segments.length} segments` },
      { attribute: 'dmaMask', required: '32 bits (below 0x100000000)', actual: `segment ends at ${hex(h.segments[0]!.addr + h.segments[0]!.len)}` },
    ],
    'dsp',
  );
});

t.test('merge: LCM of alignments, smallest mask, cache intersection, conflicts', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const drv = await client(t, d.socket, 'custom');

  const three = await c.merge(['gpu', 'jpeg', 'capture']);
  t.match(three.merged, { align: 64 * KiB, dmaMask: 32, contiguous: true, iommuDevices: ['gpu'], bounceDevices: ['capture'], addressLimit: 4 * GiB, maxSegmentSize: 256 * KiB, maxSegments: 128 });
  await drv.attachDriver('align2m', { align: 2 * MiB, cache: ['writecombine', 'uncached', 'writeback'] });
  t.equal((await c.merge(['jpeg', 'align2m'])).merged.align, 2 * MiB, 'LCM of 64 KiB and 2 MiB');
  t.equal((await c.merge(['align2m', 'capture'])).merged.align, 2 * MiB);
  t.match((await c.merge(['gpu'])).merged, { dmaMask: 40, addressLimit: null }, 'behind an IOMMU the mask limits IOVA, not the buffer');
  await drv.attachDriver('mask36', { dmaMask: 36, coherent: true });
  const gm = await c.merge(['gpu', 'mask36']);
  t.match(gm.merged, { dmaMask: 36, addressLimit: 2 ** 36, coherent: false, contiguous: false, iommuDevices: ['gpu'] }, 'the smallest mask; one non-coherent device makes it non-coherent');
  t.match((await c.merge(['mask36', 'nic'])).merged, { dmaMask: 36, coherent: true, cache: ['writeback'] }, 'coherent only when every device snoops');
  t.same((await c.merge(['nic'])).merged, {
    drivers: ['nic'],
    align: 1,
    contiguous: false,
    maxSegments: 64,
    maxSegmentSize: null,
    segmentBoundary: null,
    cache: ['writeback'],
    regions: null,
    dmaMask: 64,
    addressLimit: null,
    coherent: true,
    iommuDevices: [],
    bounceDevices: [],
  });
  const vc = await c.merge(['video', 'capture']);
  t.same(vc.merged.cache, ['writeback', 'writecombine']);
  t.equal(vc.merged.addressLimit, null, 'video sees through its IOMMU, capture bounces: no address limit');
  t.same(vc.pools.filter((p) => p.fits).map((p) => p.name), ['default', 'huge', 'wc', 'contig', 'dma32', 'giant'], 'pages bigger than 256 KiB are split into capture-sized entries');

  // empty cache intersection: EINVAL naming the drivers, with the conflicts
  const e = await rejection(c.merge(['display', 'nic']));
  t.equal(e.code, 'EINVAL');
  t.match(e.message, /display/);
  t.match(e.message, /nic/);
  const conflicts = (e.details as { conflicts: Conflict[] }).conflicts;
  t.equal(conflicts.length, 1);
  t.match(conflicts[0], {
    attribute: 'cache',
    wants: [
      { driver: 'display', value: ['writecombine'] },
      { driver: 'nic', value: ['writeback'] },
    ],
  });
  // empty region intersection
  await drv.attachDriver('carveout-only', { regions: ['carveout'] });
  const er = await rejection(c.merge(['dsp', 'carveout-only']));
  t.equal(er.code, 'EINVAL');
  t.match((er.details as { conflicts: Conflict[] }).conflicts, [{ attribute: 'regions', wants: [{ driver: 'dsp', value: ['tcm'] }, { driver: 'carveout-only', value: ['carveout'] }] }]);
  // alloc for conflicting drivers fails the same way
  const ea = await rejection(c.alloc({ for: ['display', 'nic'], size: 4 * KiB }));
  t.equal(ea.code, 'EINVAL');
  t.same(ea.details, e.details, 'alloc {for} reports the same conflicts');
  t.equal((await c.status()).buffers.live, 0, 'nothing allocated');

  // no pool satisfies dsp + display: ENOENT with each pool's reasons
  const en = await rejection(c.alloc({ for: ['dsp', 'display'], size: 4 * KiB }));
  t.equal(en.code, 'ENOENT');
  t.match(en.message, /dsp \+ display/);
  t.match(en.message, /contig: regions/);
  t.match(en.message, /tcm: cache/);
  const pools = (en.details as { pools: MergeResult['pools'] }).pools;
  t.equal(pools.length, 8, 'every pool');
  t.ok(pools.every((p) => !p.fits && p.misfits.length > 0), 'each with its misfits');
  t.same(pools.find((p) => p.name === 'tcm')!.misfits, [{ attribute: 'cache', required: ['writecombine'], actual: 'uncached' }]);
  t.same(pools.find((p) => p.name === 'contig')!.misfits, [{ attribute: 'regions', required: ['tcm'], actual: 'carveout' }]);

  // unknown drivers; bad client constraints
  t.equal((await rejection(c.merge(['gpu', 'nosuch']))).code, 'ENOENT');
  t.equal((await rejection(c.alloc({ for: ['nosuch'], size: 1 }))).code, 'ENOENT');
  t.equal((await rejection(c.constraints('nosuch'))).code, 'ENOENT');
  t.equal((await rejection(drv.attachDriver('odd', { align: 3000 }))).code, 'EINVAL', 'align must be a power of two');
  t.equal((await rejection(drv.attachDriver('odd', { regions: ['nowhere'] }))).code, 'EINVAL', 'regions must exist');

  // alloc {for} honours the merged result
  const got = await c.alloc({ for: ['dsp', 'gpu'], size: 4 * KiB });
  t.match(got, { pool: 'tcm', placement: { for: ['dsp', 'gpu'], pool: 'tcm' } });
  t.equal((await c.register(got.handle, 'dsp')).deviceAddress, got.segments[0]!.addr);
  t.not((await c.register(got.handle, 'gpu')).iommu, null);
  const j = await c.alloc({ for: ['jpeg', 'align2m'], size: 4 * KiB });
  t.equal(j.segments[0]!.addr % (2 * MiB), 0, 'aligned to the merged 2 MiB');
  t.equal(j.align, 2 * MiB);
  const cons: Constraints = (await c.constraints('align2m')).constraints;
  t.same(cons, { align: 2 * MiB, cache: ['writecombine', 'uncached', 'writeback'] });
});
