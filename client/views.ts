/**
 * Human views of daemon objects for bufctl.
 */
import type { Status } from '../protocol/status.js';
import { table, size, formatAddress, formatDuration, section } from './format.js';

export function statusView(st: Status): string {
  const out: string[] = [];
  out.push(`bufferd ${st.version} (protocol ${st.protocolVersion})  pid ${st.pid}  up ${formatDuration(st.uptimeMs)}  socket ${st.socket}\n`);
  out.push(
    section(
      `Memory: ${size(st.memory.free)} free of ${size(st.memory.total)}`,
      table(st.memory.regions, [
        { header: 'REGION', get: (r) => r.name },
        { header: 'KIND', get: (r) => r.kind },
        { header: 'BASE', get: (r) => formatAddress(r.base) },
        { header: 'SIZE', get: (r) => size(r.size), align: 'right' },
        { header: 'FREE', get: (r) => size(r.free), align: 'right' },
        { header: 'LARGEST FREE', get: (r) => size(r.largestFree), align: 'right' },
      ]),
    ),
  );
  out.push(
    section(
      'Hugepages',
      table(st.hugepages, [
        { header: 'SIZE', get: (h) => size(h.size) },
        { header: 'REGION', get: (h) => h.region },
        { header: 'TOTAL', get: (h) => h.total },
        { header: 'FREE', get: (h) => h.free },
        { header: 'RESERVED', get: (h) => h.reserved },
        { header: 'SURPLUS', get: (h) => h.surplus },
        { header: 'NR', get: (h) => h.nr },
        { header: 'OVERCOMMIT', get: (h) => h.overcommit },
      ]),
    ),
  );
  out.push(
    section(
      'Pools',
      table(st.pools, [
        { header: 'POOL', get: (p) => p.name },
        { header: 'CACHE', get: (p) => p.cache },
        { header: 'PAGE', get: (p) => size(p.pageSize), align: 'right' },
        { header: 'REGION', get: (p) => p.region },
        { header: 'PAGES', get: (p) => p.pages, align: 'right' },
        { header: 'BUFFERS', get: (p) => p.buffers, align: 'right' },
        { header: 'ALLOCATED', get: (p) => size(p.allocated), align: 'right' },
        { header: 'ACTIVE', get: (p) => size(p.active), align: 'right' },
        { header: 'CONVERSIONS', get: (p) => p.conversions, align: 'right' },
      ]),
    ),
  );
  out.push(
    section(
      'Clients',
      table(st.clients, [
        { header: 'ID', get: (c) => c.id, align: 'right' },
        { header: 'NAME', get: (c) => c.name },
        { header: 'HANDLES', get: (c) => c.handles, align: 'right' },
        { header: 'CONNECTED', get: (c) => formatDuration(c.connectedMs), align: 'right' },
      ]),
    ),
  );
  out.push(
    section(
      'Drivers',
      table(st.drivers, [
        { header: 'DRIVER', get: (d) => d.name },
        { header: 'REGISTRATIONS', get: (d) => d.registrations, align: 'right' },
      ]),
    ),
  );
  return out.join('\n');
}
