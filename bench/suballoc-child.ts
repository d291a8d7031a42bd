/**
 * Child process of the `suballoc` benchmark (its own process, so its heap is
 * not mixed with the parent's): allocate N (default 1,000,000) small blocks
 * of random sizes 8..512 B from one Arena of a 4 KiB pool, keeping only their
 * addresses in a Float64Array allocated beforehand, and print one JSON line
 * with host memory before and after (heapUsed + external after a full gc;
 * `external` already includes `arrayBuffers`, so that is not added again)
 * and the arena's own metadata estimate.
 *
 *   node --expose-gc dist/bench/suballoc-child.js [N]
 */
import { buildConfig } from '../daemon/config/config.js';
import { size2usize } from '../daemon/alloc/sizeclasses.js';
import { freshArena, prng, RAW } from './suballoc-traces.js';

const n = Number(process.argv[2] ?? 1_000_000);
if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`bad count ${process.argv[2]}`);

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
function host(): number {
  gc!();
  gc!();
  const u = process.memoryUsage();
  return u.heapUsed + u.external;
}

const { arena } = freshArena(buildConfig(RAW, 'suballoc-child').machine);
const r = prng(7);
const addrs = new Float64Array(n);
const before = host();
for (let i = 0; i < n; i++) {
  const a = arena.alloc(size2usize(8 + Math.floor(r() * 505)), 1);
  if (a < 0) throw new Error(`arena out of memory after ${i} allocations`);
  addrs[i] = a;
}
const after = host();
const s = arena.stats();
if (s.live !== n) throw new Error(`arena reports ${s.live} live allocations, expected ${n}`);
process.stdout.write(
  `${JSON.stringify({
    n,
    before,
    after,
    hostBytesPerAllocation: (after - before) / n,
    metadataBytesPerAllocation: s.metadata / n,
    allocated: s.allocated,
    active: s.active,
    mapped: s.mapped,
    live: addrs.length,
  })}\n`,
);
