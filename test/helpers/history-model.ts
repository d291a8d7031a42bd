/**
 * The history journal as it was before its events moved into columns
 * (daemon/session/history.ts at 9f9ec08: an object per event and per
 * journal, Maps for the live and freed journals): the reference model the
 * columns journal is checked against (test/unit/history-columns.test.ts).
 * Same bounds, same order, same answers.
 */
import type { Actor, HistoryEntry, HistoryLimits } from '../../daemon/session/history.js';

interface Journal {
  readonly buffer: number;
  readonly events: HistoryEntry[];
  dropped: number;
  partial: boolean;
  live: boolean;
  readonly clients: number[];
  holds: number;
  pendingFree: { client: Actor; fields: Record<string, unknown> } | null;
}

export class ObjectJournal {
  private readonly live = new Map<number, Journal>();
  /** Freed buffers' journals, oldest free first (Map keeps insertion order). */
  private readonly retired = new Map<number, Journal>();
  private total = 0;
  private seq = 0;
  /** Events not kept over the journal's life (caps and budget). */
  dropped = 0;

  constructor(
    private readonly limits: () => HistoryLimits,
    private readonly now: () => number,
  ) {}

  get enabled(): boolean {
    const on = this.limits().enabled;
    if (!on && this.total + this.live.size + this.retired.size > 0) this.clear();
    return on;
  }

  /** Events kept, journals live and retired. */
  stats(): { events: number; live: number; freed: number; dropped: number } {
    return { events: this.total, live: this.live.size, freed: this.retired.size, dropped: this.dropped };
  }

  clear(): void {
    this.live.clear();
    this.retired.clear();
    this.total = 0;
  }

  /** A buffer's journal, live or retired. */
  get(buffer: number): Journal | undefined {
    return this.live.get(buffer) ?? this.retired.get(buffer);
  }

  private liveJournal(buffer: number, partial: boolean): Journal {
    let j = this.live.get(buffer);
    if (j === undefined) {
      j = { buffer, events: [], dropped: 0, partial, live: true, clients: [], holds: 0, pendingFree: null };
      this.live.set(buffer, j);
    }
    return j;
  }

  /** A new buffer: its journal starts with this event. */
  begin(buffer: number, kind: string, client: Actor, fields: Record<string, unknown>): void {
    if (!this.enabled) return;
    // a new buffer with the id of a freed one (ids are not reused by the daemon, but a journal must not mix two lives)
    this.forget(buffer);
    this.push(this.liveJournal(buffer, false), kind, client, fields);
  }

  /**
   * Record an event on a buffer (live, or freed while the op ran). `also`:
   * another client given the buffer (a send's receiver), who may read it.
   */
  record(buffer: number, kind: string, client: Actor, fields: Record<string, unknown>, also?: number): void {
    if (!this.enabled) return;
    const j = this.live.get(buffer) ?? this.retired.get(buffer) ?? this.liveJournal(buffer, true);
    if (also !== undefined && !j.clients.includes(also)) j.clients.push(also);
    this.push(j, kind, client, fields);
  }

  private push(j: Journal, kind: string, client: Actor, fields: Record<string, unknown>): void {
    const lim = this.limits();
    if (client !== null && !j.clients.includes(client.id)) j.clients.push(client.id);
    const ev: HistoryEntry = { seq: ++this.seq, timeMs: Math.round(this.now() * 1000) / 1000, kind, client: client?.id ?? null, clientName: client?.name ?? null, fields };
    if (j.events.length >= lim.perBuffer) {
      // keep the first event (the allocation): drop the oldest after it
      j.events.splice(Math.min(1, j.events.length - 1), 1);
      j.dropped++;
      this.dropped++;
      this.total--;
    }
    j.events.push(ev);
    this.total++;
    while (this.total > lim.maxEvents) {
      const oldest = this.retired.keys().next();
      if (oldest.done === true || oldest.value === j.buffer) {
        // nothing freed left to give up: this event is not kept
        j.events.pop();
        this.total--;
        j.dropped++;
        this.dropped++;
        break;
      }
      this.forget(oldest.value);
    }
  }

  private forget(buffer: number): void {
    const j = this.retired.get(buffer);
    if (j === undefined) return;
    this.retired.delete(buffer);
    this.total -= j.events.length;
  }

  /** An op on the buffer begins: a free during it waits for the op's own event. */
  hold(buffer: number): void {
    const j = this.live.get(buffer);
    if (j !== undefined) j.holds++;
  }

  /** The op ended; a free it caused is recorded now, as done by `actor` after `op`. */
  release(buffer: number, actor: Actor = null, op?: string): void {
    const j = this.live.get(buffer);
    if (j === undefined || j.holds === 0) return;
    if (--j.holds === 0 && j.pendingFree !== null) {
      const f = j.pendingFree;
      j.pendingFree = null;
      this.freed(buffer, f.client ?? actor, op === undefined ? f.fields : { ...f.fields, after: op });
    }
  }

  /** The buffer was freed: its last event; the journal moves to the freed ring. */
  freed(buffer: number, client: Actor, fields: Record<string, unknown>): void {
    if (!this.enabled) return;
    const j = this.live.get(buffer);
    if (j === undefined) return; // history was off when it was made and nothing happened since
    if (j.holds > 0) {
      j.pendingFree = { client, fields };
      return;
    }
    this.push(j, 'free', client, fields);
    this.live.delete(buffer);
    j.live = false;
    const keep = this.limits().keepFreed;
    if (keep === 0) {
      this.total -= j.events.length;
      return;
    }
    this.retired.set(buffer, j);
    while (this.retired.size > keep) this.forget(this.retired.keys().next().value!);
  }

  /** The name a client had when it last acted on the buffer (for one that is gone). */
  nameOf(buffer: number, client: number): string | null {
    const ev = this.get(buffer)?.events ?? [];
    for (let i = ev.length - 1; i >= 0; i--) if (ev[i]!.client === client && ev[i]!.clientName !== null) return ev[i]!.clientName;
    return null;
  }

  /** May this client read the buffer's history (it acted on it or was given it)? */
  involved(buffer: number, client: number): boolean {
    return this.get(buffer)?.clients.includes(client) === true;
  }
}
