/**
 * A pool's configuration as validated from the config file, and the
 * limits on buffers every pool shares. Types and constants only.
 */
import type { CachePolicy } from '../memory/layout.js';

/** A pool as configured (the config's `pools[]`, validated). */
export interface PoolConfig {
  name: string;
  cache: CachePolicy;
  pageSize: number;
  region: string;
  contiguous: boolean;
  /** Exclusive upper bound on physical addresses, or null for the whole region. */
  maxAddress: number | null;
  capability: string | null;
  maxBytes: number | null;
  arena: 'per-client' | 'shared';
  dirtyDecayMs: number;
  /** Coherency checker mode for this pool, or null for the global mode. */
  coherency: 'off' | 'warn' | 'strict' | null;
}

/** Largest single buffer: 64 GiB. */
export const MAX_BUFFER_BYTES = 64 * 2 ** 30;
/** Chunk size of 4 KiB pools: 2 MiB. */
export const SMALL_POOL_CHUNK = 2 * 1024 * 1024;
