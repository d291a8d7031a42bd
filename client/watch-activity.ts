/**
 * `bufctl watch`: one activity event (alloc, handles, drivers, violations,
 * hugepages, clients) as a line of text.
 */
import type { ActivityEvent } from '../protocol/results.js';
import type { Mismatch } from '../protocol/attributes.js';
import { size, formatAddress, formatMismatch, plural } from './format.js';

const who = (id: unknown, name: unknown) => (typeof name === 'string' && name !== '' ? `${name} (#${String(id)})` : `client #${String(id)}`);

/** One activity event as a line of text. */
export function describeActivity(ev: ActivityEvent): string {
  const e = ev as Record<string, unknown>;
  const n = (k: string) => size(typeof e[k] === 'number' ? e[k] : null);
  switch (ev.topic) {
    case 'alloc':
      if (ev.kind === 'summary') return `${plural(Number(e['allocs']), 'allocation')} (${n('bytesAllocated')}), ${plural(Number(e['frees']), 'free')} (${n('bytesFreed')}) in ${String(e['windowMs'])} ms`;
      if (ev.kind === 'alloc') return `buffer ${String(e['buffer'])}: ${n('size')} from ${String(e['pool'])} by ${who(e['client'], e['name'])}`;
      return `buffer ${String(e['buffer'])} freed (${n('size')}, ${String(e['pool'])})`;
    case 'handles':
      if (ev.kind === 'send') return `buffer ${String(e['buffer'])} passed ${who(e['from'], e['fromName'])} -> ${who(e['to'], e['toName'])} [${(e['rights'] as string[] | undefined)?.join(',') ?? ''}]`;
      if (ev.kind === 'export') return `buffer ${String(e['buffer'])} exported by ${who(e['from'], e['fromName'])}`;
      return `buffer ${String(e['buffer'])} imported by ${who(e['to'], e['toName'])}`;
    case 'drivers': {
      const d = String(e['driver']);
      if (ev.kind === 'register') return `${d} registered buffer ${String(e['buffer'])} at ${formatAddress(e['deviceAddress'] as number)}${e['bounced'] === true ? ' (bounced)' : ''}`;
      if (ev.kind === 'refuse') {
        const mm = (e['mismatches'] as Mismatch[] | null) ?? [];
        return `${d} REFUSED buffer ${String(e['buffer'])}: ${mm.map((m) => formatMismatch(m, 'buffer has')).join('; ') || String(e['code'])}`;
      }
      if (ev.kind === 'unregister') return `${d} unregistered buffer ${String(e['buffer'])}`;
      if (ev.kind === 'leak') return `${d} LEAKED buffer ${String(e['buffer'])}`;
      return `driver ${d} ${ev.kind === 'attach' ? 'attached by' : 'detached from'} client #${String(e['client'])}`;
    }
    case 'violations':
      return `VIOLATION ${ev.kind}: ${String(e['message'])}`;
    case 'hugepages':
      return `${n('size')} hugepages resized: asked ${String(e['requested'])}, reached ${String(e['reached'])}`;
    case 'clients':
      return ev.kind === 'connect' ? `${who(e['client'], e['name'])} connected as ${String(e['principal'])}` : `${who(e['client'], e['name'])} disconnected`;
    default:
      return `${ev.topic} ${ev.kind}`;
  }
}
