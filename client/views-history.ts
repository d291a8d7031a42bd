/**
 * `bufctl history`: one buffer's life as a table, one line per event —
 * when, who, what, and the event's details in words.
 */
import type { HistoryEvent, HistoryResult } from '../protocol/ops/history.js';
import { table, size, formatAddress, plural } from './format.js';

const who = (id: number | null, name: string | null) => (id === null ? 'daemon' : name === null ? `#${id}` : `${name}#${id}`);
const rights = (r: unknown) => (Array.isArray(r) ? r.join(',') || 'none' : '');
const n = (e: HistoryEvent, k: string) => e[k] as number;

/** The details of one event in words. */
export function describeEvent(e: HistoryEvent): string {
  switch (e.kind) {
    case 'alloc': {
      const p = e['placement'] as { for: string[]; reason: string } | null;
      return `pool ${String(e['pool'])} (${String(e['cache'])}), ${size(n(e, 'size'))}, handle ${n(e, 'handle')}${e['addr'] !== null ? ` at ${formatAddress(n(e, 'addr'))}` : ''}${p !== null ? `, for ${p.for.join(' + ')}` : ''}`;
    }
    case 'dup':
      return `handle ${n(e, 'handle')} → ${n(e, 'newHandle')} (${rights(e['rights'])})`;
    case 'close':
      return `handle ${n(e, 'handle')}`;
    case 'send':
      return `handle ${n(e, 'handle')} → ${who(n(e, 'to'), e['toName'] as string | null)} (${rights(e['rights'])})`;
    case 'export':
      return `handle ${n(e, 'handle')} as a token (${rights(e['rights'])}), expires in ${Math.ceil(n(e, 'expiresInMs') / 1000)} s`;
    case 'import':
      return `token${e['from'] !== undefined ? ` from ${who(n(e, 'from'), e['fromName'] as string | null)}` : ''} → handle ${n(e, 'handle')} (${rights(e['rights'])})`;
    case 'exportFd':
      return `handle ${n(e, 'handle')} as a file descriptor${e['readOnly'] === true ? ', read-only' : ''}`;
    case 'importFd':
      return `a file descriptor → handle ${n(e, 'handle')}`;
    case 'map':
      return `handle ${n(e, 'handle')} → mapping ${n(e, 'mapping')} (${rights(e['rights'])})${e['fd'] === true ? ', shared memory' : ''}`;
    case 'unmap':
      return `mapping ${n(e, 'mapping')}`;
    case 'register':
      return `with ${String(e['driver'])} at device address ${formatAddress(n(e, 'deviceAddress'))}${e['iova'] === true ? ' (IOVA)' : ''}${n(e, 'bounced') > 0 ? `, ${size(n(e, 'bounced'))} bounced` : ''}`;
    case 'unregister':
      return `from ${String(e['driver'])}`;
    case 'sync':
      return `${String(e['phase'])} ${String(e['access'])}, offset ${n(e, 'offset')}${e['length'] !== null ? `, ${size(n(e, 'length'))}` : ''}: ${n(e, 'cleaned')} lines cleaned, ${n(e, 'invalidated')} invalidated`;
    case 'fence':
      return `${n(e, 'flushed')} lines flushed`;
    case 'write':
    case 'read':
      return `${size(n(e, 'length'))} at offset ${n(e, 'offset')}${e['mapping'] !== undefined ? ` through mapping ${n(e, 'mapping')}` : ''}`;
    case 'device.write':
    case 'device.read':
    case 'device.fill':
      return `${String(e['driver'])}: ${size(n(e, 'length'))} at offset ${n(e, 'offset')}`;
    case 'device.copy':
      return `${String(e['driver'])}: ${size(n(e, 'length'))} as the ${e['role'] === 'src' ? 'source' : 'destination'}`;
    case 'refused': {
      const m = e['mismatches'];
      return `${String(e['op'])}: ${String(e['code'])} ${String(e['message'])}${Array.isArray(m) && m.length > 0 ? ` (${plural(m.length, 'mismatch', 'mismatches')})` : ''}`;
    }
    case 'violation':
      return `${String(e['violation'])} (${String(e['mode'])}): ${String(e['message'])}`;
    case 'leak':
      return `registration with ${String(e['driver'])} dropped: ${String(e['reason'])}`;
    case 'disconnect': {
      const hs = e['handles'] as number[];
      const parts = [];
      if (n(e, 'count') > 0) parts.push(`${plural(n(e, 'count'), 'handle')} (${hs.join(', ')}${n(e, 'count') > hs.length ? ', …' : ''})`);
      if (n(e, 'mappings') > 0) parts.push(plural(n(e, 'mappings'), 'mapping'));
      return `gone, dropping ${parts.join(' and ') || 'nothing'}`;
    }
    case 'expire':
      return `the token ${who(n(e, 'from'), (e['fromName'] as string | null) ?? null)} exported (${(e['rights'] as string[]).join(',')}) expired unimported`;
    case 'free':
      return `${size(n(e, 'size'))} back to pool ${String(e['pool'])}${e['after'] !== undefined ? ` (after ${String(e['after'])})` : ''}`;
    default:
      return '';
  }
}

export function historyView(r: HistoryResult): string {
  const head =
    `buffer ${r.buffer} (${r.live ? 'live' : 'freed'}): ${plural(r.events.length, 'event')}` +
    (r.dropped > 0 ? `, ${r.dropped} more not kept (history.perBuffer / history.maxEvents)` : '') +
    (r.partial ? '; recorded from after its allocation' : '') +
    '\n';
  return (
    head +
    table(r.events, [
      { header: 'TIME', get: (e) => `${(e.timeMs / 1000).toFixed(3)} s`, align: 'right' },
      { header: 'CLIENT', get: (e) => who(e.client, e.clientName) },
      { header: 'EVENT', get: (e) => e.kind },
      { header: 'DETAILS', get: describeEvent },
    ])
  );
}
