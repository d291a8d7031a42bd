/**
 * A pool's ENOMEM: the request, and either the pool's own limit (maxBytes)
 * or what its page source has free, in figures (the source's shortfall).
 * Pure.
 */
import { BufferdError } from '../../protocol/errors.js';
import { formatSize } from '../../protocol/units.js';
import type { PageSource } from './pagesource.js';

/** What the message needs of a pool. */
export interface EnomemPool {
  readonly name: string;
  readonly cfg: { maxBytes: number | null; contiguous: boolean };
  readonly mapped: number;
  readonly pageSize: number;
  readonly directThreshold: number;
  readonly source: PageSource;
}

/** The ENOMEM for `size` bytes needing `count` pages of the pool's page size. */
export function poolEnomem(p: EnomemPool, size: number, count: number, contiguous: boolean, minAddress = 0): BufferdError {
  const max = p.cfg.maxBytes;
  if (max !== null && p.mapped + Math.min(count * p.pageSize, p.directThreshold) > max) {
    return new BufferdError(
      'ENOMEM',
      `pool '${p.name}': cannot allocate ${formatSize(size)} (${size} bytes): the pool's limit maxBytes ${formatSize(max)} would be exceeded (${formatSize(p.mapped)} held)`,
      { pool: p.name, requested: size, maxBytes: max, inUse: p.mapped },
    );
  }
  const s = p.source.shortfall({ count, contiguous, align: 1, minAddress });
  const at = minAddress > 0 ? ` at or above 0x${minAddress.toString(16)}` : '';
  return new BufferdError('ENOMEM', `pool '${p.name}': cannot allocate ${formatSize(size)} (${size} bytes)${at}: ${s.text}`, {
    pool: p.name,
    requested: size,
    ...s.details,
  });
}
