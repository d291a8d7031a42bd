/**
 * Human views of drivers, constraints and merges for bufctl.
 */
import type { DriverStatus } from '../protocol/status.js';
import type { Constraints, MergedAttributes } from '../protocol/attributes.js';
import type { MergeResult, ResultOf } from '../protocol/results.js';
import { table, size, formatAddress, formatMismatch, kindCounts, plural, type Column } from './format.js';

const entries = (e: Record<string, number>) =>
  Object.entries(e)
    .map(([k, v]) => `${size(Number(k))}×${v}`)
    .join(' ') || '-';

/**
 * The drivers table: `bufctl drivers` and watch show every column; `compact`
 * (the status overview) only who the driver is, its registrations and leaks.
 */
export function driversTable(ds: DriverStatus[], o: { compact?: boolean } = {}): string {
  const cols: Column<DriverStatus>[] = [
    { header: 'DRIVER', get: (d) => d.name },
    { header: 'KIND', get: (d) => (d.kind === 'client' ? `client ${d.owner}` : 'builtin') },
    { header: 'COHERENT', get: (d) => (d.coherent ? 'yes' : 'no') },
    { header: 'IOMMU', get: (d) => (d.iommu ? 'yes' : 'no') },
    { header: o.compact === true ? 'REGISTRATIONS' : 'REGS', get: (d) => d.registrations, align: 'right' },
    { header: 'BYTES', get: (d) => size(d.bytes), align: 'right' },
  ];
  if (o.compact !== true) {
    cols.push(
      { header: 'IOVA USED/TOTAL', get: (d) => (d.iommu ? `${size(d.iovaUsed)}/${size(d.iovaTotal)}` : '-'), align: 'right' },
      { header: 'IOMMU ENTRIES', get: (d) => entries(d.iommuEntries) },
      { header: 'BOUNCE SLOTS', get: (d) => (d.bounceSlots.used > 0 ? `${d.bounceSlots.used}/${d.bounceSlots.total}` : '-'), align: 'right' },
      { header: 'REFUSED', get: (d) => d.refused, align: 'right' },
    );
  }
  cols.push({ header: 'LEAKS', get: (d) => d.leaks, align: 'right' });
  return table(ds, cols);
}

function constraintLines(c: Constraints): [string, string][] {
  const rows: [string, string][] = [];
  if (c.align !== undefined) rows.push(['align', size(c.align)]);
  rows.push(['contiguous', c.contiguous === true ? 'required' : 'no']);
  if (c.maxSegments !== undefined) rows.push(['maxSegments', String(c.maxSegments)]);
  if (c.maxSegmentSize !== undefined) rows.push(['maxSegmentSize', size(c.maxSegmentSize)]);
  if (c.segmentBoundary !== undefined) rows.push(['segmentBoundary', size(c.segmentBoundary)]);
  rows.push(['cache', (c.cache ?? ['writeback', 'writecombine', 'uncached']).join(', ')]);
  rows.push(['coherent', c.coherent === true ? 'yes (snoops CPU caches)' : 'no']);
  rows.push(['regions', (c.regions ?? ['any']).join(', ')]);
  rows.push(['dmaMask', c.dmaMask !== undefined ? `${c.dmaMask} bits${c.dmaMask < 53 ? ` (below ${formatAddress(2 ** c.dmaMask)})` : ''}` : '64 bits']);
  rows.push(['iommu', c.iommu ? `pages ${c.iommu.pageSizes.map(size).join('/')}, IOVA ${size(c.iommu.iovaSize)}` : 'none']);
  rows.push(['bounce', c.bounce === true ? 'may bounce (swiotlb)' : 'no']);
  return rows;
}

export function constraintsView(r: { driver: string; kind: string; description: string; constraints: Constraints }): string {
  const rows = constraintLines(r.constraints);
  const w = Math.max(...rows.map((x) => x[0].length));
  return `${r.driver} (${r.kind}): ${r.description}\n${rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n')}\n`;
}

/** "any number, any size", "one (contiguous), any size" or "at most 64, each ≤ 256 KiB, none crossing a 4 GiB boundary". */
function segmentsLine(m: MergedAttributes): string {
  const parts = [
    m.contiguous ? 'one (contiguous)' : m.maxSegments === null ? 'any number' : `at most ${m.maxSegments}`,
    m.maxSegmentSize === null ? 'any size' : `each ≤ ${size(m.maxSegmentSize)}`,
  ];
  if (m.segmentBoundary !== null) parts.push(`none crossing a ${size(m.segmentBoundary)} boundary`);
  return parts.join(', ');
}

function mergedLines(m: MergedAttributes): string {
  const rows: [string, string][] = [
    ['align', `${size(m.align)} (LCM)`],
    ['contiguous', m.contiguous ? 'required (a device without an IOMMU needs it)' : 'no'],
    ['cache', `${m.cache.join(', ')} (intersection)`],
    ['regions', m.regions === null ? 'any' : m.regions.join(', ')],
    ['dmaMask', `${m.dmaMask} bits (minimum)`],
    ['address limit', m.addressLimit === null ? 'none' : `below ${formatAddress(m.addressLimit)} (devices without IOMMU or bounce)`],
    ['segments', segmentsLine(m)],
    ['coherent', m.coherent ? 'all devices snoop (no syncs needed)' : 'no: CPU access needs sync'],
    ['via IOMMU', m.iommuDevices.join(', ') || '-'],
    ['may bounce', m.bounceDevices.join(', ') || '-'],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

export function mergeView(r: MergeResult): string {
  return (
    `Merged constraints of ${r.merged.drivers.join(' + ')}\n${mergedLines(r.merged)}\n\nPools\n` +
    table(r.pools, [
      { header: 'POOL', get: (p) => p.name },
      { header: 'FITS', get: (p) => (p.fits ? 'yes' : 'no') },
      { header: 'ALLOWED', get: (p) => (p.allowed ? 'yes' : 'no (capability)') },
      { header: 'WHY NOT', get: (p) => p.misfits.map((m) => formatMismatch(m)).join('; ') || '-' },
    ])
  );
}

export function violationsView(r: ResultOf<'violations'>): string {
  const counts = kindCounts(r.byKind);
  const head = `Coherency checker: mode ${r.mode}, ${plural(r.total, 'violation')} since start${counts !== '' ? `: ${counts}` : ''}\n`;
  return (
    head +
    table(r.violations, [
      { header: 'SEQ', get: (v) => v.seq, align: 'right' },
      { header: 'TIME', get: (v) => `${(v.timeMs / 1000).toFixed(1)}s`, align: 'right' },
      { header: 'KIND', get: (v) => v.kind },
      { header: 'CLIENT', get: (v) => (v.client.name !== null ? `${v.client.id} ${v.client.name}` : String(v.client.id)) },
      { header: 'BUFFER', get: (v) => v.buffer, align: 'right' },
      { header: 'DRIVER', get: (v) => v.driver ?? '-' },
      { header: 'OP', get: (v) => v.op },
      { header: 'RANGE', get: (v) => `${v.range.offset}+${v.range.length}` },
      { header: 'WHAT WENT WRONG', get: (v) => v.message },
    ])
  );
}
