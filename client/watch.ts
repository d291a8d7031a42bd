/**
 * `bufctl watch`: a live status screen driven by the daemon's event stream
 * (subscribe), not by polling. On a terminal it redraws in the alternate
 * screen on every snapshot and activity; piped, it appends each snapshot
 * and activity line; with --json it prints each event as one JSON line.
 * Ends on Ctrl-C (SIGINT), SIGTERM, after --count snapshots, or when the
 * daemon goes away.
 */
import type { BufferClient } from './client.js';
import { BufferdError } from '../protocol/errors.js';
import type { ActivityEvent, SnapshotEvent } from '../protocol/results.js';
import type { Status } from '../protocol/status.js';
import type { ParamsOf } from '../protocol/requests.js';
import type { Mismatch } from '../protocol/attributes.js';
import { formatDuration, size, section, formatAddress, formatMismatch } from './format.js';
import { hugepagesTable, poolsTable, clientsTable } from './views.js';
import { driversTable } from './views-drivers.js';

export interface WatchOptions {
  intervalMs: number;
  topics?: string[];
  /** Stop after this many snapshots (default: until interrupted). */
  count?: number;
  json: boolean;
  tty: boolean;
  out: (s: string) => void;
  /** Lines of activity kept on screen. */
  tail?: number;
}

const who = (id: unknown, name: unknown) => (typeof name === 'string' && name !== '' ? `${name} (#${String(id)})` : `client #${String(id)}`);

/** One activity event as a line of text. */
export function describeActivity(ev: ActivityEvent): string {
  const e = ev as Record<string, unknown>;
  const n = (k: string) => size(typeof e[k] === 'number' ? e[k] : null);
  switch (ev.topic) {
    case 'alloc':
      if (ev.kind === 'summary') return `${String(e['allocs'])} allocations (${n('bytesAllocated')}), ${String(e['frees'])} frees (${n('bytesFreed')}) in ${String(e['windowMs'])} ms`;
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

const clock = (ms: number) => formatDuration(ms).padStart(7);

/** The watch screen: a compact status and the latest activity. */
export function watchScreen(st: Status, lines: string[], events: number): string {
  const co = st.coherency;
  const head =
    `bufferd ${st.version}  pid ${st.pid}  up ${formatDuration(st.uptimeMs)}  ${st.socket}\n` +
    `memory ${size(st.memory.total - st.memory.free)} used of ${size(st.memory.total)}  ·  ${st.buffers.live} buffers  ·  ${st.clients.length} clients  ·  ` +
    `violations ${co.violations.total} (${co.mode})  ·  leaks ${st.dma.leaks}  ·  events ${events}\n`;
  const pools = st.pools.filter((p) => p.pages > 0 || p.buffers > 0);
  const drivers = driversTable(st.drivers.filter((d) => d.registrations > 0 || d.refused > 0 || d.leaks > 0 || d.kind === 'client'));
  return [
    head,
    section('Hugepages', hugepagesTable(st.hugepages)),
    section(`Pools in use (${pools.length} of ${st.pools.length})`, poolsTable(pools)),
    section('Clients', clientsTable(st.clients)),
    section('Drivers in use', drivers),
    section('Activity (newest last)', lines.length === 0 ? '  (none yet)\n' : `${lines.map((l) => `  ${l}`).join('\n')}\n`),
  ].join('\n');
}

/** Run the watch until interrupted; resolves with the number of snapshots shown. */
export async function watch(c: BufferClient, o: WatchOptions): Promise<number> {
  const tail = o.tail ?? 12;
  const lines: string[] = [];
  let last: Status | null = null;
  let snapshots = 0;
  let events = 0;
  let redraw: NodeJS.Timeout | null = null;

  const draw = () => {
    redraw = null;
    if (last === null) return;
    o.out(`\x1b[H\x1b[2J${watchScreen(last, lines, events)}\n  Ctrl-C to stop`);
  };
  const schedule = () => {
    if (o.tty) redraw ??= setTimeout(draw, 50);
  };

  return new Promise<number>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (redraw !== null) clearTimeout(redraw);
      // leave the alternate screen and keep the last picture on the terminal
      if (o.tty) o.out(`\x1b[?25h\x1b[?1049l${last !== null ? `${watchScreen(last, lines, events)}\n` : ''}`);
      if (err !== undefined) reject(err);
      else resolve(snapshots);
    };
    const onSignal = () => finish();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    c.on('activity', (ev) => {
      events++;
      if (o.json) return o.out(`${JSON.stringify(ev)}\n`);
      const line = `${clock(ev.timeMs)}  ${describeActivity(ev)}`;
      lines.push(line);
      if (lines.length > tail) lines.shift();
      if (o.tty) schedule();
      else o.out(`${line}\n`);
    });
    c.on('snapshot', (ev: SnapshotEvent) => {
      snapshots++;
      last = ev.status;
      if (o.json) o.out(`${JSON.stringify(ev)}\n`);
      else if (o.tty) schedule();
      else o.out(`--- ${formatDuration(ev.status.uptimeMs)} ---\n${watchScreen(ev.status, [], events)}\n`);
      if (o.count !== undefined && snapshots >= o.count) {
        if (o.tty) draw();
        finish();
      }
    });
    c.on('subscription-dropped', (ev) => finish(new BufferdError('ECONNRESET', `the daemon dropped this watch: ${ev.reason}`)));
    c.on('shutdown', () => finish(new BufferdError('ECONNRESET', 'the daemon is shutting down')));
    c.on('close', (e) => finish(e));

    if (o.tty) o.out('\x1b[?1049h\x1b[?25l\x1b[H\x1b[2Jwaiting for the first snapshot…');
    const params: ParamsOf<'subscribe'> = { intervalMs: o.intervalMs };
    if (o.topics !== undefined) params.topics = [...new Set([...o.topics, 'status'])] as NonNullable<typeof params.topics>;
    c.subscribe(params).catch((e: Error) => finish(e));
  });
}
