/**
 * drivers: what registering a buffer with a device costs.
 *
 * 1. Through the real daemon (embedded default machine), register/unregister
 *    pairs per second on 'gpu' (IOMMU with 4K/64K/2M pages):
 *    - 4KiB: a small 'uncached' buffer (gpu wants write-combine or uncached).
 *    - 64MiB-sg: a 64 MiB direct 'uncached' buffer, scatter-gathered. A fresh
 *      daemon would hand out one contiguous block, so the DRAM is first filled
 *      (256 MiB, then 2 MiB direct buffers until ENOMEM) and every other
 *      2 MiB buffer freed: the 64 MiB buffer is then built from 2 MiB holes.
 *      Its segment count is reported as a figure (`segments`).
 *    Unpipelined (await register, await unregister), after a warm-up, in
 *    rounds that rotate the order of the measurements so machine noise falls
 *    on all; median of the rounds' rates. The 64 MiB case carries baseline
 *    '4KiB'. Also pipelinedPairsPerSec for
 *    4KiB: 16 workers on 16 distinct 4 KiB buffers, each looping
 *    register → unregister, so 16 requests are in flight.
 *
 * 2. In-process, the pure Iommu: mean µs of one map + unmap of a 64 KiB
 *    mapping as the 4 GiB IOVA space fills with 64 KiB mappings (10, 50, 90,
 *    99 %; baseline 'fill10'), and of a 128 KiB mapping (needs a 2 × 64K
 *    hole) when every other mapping of the 90 % space was freed
 *    (fragmented90; baseline 'fill90', the same space unfragmented). One
 *    Iommu per case; rounds alternate the cases; median of the rounds. The
 *    IOVA allocator is a buddy allocator, so the cost does not grow with fill
 *    as such: it follows how many orders the probe's block is split from
 *    (and merged back into) at the fill frontier, 0 to 16 levels.
 *    Runs in a child with --no-allocation-site-pretenuring: filling makes V8
 *    pretenure Iommu.map's allocation sites (those mappings live long), so
 *    the probe's short-lived mappings would then go straight to old space
 *    and mark-compact GCs would take ~30 % of the time, doubling the figures
 *    and making them swing 2× between runs. This measures the allocator.
 */
import { fileURLToPath } from 'node:url';
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { Iommu, type IommuMapping } from '../daemon/dma/iommu.js';
import { type BenchArgs, Reporter, median, startDaemon, runChildJson } from './harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const DRIVER = 'gpu';
const WINDOW = 16;

