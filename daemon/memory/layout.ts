/**
 * What the memory model is built from: regions of physical memory, hugepage
 * pools and the cache policies pages are mapped with (the validated form of
 * the config's `memory` and `hugepages` sections; config/machine-config.ts
 * builds it). Types and constants only.
 */

export const PAGE_SIZE = 4096;
export const HUGE_2M = 2 * 1024 * 1024;
export const HUGE_1G = 1024 * 1024 * 1024;

/**
 * The largest region: 256 TiB (2^36 page frames). Its buddy allocator's
 * bitmaps (lib/bittree.ts) cover up to 2^37 positions, and setting up the
 * free lists of 256 TiB takes a few seconds at start.
 */
export const MAX_REGION_BYTES = 2 ** 48;

export type RegionKind = 'dram' | 'tcm' | 'carveout';
export type CachePolicy = 'writeback' | 'writecombine' | 'uncached';
export const CACHE_POLICIES: readonly CachePolicy[] = ['writeback', 'writecombine', 'uncached'];

export interface RegionConfig {
  name: string;
  base: number;
  size: number;
  kind: RegionKind;
}

export interface HugepageConfig {
  size: number;
  region: string;
  nr: number;
  overcommit: number;
}
