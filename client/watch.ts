/**
 * `bufctl watch`: a live status screen driven by the daemon's event stream
 * (subscribe), not by polling.
 *
 * - On a terminal, like top: the alternate screen redrawn on every snapshot
 *   and activity, fitted to the terminal's size; q (or Ctrl-C) quits, s
 *   cycles the clients' sort order.
 * - Piped, it appends each snapshot and activity line; with --json it prints
 *   each event as one JSON line.
 * - When the daemon goes away it says so ("daemon gone, reconnecting…") and
 *   connects again as soon as a daemon answers on the socket.
 *
 * Ends on q, Ctrl-C (SIGINT), SIGTERM, SIGHUP or after --count snapshots.
 */
import type { BufferClient } from './client.js';
import type { SnapshotEvent } from '../protocol/results.js';
import type { ParamsOf } from '../protocol/requests.js';
import { formatDuration } from './format.js';
import { describeActivity } from './watch-activity.js';
import { screen, SORTS, type ScreenState } from './watch-screen.js';
import { openTerminal, type Terminal, type TerminalIo } from './watch-term.js';

export { describeActivity };

export interface WatchOptions {
  intervalMs: number;
  topics?: string[];
  /** Stop after this many snapshots (default: until interrupted). */
  count?: number;
  json: boolean;
  tty: boolean;
  out: (s: string) => void;
  /** Notes beside the output in --json mode (reconnections); default: none. */
  err?: (s: string) => void;
  /** The terminal's streams (tty): keys, size and resizes. Without them: 80×24, no keys. */
  terminal?: TerminalIo;
  /** Open a new session once the daemon went away; without it the watch ends with the connection's error. */
  reconnect?: () => Promise<BufferClient>;
  /** Activity lines kept (default 200). */
  tail?: number;
}

/** Delay before the first reconnection attempt, doubled up to RETRY_MAX_MS. */
const RETRY_MS = 100;
const RETRY_MAX_MS = 2000;

const clock = (ms: number) => formatDuration(ms).padStart(7);

/** Run the watch until it ends; resolves with the number of snapshots shown. */
export async function watch(first: BufferClient, o: WatchOptions): Promise<number> {
  const tail = o.tail ?? 200;
  const s: ScreenState = { cur: null, prev: null, activity: [], sort: 'bytes', notice: null, keys: '' };
  let snapshots = 0;
  let client: BufferClient | null = first;
  let redraw: NodeJS.Timeout | null = null;
  let retry: NodeJS.Timeout | null = null;
  let term: Terminal | null = null;

  const fitted = () => screen(s, term!.size());
  const draw = () => {
    if (redraw !== null) clearTimeout(redraw);
    redraw = null;
    term?.draw(fitted());
  };
  const schedule = () => {
    if (term !== null) redraw ??= setTimeout(draw, 50);
  };
  /** A note about the connection: atop the screen until `sticky` ends, a line piped, on stderr with --json. */
  const note = (text: string, sticky: boolean) => {
    if (term !== null) {
      s.notice = sticky ? text : null;
      draw();
    } else if (o.json) o.err?.(`bufctl watch: ${text}\n`);
    else o.out(`--- ${text} ---\n`);
  };

  return new Promise<number>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      for (const sig of SIGNALS) process.off(sig, onSignal);
      if (redraw !== null) clearTimeout(redraw);
      if (retry !== null) clearTimeout(retry);
      // the last picture stays on the normal screen
      term?.close(s.cur !== null ? fitted().slice(0, Math.max(1, term.size().rows - 1)) : undefined);
      if (client !== null && client !== first) void client.disconnect();
      if (err !== undefined) reject(err);
      else resolve(snapshots);
    };
    const onSignal = () => finish();
    const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    for (const sig of SIGNALS) process.on(sig, onSignal);

    const onKey = (k: string) => {
      if (k === 'q' || k === 'Q' || k === '\x03') return finish();
      if (k === 's' || k === 'S') {
        const i = SORTS.indexOf(s.sort);
        s.sort = SORTS[(i + (k === 's' ? 1 : SORTS.length - 1)) % SORTS.length]!;
        draw();
      }
    };
    if (o.tty) {
      term = openTerminal(o.out, o.terminal, onKey, () => draw());
      s.keys = term.keys ? 's: sort, q: quit' : 'Ctrl-C: quit';
      draw();
    }

    /** The daemon went away (or dropped this watch): say so and connect again. */
    const lost = (c: BufferClient, why: string) => {
      if (c !== client || done) return;
      client = null;
      void c.disconnect();
      if (o.reconnect === undefined) return finish(new Error(why));
      note(`daemon gone, reconnecting… (${why})`, true);
      let delay = RETRY_MS;
      const attempt = () => {
        retry = null;
        o.reconnect!().then(
          (n) => {
            if (done) return void n.disconnect();
            client = n;
            s.prev = null;
            note(`reconnected to bufferd pid ${n.session.server.pid}`, false);
            start(n);
          },
          () => {
            if (done) return;
            retry = setTimeout(attempt, delay);
            delay = Math.min(delay * 2, RETRY_MAX_MS);
          },
        );
      };
      attempt();
    };

    const start = (c: BufferClient) => {
      c.on('activity', (ev) => {
        if (c !== client) return;
        if (o.json) return o.out(`${JSON.stringify(ev)}\n`);
        const line = `${clock(ev.timeMs)}  ${describeActivity(ev)}`;
        s.activity.push(line);
        if (s.activity.length > tail) s.activity.shift();
        if (term !== null) schedule();
        else o.out(`${line}\n`);
      });
      c.on('snapshot', (ev: SnapshotEvent) => {
        if (c !== client) return;
        snapshots++;
        s.prev = s.cur !== null && s.cur.status.pid === ev.status.pid ? s.cur : null;
        s.cur = { status: ev.status, timeMs: ev.timeMs };
        if (o.json) o.out(`${JSON.stringify(ev)}\n`);
        else if (term !== null) schedule();
        else o.out(`--- ${formatDuration(ev.status.uptimeMs)} ---\n${screen(s, null, false).join('\n')}\n\n`);
        if (o.count !== undefined && snapshots >= o.count) {
          if (term !== null) draw();
          finish();
        }
      });
      c.on('subscription-dropped', (ev) => lost(c, `the daemon dropped this watch: ${ev.reason}`));
      c.on('shutdown', () => {
        if (c === client) note('the daemon is shutting down', true);
      });
      c.on('close', (e) => lost(c, e.message));
      const params: ParamsOf<'subscribe'> = { intervalMs: o.intervalMs };
      if (o.topics !== undefined) params.topics = [...new Set([...o.topics, 'status'])] as NonNullable<typeof params.topics>;
      c.subscribe(params).catch((e: Error) => {
        if (c === client) finish(e);
      });
    };
    start(first);
  });
}