/** One worker per handle, each looping register → unregister, for `ms` (at least one pair each); pairs per second. One handle: unpipelined. */
async function pipelined(c: BufferClient, hs: number[], ms: number): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  await Promise.all(
    hs.map(async (h) => {
      do {
        await c.register(h, DRIVER);
        await c.unregister(h, DRIVER);
        n++;
      } while (performance.now() - t0 < ms);
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

/** Allocate `size` from 'uncached' until ENOMEM; the handles. */
async function exhaust(c: BufferClient, size: number): Promise<number[]> {
  const out: number[] = [];
  for (;;) {
    try {
      out.push((await c.alloc({ pool: 'uncached', size })).handle);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOMEM') throw e;
      return out;
    }
  }
}

async function daemonBench(rep: Reporter, quick: boolean, smoke: boolean): Promise<string> {
  const rounds = smoke ? 1 : quick ? 3 : 10;
  const ms = (smoke ? 5 : quick ? 300 : 1000) / rounds; // pipelined() runs at least one pair per handle
  const warm = smoke ? 1 : quick ? 50 : 200;
  const daemon = await startDaemon();
  let c: BufferClient | null = null;
  try {
    c = await connect({ socket: daemon.socket, name: 'bench-drivers' });
    // small buffers first: they need slab chunks, and the DRAM is about to be full
    const small = (await c.alloc({ pool: 'uncached', size: 4 * KiB })).handle;
    const window: number[] = [];
    for (let i = 0; i < WINDOW; i++) window.push((await c.alloc({ pool: 'uncached', size: 4 * KiB })).handle);
    // fragment the DRAM: fill it, then free every other 2 MiB buffer
    const fill = await exhaust(c, 256 * MiB);
    const holes = await exhaust(c, 2 * MiB);
    for (let i = 0; i < holes.length; i += 2) await c.close(holes[i]!);
    const big = await c.alloc({ pool: 'uncached', size: 64 * MiB });
    const segs = big.segments.length;
    if (big.kind !== 'direct' || segs <= 1) throw new Error(`drivers: the 64 MiB buffer is ${big.kind} with ${segs} segment(s), not scatter-gathered`);
    const reg = await c.register(big.handle, DRIVER);
    await c.unregister(big.handle, DRIVER);
    const entries = Object.entries(reg.iommu?.entries ?? {})
      .map(([s, n]) => `${n} × ${Number(s) / KiB}K`)
      .join(' + ');

    for (let i = 0; i < warm; i++) {
      await pipelined(c, [small], 0);
      await pipelined(c, [big.handle], 0);
    }
    await pipelined(c, window, smoke ? 0 : quick ? 50 : 200);
    // rounds rotate the order of the three measurements; median of the rounds
    const rates: number[][] = [[], [], []];
    const task = [() => pipelined(c!, [small], ms), () => pipelined(c!, [big.handle], ms), () => pipelined(c!, window, ms)];
    for (let r = 0; r < rounds; r++) for (let k = 0; k < 3; k++) rates[(r + k) % 3]!.push(await task[(r + k) % 3]!());
    const [s, b, p] = rates.map(median) as [number, number, number];
    const st = (await c.drivers()).drivers.find((d) => d.name === DRIVER);
    if (st === undefined || st.registrations !== 0) throw new Error(`drivers: '${DRIVER}' still holds ${st?.registrations} registrations`);

    rep.figure('4KiB', 'registerPairsPerSec', s, 'pairs/s');
    rep.figure('64MiB-sg', 'registerPairsPerSec', b, 'pairs/s', { name: '4KiB', value: s });
    rep.figure('64MiB-sg', 'segments', segs, 'segments');
    rep.figure('4KiB', 'pipelinedPairsPerSec', p, 'pairs/s');
    return `median of ${rounds} rounds of ${ms} ms; 64 MiB buffer: ${segs} segments (fill: ${fill.length} × 256 MiB, ${holes.length} × 2 MiB, every other freed), IOMMU entries ${entries}`;
  } finally {
    await c?.disconnect();
    await daemon.stop();
  }
}

const SEG = 64 * KiB;
const PHYS = 0x8_0000_0000; // distinct physical addresses, 64K aligned

interface Space {
  name: string;
  io: Iommu;
  maps: IommuMapping[];
  probe: { addr: number; len: number }[];
}

/** An Iommu filled with 64 KiB mappings until `frac` of its IOVA space is used. */
function filled(name: string, frac: number): Space {
  const io = new Iommu('bench', [4 * KiB, 64 * KiB, 2 * MiB], 4 * GiB);
  const maps: IommuMapping[] = [];
  while (io.used < frac * io.total) maps.push(io.map([{ addr: PHYS + maps.length * SEG, len: SEG }]));
  return { name, io, maps, probe: [{ addr: PHYS + maps.length * SEG, len: SEG }] };
}

/** Mean µs of `reps` map + unmap pairs of the space's probe. */
function mapUnmap(sp: Space, reps: number): number {
  const { io, probe } = sp;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) io.unmap(io.map(probe));
  return ((performance.now() - t0) * 1000) / reps;
}

interface IommuResult {
  us: Record<string, number>;
  info: string;
}

function iommuBench(quick: boolean, smoke: boolean): IommuResult {
  const spaces = [filled('fill10', 0.1), filled('fill50', 0.5), filled('fill90', 0.9), filled('fill99', 0.99)];
  const frag = filled('fragmented90', 0.9);
  for (let i = 0; i < frag.maps.length; i += 2) frag.io.unmap(frag.maps[i]!);
  frag.probe = [{ addr: PHYS + frag.maps.length * SEG, len: 2 * SEG }];
  spaces.push(frag);
  const used = spaces.map((s) => `${s.name} ${((100 * s.io.used) / s.io.total).toFixed(1)}%`).join(', ');

  const reps = smoke ? 100 : quick ? 5_000 : 20_000;
  const rounds = smoke ? 1 : quick ? 3 : 9;
  for (const sp of spaces) mapUnmap(sp, reps); // warm-up
  const us = new Map<string, number[]>(spaces.map((s) => [s.name, []]));
  for (let r = 0; r < rounds; r++) for (const sp of spaces) us.get(sp.name)!.push(mapUnmap(sp, reps));
  for (const sp of spaces) {
    if (sp.io.mappings !== sp.maps.length - (sp === frag ? Math.ceil(sp.maps.length / 2) : 0)) throw new Error(`drivers: ${sp.name} leaked IOVA mappings`);
  }
  return { us: Object.fromEntries([...us].map(([n, xs]) => [n, median(xs)])), info: `IOVA used: ${used}; median of ${rounds} rounds of ${reps} map+unmap` };
}

/** iommuBench in a child without allocation-site pretenuring (see the top). */
function iommuChild(quick: boolean, smoke: boolean): Promise<IommuResult> {
  return runChildJson<IommuResult>('drivers.js', ['--iommu-child', ...(quick ? ['--quick'] : []), ...(smoke ? ['--smoke'] : [])], ['--no-allocation-site-pretenuring']);
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('drivers');
  const smoke = args.smoke === true;
  const d = await daemonBench(rep, args.quick, smoke);
  const { us, info } = await iommuChild(args.quick, smoke);
  rep.figure('fill10', 'mapUnmapUs', us['fill10']!, 'us');
  for (const n of ['fill50', 'fill90', 'fill99']) rep.figure(n, 'mapUnmapUs', us[n]!, 'us', { name: 'fill10', value: us['fill10']! });
  rep.figure('fragmented90', 'mapUnmapUs', us['fragmented90']!, 'us', { name: 'fill90', value: us['fill90']! });
  rep.table(`drivers: register/unregister on '${DRIVER}' (ratio = 64 MiB sg / 4 KiB); ${d}\nIommu map+unmap of 64 KiB (fragmented90: 128 KiB) vs fill (ratio = value / baseline); ${info}`);
  return rep;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--iommu-child') {
  process.stdout.write(`${JSON.stringify(iommuBench(process.argv.includes('--quick'), process.argv.includes('--smoke')))}\n`);
}
