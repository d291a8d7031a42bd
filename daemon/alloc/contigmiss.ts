/**
 * Why a physically contiguous run above MAX_PAGE_ORDER (4 MiB) could not be
 * found: the alloc_contig_range path (memory/contig.ts) takes only ranges
 * that are entirely free — bufferd does not migrate pages in use (their
 * buffers' physical addresses may be pinned by registrations, as pinned
 * pages are unmovable in Linux, where alloc_contig_range then fails with
 * -EBUSY) — so the reason names the longest free run and what holds the
 * page that ends it. Pure: no I/O.
 */
import { PAGE, type PhysicalMemory } from '../memory/physmem.js';
import { MAX_PAGE_ORDER } from '../memory/buddy.js';
import type { CacheAttrTracker } from '../memory/cacheattr.js';
import type { HugepagePool } from '../memory/hugepages.js';
import { formatSize } from '../../protocol/units.js';

const hex = (a: number) => `0x${a.toString(16)}`;

/** What holds a page frame that is not free, in words ("pool 'default'"). */
export type HolderOf = (pfn: number) => string;

/** The holder of a busy page: a pool's held block, a free or reserved hugepage, the swiotlb, or other. */
export function holderOf(attrs: CacheAttrTracker, hugepages: Iterable<HugepagePool>, bounce: { base: number; size: number } | null, pfn: number): string {
  for (const b of attrs.heldBlocks()) if (pfn >= b.pfn && pfn < b.pfn + b.npages) return `pool '${b.pool}'${b.hugeSize > 0 ? ` (a ${formatSize(b.hugeSize)} hugepage)` : ''}`;
  for (const hp of hugepages) {
    const per = hp.size / PAGE;
    if (hp.freePages().some((p) => pfn >= p.pfn && pfn < p.pfn + per)) return `the ${formatSize(hp.size)} hugepage pool (a free hugepage)`;
  }
  if (bounce !== null && pfn * PAGE >= bounce.base && pfn * PAGE < bounce.base + bounce.size) return 'the swiotlb bounce pool';
  return 'a page held outside the pools';
}

/**
 * The sentence and figures for a contiguous request the free ranges can't
 * serve, or null when the request is the buddy's (at most MAX_PAGE_ORDER)
 * or would succeed now.
 */
export function contigMissReason(
  mem: PhysicalMemory,
  holder: HolderOf,
  req: { region: string; npages: number; alignPages: number; maxAddress: number | null; minAddress: number },
): { text: string; details: Record<string, number> } | null {
  const miss = mem.contigMiss(req.region, req.npages, req.alignPages, req.maxAddress, req.minAddress);
  if (miss === null) return null;
  const want = `${formatSize(req.npages * PAGE)} (${req.npages} pages) contiguous${req.alignPages > 1 ? ` aligned to ${formatSize(req.alignPages * PAGE)}` : ''}`;
  const head = `no free range of ${want} (above the buddy's ${formatSize(2 ** MAX_PAGE_ORDER * PAGE)} largest block such runs come from free ranges, as alloc_contig_range; pages in use are not migrated)`;
  if (miss.longest === null) {
    return { text: `${head}: no free run comes near that length`, details: { longestFreeRun: 0 } };
  }
  const run = miss.longest;
  const misaligned = run.npages >= req.npages ? ' (long enough, but not at an aligned start)' : '';
  const tail = miss.busyPfn < 0 ? 'the zone ends there' : `range busy: pfn ${hex(miss.busyPfn)} (${hex(miss.busyPfn * PAGE)}) is held by ${holder(miss.busyPfn)}`;
  return {
    text: `${head}: the longest free run is ${formatSize(run.npages * PAGE)} (${run.npages} pages) at ${hex(run.pfn * PAGE)}${misaligned}; ${tail}`,
    details: { longestFreeRun: run.npages * PAGE, longestFreeRunAt: run.pfn * PAGE, ...(miss.busyPfn >= 0 ? { busyPfn: miss.busyPfn } : {}) },
  };
}
