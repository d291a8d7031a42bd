/**
 * Text formatting for bufctl: aligned tables, human sizes and durations.
 */
import { formatSize, formatAddress } from '../protocol/units.js';
import type { Mismatch } from '../protocol/attributes.js';

export { formatSize, formatAddress };

export interface Column<R> {
  header: string;
  get: (row: R) => string | number | null | undefined;
  /** Right-align (numbers, sizes). Default: right for numbers. */
  align?: 'left' | 'right';
}

/** Render rows as an aligned table with a header line. */
export function table<R>(rows: readonly R[], cols: readonly Column<R>[], indent = '  '): string {
  if (rows.length === 0) return `${indent}(none)\n`;
  const cells = rows.map((r) => cols.map((c) => {
    const v = c.get(r);
    return v === null || v === undefined ? '-' : String(v);
  }));
  const aligns = cols.map((c, i) => c.align ?? (rows.every((r) => typeof c.get(r) === 'number') && i > 0 ? 'right' : 'left'));
  const widths = cols.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    indent +
    vals
      .map((v, i) => (aligns[i] === 'right' ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** 125000 → "2m 5s". */
export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** "2.5 MiB" for sizes, "-" for null. */
export function size(n: number | null | undefined): string {
  return n === null || n === undefined ? '-' : formatSize(n);
}

export function section(title: string, body: string): string {
  return `${title}\n${body}`;
}

/** A mismatch value: large numbers as addresses, lists joined with |, strings bare. */
const mismatchValue = (v: unknown) =>
  typeof v === 'number' && v > 0xffff ? formatAddress(v) : Array.isArray(v) ? v.join('|') : typeof v === 'string' ? v : JSON.stringify(v);

/** "cache: needs writecombine, has writeback"; `has` names the side that doesn't fit ("buffer has"). */
export function formatMismatch(m: Mismatch, has = 'has'): string {
  return `${m.attribute}: needs ${mismatchValue(m.required)}, ${has} ${mismatchValue(m.actual)}`;
}

/** Violation counts by kind, the non-zero ones: "kind-a 2, kind-b 1" ('' when none). */
export function kindCounts(byKind: Record<string, number>): string {
  return Object.entries(byKind)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

/** "1 buffer", "3 buffers", "0 entries" (`many` when adding "s" is wrong). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
