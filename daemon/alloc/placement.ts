/**
 * Placement requests: `alloc {minAddress}` asks for every page of a buffer
 * at or above a physical address (e.g. above 4 GiB, where a 32-bit device
 * must bounce). The page sources honour it (buddy zones and hugepages at or
 * above the address); this checks that a pool could ever meet it. Pure.
 */
import { BufferdError } from '../../protocol/errors.js';
import { PAGE, type PhysicalMemory } from '../memory/physmem.js';

const hex = (a: number) => `0x${a.toString(16)}`;

/** EINVAL for a placement no pool could meet: minAddress not page-aligned, or combined with populate: false. */
export function checkPlacementRequest(minAddress: number, populate: boolean): void {
  if (minAddress % PAGE !== 0) throw new BufferdError('EINVAL', `field 'minAddress' must be a multiple of 4096 (a page) (got ${hex(minAddress)})`);
  if (minAddress > 0 && !populate) throw new BufferdError('EINVAL', "field 'populate': false cannot be combined with 'minAddress': a placed buffer takes its pages at once");
}

/** EINVAL when the pool's memory lies wholly below minAddress. */
export function checkPoolReaches(pool: { name: string; region: string; maxAddress: number | null }, mem: PhysicalMemory, minAddress: number): void {
  const r = mem.region(pool.region);
  const regionEnd = r.base + r.size;
  const end = Math.min(regionEnd, pool.maxAddress ?? regionEnd);
  if (minAddress >= end) {
    const why = end < regionEnd ? `its maxAddress is ${hex(end)}` : `region '${r.name}' ends at ${hex(end)}`;
    throw new BufferdError('EINVAL', `pool '${pool.name}' has no memory at or above minAddress ${hex(minAddress)}: ${why}`, { pool: pool.name, minAddress, end });
  }
}

/** EINVAL unless a buffer of this pool can be placed at or above minAddress (0: no placement asked). */
export function checkPlacement(pool: { name: string; region: string; maxAddress: number | null }, mem: PhysicalMemory, minAddress: number, populate: boolean): void {
  if (minAddress === 0) return;
  checkPlacementRequest(minAddress, populate);
  checkPoolReaches(pool, mem, minAddress);
}
