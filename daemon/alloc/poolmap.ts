/**
 * A pool's memory as the dashboard's memory map draws it: every arena
 * chunk, every kept (dirty) direct block, every live direct buffer's
 * blocks, sorted by address. Pure.
 */
import type { ChunkMap } from './arena.js';
import { PAGE } from '../memory/physmem.js';

export type PoolMapEntry = ChunkMap & { direct: number; owner: number };

/** What the map needs of arenas and buffers (structural: no import of the pool). */
interface MapArena {
  owner: number;
  chunkMap(): Iterable<ChunkMap>;
}
interface MapBuffer {
  pool: unknown;
  kind: string;
  owner: number;
  blocks: readonly { pfn: number; npages: number }[];
}

export function poolMap(pool: unknown, arenas: Iterable<MapArena>, dirty: Iterable<PoolMapEntry>, direct: Iterable<MapBuffer>): PoolMapEntry[] {
  const out: PoolMapEntry[] = [];
  for (const a of arenas) for (const c of a.chunkMap()) out.push({ ...c, direct: 0, owner: a.owner });
  for (const e of dirty) out.push(e);
  for (const b of direct) {
    if (b.pool !== pool || b.kind !== 'direct') continue;
    for (const blk of b.blocks) {
      const size = blk.npages * PAGE;
      out.push({ addr: blk.pfn * PAGE, size, slab: 0, large: 0, direct: size, free: 0, dirty: false, owner: b.owner, runs: [[0, blk.npages, 2, 100]] });
    }
  }
  return out.sort((x, y) => x.addr - y.addr);
}
