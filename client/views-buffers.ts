/**
 * `bufctl buffers`: live buffers, who holds them (handles, and export
 * tokens in flight), the drivers they are registered with, a totals line
 * and a legend of the columns.
 */
import type { BufferListing } from '../protocol/results.js';
import { table, size, plural } from './format.js';

const who = (id: number, name: string | null) => name ?? `#${id}`;

/** "in 12 s", rounded up so a token with time left never says 0. */
const expiresIn = (ms: number) => `${Math.max(1, Math.ceil(ms / 1000))} s`;

/** "alpha×2 beta×1", "in flight: token from alpha, expires in 12 s", or both joined with "+". */
export function heldBy(b: BufferListing): string {
  const handles = b.holders.map((h) => `${who(h.client, h.name)}×${h.handles}`).join(' ');
  const ts = b.tokens ?? [];
  let tokens = '';
  if (ts.length === 1) {
    tokens = `token from ${who(ts[0]!.from.id, ts[0]!.from.name)}, expires in ${expiresIn(ts[0]!.expiresInMs)}`;
  } else if (ts.length > 1) {
    const from = [...new Set(ts.map((t) => who(t.from.id, t.from.name)))].join(', ');
    tokens = `${ts.length} tokens from ${from}, first expires in ${expiresIn(Math.min(...ts.map((t) => t.expiresInMs)))}`;
  }
  if (tokens === '') return handles || '-';
  return handles === '' ? `in flight: ${tokens}` : `${handles} + ${tokens}`;
}

/** What the columns mean, under the table. */
export const BUFFERS_LEGEND = [
  'HELD BY: clients×handles open on it, and export tokens not yet imported; DRIVERS: registered with (device addresses in --json)',
  'SIZE: bytes asked; USIZE: usable bytes (the size class or whole pages); CREATOR: client id that allocated it; MAPS: CPU mappings',
];

/** "3 buffers, 9.77 KiB asked, 10 KiB usable; 4 handles, 1 token in flight, 2 driver registrations, 0 mappings" */
export function buffersTotals(bs: BufferListing[]): string {
  const sum = (f: (b: BufferListing) => number) => bs.reduce((a, b) => a + f(b), 0);
  return (
    `${plural(bs.length, 'buffer')}, ${size(sum((b) => b.size))} asked, ${size(sum((b) => b.usize))} usable; ` +
    `${plural(sum((b) => b.refs.handles), 'handle')}, ${plural(sum((b) => b.refs.inflight), 'token')} in flight, ` +
    `${plural(sum((b) => b.refs.registrations), 'driver registration')}, ${plural(sum((b) => b.refs.mappings), 'mapping')}`
  );
}

export function buffersView(bs: BufferListing[]): string {
  if (bs.length === 0) return '  (none)\n';
  const t = table(bs, [
    { header: 'BUFFER', get: (b) => b.buffer, align: 'right' },
    { header: 'POOL', get: (b) => b.pool },
    { header: 'CACHE', get: (b) => b.cache },
    { header: 'SIZE', get: (b) => size(b.size), align: 'right' },
    { header: 'USIZE', get: (b) => size(b.usize), align: 'right' },
    { header: 'KIND', get: (b) => b.kind },
    { header: 'CREATOR', get: (b) => b.creator, align: 'right' },
    { header: 'HELD BY', get: heldBy },
    { header: 'DRIVERS', get: (b) => (b.registrations ?? []).map((r) => (r.direction === 'bidirectional' ? r.driver : `${r.driver}(${r.direction})`)).join(' ') || '-' },
    { header: 'MAPS', get: (b) => b.refs.mappings, align: 'right' },
  ]);
  return `${t}  ${buffersTotals(bs)}\n${BUFFERS_LEGEND.map((l) => `  ${l}\n`).join('')}`;
}
