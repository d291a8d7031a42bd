/**
 * memory: the simulated-memory machinery.
 *
 *  1. orderN: alloc/free pairs per second of the buddy allocator (orders 0,
 *     4, 9) on a 64 GiB zone, vs a bitmap first-fit page allocator on the
 *     same zone, same trace, same run.
 *  2. start64G: start-up time and RSS of the real daemon with a 64 GiB
 *     machine, vs the same daemon with a 64 MiB machine. Memory is sparse, so
 *     the ratios should sit near 1.
 *  3. touch1G (touch256M with --quick): in a child process, write non-zero
 *     data over a whole buffer; host RSS growth per simulated byte touched.
 */
import { BuddyAllocator, MAX_PAGE_ORDER } from '../daemon/memory/buddy.js';
import { type BenchArgs, Reporter, startDaemon, prng, runChildJson, median, vmRss } from './harness.js';

const GiB = 2 ** 30;
const ZONE_START_PFN = 0x80000000 / 4096;
const ZONE_PAGES = (64 * GiB) / 4096; // 16 Mi pages
const WORKING_SET = 4096;
const BACKGROUND = 2048;

interface PageAllocator {
  alloc(order: number): number;
  free(pfn: number, order: number): void;
}

/**
 * Baseline: the textbook bitmap page allocator, one bit per 4 KiB page over
 * the same 16 Mi-page zone (a 2 MiB bitmap), first fit from a lowest-free
 * hint. It keeps the buddy allocator's contract (blocks of 2^order pages,
 * naturally aligned, as hugepages and DMA need), so it tries aligned
 * candidates only; it tests whole 32-page words at once and skips full
 * words. No free lists, no splitting, no merging: a free just clears bits.
 * Its cost is the first-fit search, which grows with the live blocks between
 * the hint and the first hole that fits; that is the cost a buddy allocator
 * exists to avoid, and the ratio shows what it buys on this trace.
 */
class BitmapFirstFit implements PageAllocator {
  private readonly bits: Uint32Array;
  /** No free page below this page index (relative to startPfn). */
  private hint = 0;

  constructor(
    readonly startPfn: number,
    readonly npages: number,
  ) {
    this.bits = new Uint32Array(Math.ceil(npages / 32));
  }

  alloc(order: number): number {
    const n = 2 ** order;
    const bits = this.bits;
    while (this.hint < this.npages && bits[this.hint >>> 5] === 0xffffffff) this.hint = ((this.hint >>> 5) + 1) << 5;
    for (let c = Math.ceil(this.hint / n) * n; c + n <= this.npages; c += n) {
      if (n >= 32) {
        const w0 = c >>> 5;
        const w1 = (c + n) >>> 5;
        let w = w0;
        while (w < w1 && bits[w] === 0) w++;
        if (w < w1) continue;
        bits.fill(0xffffffff, w0, w1);
      } else {
        const w = c >>> 5;
        if (bits[w] === 0xffffffff) {
          c = ((w + 1) << 5) - n; // skip the full word
          continue;
        }
        const m = ((1 << n) - 1) << (c & 31);
        if ((bits[w]! & m) !== 0) continue;
        bits[w] |= m;
      }
      if (c === this.hint) this.hint = c + n;
      return this.startPfn + c;
    }
    return -1;
  }

  free(pfn: number, order: number): void {
    const c = pfn - this.startPfn;
    const n = 2 ** order;
    if (n >= 32) this.bits.fill(0, c >>> 5, (c + n) >>> 5);
    else this.bits[c >>> 5] &= ~(((1 << n) - 1) << (c & 31));
    if (c < this.hint) this.hint = c;
  }
}


/**
 * A fragmented zone with a working set of live blocks of `order`: first a
 * background of blocks of random orders 0..9 of which a random half is freed
 * again (holes of mixed sizes low in the zone), then the working set.
 */
function setUp(a: PageAllocator, order: number): Float64Array {
  const rnd = prng(0x5eed);
  const bg: { pfn: number; order: number }[] = [];
  for (let i = 0; i < BACKGROUND; i++) {
    const o = Math.floor(rnd() * 10);
    bg.push({ pfn: must(a.alloc(o)), order: o });
  }
  for (const b of bg) if (rnd() < 0.5) a.free(b.pfn, b.order);
  const live = new Float64Array(WORKING_SET);
  for (let i = 0; i < WORKING_SET; i++) live[i] = must(a.alloc(order));
  return live;
}

function must(pfn: number): number {
  if (pfn < 0) throw new Error('allocator out of memory in the benchmark');
  return pfn;
}

/** The trace: which working-set slot to free (and refill) at each step. */
function trace(steps: number, seed: number): Uint32Array {
  const rnd = prng(seed);
  const t = new Uint32Array(steps);
  for (let i = 0; i < steps; i++) t[i] = Math.floor(rnd() * WORKING_SET);
  return t;
}

