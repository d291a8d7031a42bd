/**
 * A pool's status figures (bufctl status, the `status` op): its
 * configuration and jemalloc's stats vocabulary (requested, allocated,
 * active, mapped, resident, dirty, retained, metadata), summed over its
 * arenas and its direct buffers. Pure.
 */
import type { PoolStatus } from '../../protocol/status.js';
import type { ArenaStats } from './arena.js';
import type { ConversionStats } from '../memory/cacheattr.js';
import type { PoolConfig } from './poolconfig.js';

/** What a pool knows of itself beyond its arenas. */
export interface PoolFigures {
  cfg: PoolConfig;
  pageSize: number;
  arenas: ArenaStats[];
  conversions: ConversionStats;
  /** Bytes of live direct buffers (reserved hugepages included). */
  directBytes: number;
  /** Bytes of freed direct buffers kept dirty (decay off). */
  dirtyDirect: number;
  /** Hugepages reserved by direct buffers and not yet backing them, bytes. */
  reservedBytes: number;
  requested: number;
  directCount: number;
  /** Purges outside the live arenas (dropped arenas, the direct dirty cache). */
  purges: number;
  nmalloc: number;
  ndalloc: number;
}

export function poolStatus(f: PoolFigures): PoolStatus {
  const { cfg, arenas } = f;
  const sum = (k: keyof ArenaStats) => arenas.reduce((acc, a) => acc + a[k], 0);
  const allocated = sum('allocated') + f.directBytes;
  const active = sum('active') + f.directBytes;
  const mapped = sum('mapped') + f.directBytes + f.dirtyDirect;
  return {
    name: cfg.name,
    cache: cfg.cache,
    pageSize: f.pageSize,
    region: cfg.region,
    contiguous: cfg.contiguous,
    maxAddress: cfg.maxAddress,
    capability: cfg.capability,
    maxBytes: cfg.maxBytes,
    arena: cfg.arena,
    dirtyDecayMs: cfg.dirtyDecayMs,
    // reserved hugepages count as mapped (and against maxBytes) but are not held until first use
    pages: Math.ceil((mapped - f.reservedBytes) / f.pageSize),
    requested: f.requested,
    allocated,
    active,
    mapped,
    resident: mapped - f.reservedBytes,
    dirty: sum('dirty') + f.dirtyDirect,
    retained: sum('retained'),
    metadata: sum('metadata'),
    fragmentation: allocated === 0 ? 1 : Math.round((active / allocated) * 1000) / 1000,
    arenas: arenas.length,
    // every successful alloc counts in nmalloc, every free in ndalloc
    buffers: f.nmalloc - f.ndalloc,
    directBuffers: f.directCount,
    purges: f.purges + sum('purges'),
    nmalloc: f.nmalloc,
    ndalloc: f.ndalloc,
    conversions: f.conversions.conversions,
    conversionCostUs: Math.round(f.conversions.costNs / 1000),
  };
}
