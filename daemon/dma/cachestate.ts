/**
 * The simulated CPU cache's vocabulary: the state of a line (absent,
 * mirroring memory, clean copy, dirty), its configuration and its
 * counters. Types and constants only; the cache itself is cache.ts.
 */

export const ABSENT = 0;
export const MIRROR = 1;
export const CLEAN = 2;
export const DIRTY = 3;

export interface CacheConfig {
  lineSize: number;
  /** Lines the cache holds before evicting (eviction 'random' only). */
  capacityLines: number;
  eviction: 'none' | 'random';
  /** Pending write-combine lines before the oldest is flushed. */
  wcLines: number;
  seed: number;
}

export interface CacheStats {
  lineSize: number;
  cachedLines: number;
  dirtyLines: number;
  cleans: number;
  invalidates: number;
  prefetches: number;
  wcFlushes: number;
  wcPendingLines: number;
  evictions: number;
}