/** Run the trace on a fresh, fragmented allocator; returns pairs per second. */
function churn(make: () => PageAllocator, order: number, tr: Uint32Array): number {
  const a = make();
  const live = setUp(a, order);
  const t0 = performance.now();
  for (let i = 0; i < tr.length; i++) {
    const s = tr[i]!;
    a.free(live[s]!, order);
    const p = a.alloc(order);
    if (p < 0) throw new Error(`alloc(${order}) failed at step ${i}`);
    live[s] = p;
  }
  return tr.length / ((performance.now() - t0) / 1000);
}

function buddyBench(rep: Reporter, quick: boolean, smoke: boolean): void {
  const buddy = () => new BuddyAllocator(ZONE_START_PFN, ZONE_PAGES, MAX_PAGE_ORDER); // as the daemon's zones
  const bitmap = () => new BitmapFirstFit(ZONE_START_PFN, ZONE_PAGES);
  const warm = trace(smoke ? 1_000 : 20_000, 1);
  for (const o of [0, 4, 9]) {
    churn(buddy, o, warm);
    churn(bitmap, o, warm);
  }
  const reps = quick ? 1 : 3;
  for (const order of [0, 4, 9]) {
    const tr = trace(smoke ? 1_000 : quick ? 50_000 : 200_000, 42 + order);
    const b: number[] = [];
    const n: number[] = [];
    for (let r = 0; r < reps; r++) {
      b.push(churn(buddy, order, tr));
      n.push(churn(bitmap, order, tr));
    }
    rep.figure(`order${order}`, 'pairsPerSec', median(b), 'pairs/s', { name: 'bitmap-first-fit', value: median(n) });
  }
}

const POOLS = [
  { name: 'default', cache: 'writeback', pageSize: '4K', region: 'dram' },
  { name: 'uncached', cache: 'uncached', pageSize: '4K', region: 'dram' },
  { name: 'dma32', cache: 'writeback', pageSize: '4K', region: 'dram', maxAddress: '4G' },
  { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram' },
  { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'dram' },
];

const BIG = {
  memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64G', kind: 'dram' }] },
  hugepages: [
    { size: '2M', region: 'dram', nr: 512, overcommit: 64 },
    { size: '1G', region: 'dram', nr: 4 },
  ],
  pools: [...POOLS, { name: 'giant', cache: 'writeback', pageSize: '1G', region: 'dram' }],
};

// Same pools minus the 1 GiB one (no room for 1 GiB pages).
const SMALL = {
  memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64M', kind: 'dram' }] },
  hugepages: [{ size: '2M', region: 'dram', nr: 4 }],
  pools: POOLS,
};

async function startOnce(config: unknown): Promise<{ ms: number; rss: number }> {
  const t0 = performance.now();
  const d = await startDaemon(config);
  const ms = performance.now() - t0;
  try {
    return { ms, rss: vmRss(d.proc.pid!) };
  } finally {
    await d.stop();
  }
}

async function startupBench(rep: Reporter, quick: boolean, smoke: boolean): Promise<void> {
  const big: { ms: number; rss: number }[] = [];
  const small: { ms: number; rss: number }[] = [];
  if (!smoke) await startOnce(SMALL); // warm the file cache
  for (let i = 0; i < (smoke ? 1 : quick ? 3 : 7); i++) {
    big.push(await startOnce(BIG));
    small.push(await startOnce(SMALL));
  }
  const ms = (xs: typeof big) => median(xs.map((x) => x.ms));
  const rss = (xs: typeof big) => median(xs.map((x) => x.rss));
  rep.figure('start64G', 'startMs', ms(big), 'ms', { name: 'daemon-64MiB', value: ms(small) });
  rep.figure('start64G', 'rssBytes', rss(big), 'bytes', { name: 'daemon-64MiB', value: rss(small) });
}

interface TouchResult {
  bytes: number;
  touchMs: number;
  readBackMs: number;
  rssBefore: number;
  rssAfter: number;
  residentBytes: number;
}

async function touchBench(rep: Reporter, quick: boolean): Promise<void> {
  const bytes = quick ? 256 * 2 ** 20 : GiB;
  const c = quick ? 'touch256M' : 'touch1G';
  const r = await runChildJson<TouchResult>('touch-child.js', [String(bytes)]);
  if (r.residentBytes !== bytes) throw new Error(`touch-child: ${r.residentBytes} bytes resident after touching ${bytes}`);
  rep.figure(c, 'touchMs', r.touchMs, 'ms');
  rep.figure(c, 'rssGrowthBytes', r.rssAfter - r.rssBefore, 'bytes', { name: 'touched-bytes', value: bytes });
  rep.figure(c, 'readBackMs', r.readBackMs, 'ms');
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const rep = new Reporter('memory');
  const smoke = args.smoke === true;
  buddyBench(rep, args.quick, smoke);
  await startupBench(rep, args.quick, smoke);
  await touchBench(rep, args.quick); // smoke too touches 256 MiB: the case is named for it and checks every page is resident
  rep.table('memory: buddy vs bitmap first-fit; 64 GiB vs 64 MiB daemon start; host bytes per simulated byte touched (ratio = value / baseline)');
  return rep;
}
