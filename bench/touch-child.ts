/**
 * Child process of the `memory` benchmark (its own process, so its RSS is
 * not mixed with the parent's): build a 64 GiB machine in-process, allocate
 * one buffer of argv[2] bytes from a 4 KiB write-back pool, write non-zero
 * data over all of it in 4 MiB chunks, read it all back, and print one JSON
 * line with the timings and RSS before and after the writes. The machine's
 * memory is a memfd, as in the daemon (JavaScript memory without native
 * calls).
 *
 *   node --expose-gc dist/bench/touch-child.js BYTES
 */
import { buildConfig } from '../daemon/config/config.js';
import { Machine } from '../daemon/alloc/machine.js';
import { native } from '../daemon/lib/native.js';

const CHUNK = 4 * 1024 * 1024;
const bytes = Number(process.argv[2] ?? 2 ** 30);
if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % CHUNK !== 0) throw new RangeError(`bad size ${process.argv[2]}`);

const gc = (globalThis as { gc?: () => void }).gc;
function rss(): number {
  gc?.();
  return process.memoryUsage().rss;
}

const raw = {
  memory: { regions: [{ name: 'dram', base: '0x80000000', size: '64G', kind: 'dram' }] },
  pools: [{ name: 'default', cache: 'writeback', pageSize: '4K', region: 'dram' }],
};
const machine = new Machine(buildConfig(raw, 'touch-child').machine, () => performance.now(), native());
const buf = machine.alloc({ pool: 'default', size: bytes, owner: 1 });

const chunk = Buffer.alloc(CHUNK);
for (let i = 0; i < CHUNK; i++) chunk[i] = ((i * 131) & 0xff) | 1;

const rssBefore = rss();
let t0 = performance.now();
for (let off = 0; off < bytes; off += CHUNK) {
  chunk.writeUInt32LE(off / CHUNK + 1, 0);
  machine.write(buf, off, chunk);
}
const touchMs = performance.now() - t0;
const rssAfter = rss();

t0 = performance.now();
let bad = 0;
for (let off = 0; off < bytes; off += CHUNK) {
  const r = machine.read(buf, off, CHUNK);
  if (r.readUInt32LE(0) !== off / CHUNK + 1 || r[CHUNK - 1] !== chunk[CHUNK - 1]) bad++;
}
const readBackMs = performance.now() - t0;
if (bad > 0) throw new Error(`read back: ${bad} chunks differ from what was written`);

process.stdout.write(
  `${JSON.stringify({ bytes, touchMs, readBackMs, rssBefore, rssAfter, residentBytes: machine.mem.store.residentBytes })}\n`,
);
