/**
 * The history journal: for each buffer, what happened to it and who did it,
 * in order — kept while it lives and, once freed, for the last `keepFreed`
 * freed buffers. Pure: the recording hooks (ops/history-record.ts) decide
 * what an event says; this file keeps them within bounds.
 *
 * Bounds (config `history`, read at each use so a reload applies at once):
 * - `perBuffer` events per buffer: past it the oldest event after the
 *   allocation goes (the allocation says who made it and how, and stays);
 * - `maxEvents` events over all journals: past it the oldest freed
 *   buffer's journal goes first, then the new event is not kept (counted as
 *   dropped on its buffer);
 * - `keepFreed` journals of freed buffers, oldest retired first.
 * Like the kernel's page_owner (mm/page_owner.c, __set_page_owner and
 * __reset_page_owner, declared in include/linux/page_owner.h) the record is
 * kept beside the object and stays after the free until reused; unlike it,
 * the journal is bounded by count, not by a fixed slot per page.
 *
 * Events and journals live in columns (history-slots.ts), not objects: a
 * recorded event is a few numbers and references written into a reused
 * slot, so recording allocates nothing and kept events cost the garbage
 * collector nothing to copy; the readable events (`get`) are built when
 * someone reads, through the event's codec (history-codecs.ts).
 */
import { IntMap } from '../lib/intset.js';
import { EventSlots, JournalSlots, LIVE, NIL, PARTIAL, PENDING_FREE } from './history-slots.js';
import { FREE, GENERIC, codecOf } from './history-codecs.js';

export interface HistoryLimits {
  enabled: boolean;
  perBuffer: number;
  maxEvents: number;
  keepFreed: number;
}

/** One kept event, as read back (`get`); `flat` puts its fields beside the rest. */
export interface HistoryEntry {
  readonly seq: number;
  readonly timeMs: number;
  readonly kind: string;
  readonly client: number | null;
  readonly clientName: string | null;
  readonly fields: Record<string, unknown>;
}

/** An entry as the protocol carries it: its fields beside seq, time, kind and client. */
export function flat(e: HistoryEntry): { seq: number; timeMs: number; kind: string; client: number | null; clientName: string | null; [field: string]: unknown } {
  return { seq: e.seq, timeMs: e.timeMs, kind: e.kind, client: e.client, clientName: e.clientName, ...e.fields };
}

/** A buffer's journal as read back: its events, oldest first. */
export interface Journal {
  readonly buffer: number;
  readonly events: HistoryEntry[];
  readonly dropped: number;
  /** Begun after the allocation (history was off then, or the journal was made for a lone event). */
  readonly partial: boolean;
  readonly live: boolean;
}

/** Who did it: a client (a session is one), or null for the daemon. */
export type Actor = { readonly id: number; readonly name: string | null } | null;

type Fields = Record<string, unknown>;

export class HistoryJournal {
  /** Journal slots by buffer id, live and retired (a buffer id has one journal at a time). */
  private readonly ids = new IntMap<number>();
  /** Journals live, and retired (freed buffers', in order, oldest free first, on a list through the slots: `oldest`, `newest`). */
  private lives = 0;
  private retireds = 0;
  private oldest = NIL;
  private newest = NIL;
  private total = 0;
  private seq = 0;
  /** Events not kept over the journal's life (caps and budget). */
  dropped = 0;
  /** The events' columns: a codec's `put` writes the values of the slot `slot` returns. */
  readonly slots = new EventSlots();
  private readonly js = new JournalSlots();

  constructor(
    private readonly limits: () => HistoryLimits,
    private readonly now: () => number,
  ) {}

  /** The journal slot of a buffer, or NIL. */
  private slotOf(buffer: number): number {
    return this.ids.get(buffer) ?? NIL;
  }

  get enabled(): boolean {
    const on = this.limits().enabled;
    if (!on && this.total + this.ids.size > 0) this.clear();
    return on;
  }

  /** Events kept, journals live and retired. */
  stats(): { events: number; live: number; freed: number; dropped: number } {
    return { events: this.total, live: this.lives, freed: this.retireds, dropped: this.dropped };
  }

  clear(): void {
    this.ids.clear();
    this.lives = this.retireds = 0;
    this.oldest = this.newest = NIL;
    this.total = 0;
    this.slots.reset();
    this.js.reset();
  }

  /** A buffer's journal, live or retired, with its events made readable. */
  get(buffer: number): Journal | undefined {
    const j = this.slotOf(buffer);
    if (j === NIL) return undefined;
    const J = this.js;
    const events: HistoryEntry[] = [];
    for (let e = J.head[j]!; e !== NIL; e = this.slots.next[e]!) events.push(this.entry(e));
    return { buffer, events, dropped: J.dropped[j]!, partial: (J.flags[j]! & PARTIAL) !== 0, live: (J.flags[j]! & LIVE) !== 0 };
  }

  private entry(e: number): HistoryEntry {
    const E = this.slots;
    const c = codecOf(E.codec[e]!);
    const client = E.client[e]!;
    return {
      seq: E.seq[e]!,
      timeMs: E.time[e]!,
      kind: c.kind ?? (E.v[0]![e] as string),
      client: client === NIL ? null : client,
      clientName: E.name[e]!,
      fields: c.fields(E, e),
    };
  }

  private liveJournal(buffer: number, partial: boolean): number {
    let j = this.slotOf(buffer);
    if (j === NIL) {
      j = this.js.take(buffer, LIVE | (partial ? PARTIAL : 0));
      this.ids.set(buffer, j);
      this.lives++;
    }
    return j;
  }

  /** A new buffer: its journal starts with this event. */
  begin(buffer: number, kind: string, client: Actor, fields: Fields): void {
    this.generic(this.open(buffer, GENERIC, client, true), kind, fields);
  }

  /**
   * Record an event on a buffer (live, or freed while the op ran). `also`:
   * another client given the buffer (a send's receiver), who may read it.
   */
  record(buffer: number, kind: string, client: Actor, fields: Fields, also?: number): void {
    this.generic(this.open(buffer, GENERIC, client, false, also), kind, fields);
  }

  private generic(e: number, kind: string, fields: Fields): void {
    if (e === NIL) return;
    this.slots.v[0]![e] = kind;
    this.slots.v[1]![e] = fields;
    this.slots.v[2]![e] = undefined;
  }

  /**
   * An event with `codec` on the buffer (`begin`: a new buffer's first);
   * the slot whose values the codec then puts, or NIL when it is not kept
   * (history off, or over the bounds).
   */
  open(buffer: number, codec: number, client: Actor, begin: boolean, also?: number): number {
    if (!this.enabled) return NIL;
    let j: number;
    if (begin) {
      // a new buffer with the id of a freed one (ids are not reused by the daemon, but a journal must not mix two lives)
      this.forget(buffer);
      j = this.liveJournal(buffer, false);
    } else {
      j = this.slotOf(buffer);
      if (j === NIL) j = this.liveJournal(buffer, true);
      if (also !== undefined) this.js.involve(j, also);
    }
    return client === null ? this.push(j, codec, NIL, null) : this.push(j, codec, client.id, client.name);
  }

  private push(j: number, codec: number, client: number, name: string | null): number {
    const lim = this.limits();
    const J = this.js;
    const E = this.slots;
    if (client !== NIL) J.involve(j, client);
    const seq = ++this.seq;
    const time = Math.round(this.now() * 1000) / 1000;
    if (J.count[j]! >= lim.perBuffer && J.count[j]! > 0) {
      // keep the first event (the allocation): drop the oldest after it
      const first = J.head[j]!;
      const gone = J.count[j] === 1 ? first : E.next[first]!;
      if (gone === first) J.head[j] = J.tail[j] = NIL;
      else {
        E.next[first] = E.next[gone]!;
        if (J.tail[j] === gone) J.tail[j] = first;
      }
      E.give(gone);
      J.count[j]--;
      J.dropped[j]++;
      this.dropped++;
      this.total--;
    }
    while (this.total >= lim.maxEvents) {
      if (this.oldest === NIL || this.oldest === j) {
        // nothing freed left to give up: this event is not kept
        J.dropped[j]++;
        this.dropped++;
        return NIL;
      }
      this.forget(J.buffer[this.oldest]!);
    }
    const e = E.take(lim.maxEvents);
    E.seq[e] = seq;
    E.time[e] = time;
    E.client[e] = client;
    E.name[e] = name;
    E.codec[e] = codec;
    if (J.tail[j] === NIL) J.head[j] = e;
    else E.next[J.tail[j]!] = e;
    J.tail[j] = e;
    J.count[j]++;
    this.total++;
    return e;
  }

  /** A retired journal goes, and its events' slots with it. */
  private forget(buffer: number): void {
    const j = this.slotOf(buffer);
    const J = this.js;
    if (j === NIL || (J.flags[j]! & LIVE) !== 0) return;
    this.ids.delete(buffer);
    this.retireds--;
    const o = J.older[j]!;
    const n = J.newer[j]!;
    if (o === NIL) this.oldest = n;
    else J.newer[o] = n;
    if (n === NIL) this.newest = o;
    else J.older[n] = o;
    this.drop(j);
  }

  private drop(j: number): void {
    const E = this.slots;
    for (let e = this.js.head[j]!; e !== NIL; ) {
      const n = E.next[e]!;
      E.give(e);
      e = n;
    }
    this.total -= this.js.count[j]!;
    this.js.give(j);
  }

  /** The buffer's journal if it is live, else NIL. */
  private liveSlot(buffer: number): number {
    const j = this.slotOf(buffer);
    return j !== NIL && (this.js.flags[j]! & LIVE) !== 0 ? j : NIL;
  }

  /** Is `j` (a slot `hold` gave) still the buffer's live journal? (A reload that turned history off in between empties the columns.) */
  private stillLive(j: number, buffer: number): boolean {
    return j !== NIL && this.js.buffer[j] === buffer && (this.js.flags[j]! & LIVE) !== 0;
  }

  /**
   * An op on the buffer begins: a free during it waits for the op's own
   * event. Returns the journal's slot (NIL: none live) for `openHeld` and
   * `releaseAt`, so the op's event and its end look the buffer up no more.
   */
  hold(buffer: number): number {
    const j = this.liveSlot(buffer);
    if (j !== NIL) this.js.holds[j]++;
    return j;
  }

  /** The op ended; a free it caused is recorded now, as done by `actor` after `op`. */
  release(buffer: number, actor: Actor = null, op?: string): void {
    this.releaseAt(this.liveSlot(buffer), buffer, actor, op);
  }

  /** `release` by the slot `hold` gave. */
  releaseAt(j: number, buffer: number, actor: Actor = null, op?: string): void {
    const J = this.js;
    if (!this.stillLive(j, buffer) || J.holds[j] === 0) return;
    if (--J.holds[j]! === 0 && (J.flags[j]! & PENDING_FREE) !== 0) {
      J.flags[j]! &= ~PENDING_FREE;
      const by = J.pendClient[j]!;
      const id = by !== NIL ? by : (actor?.id ?? NIL);
      const name = by !== NIL ? J.pendName[j]! : (actor?.name ?? null);
      if (!this.enabled) return;
      this.retire(j, buffer, id, name, J.pendPool[j], J.pendSize[j], J.pendFields[j]!, op);
    }
  }

  /**
   * `open` for the event of an op that held the buffer (`j` from `hold`,
   * history known to be on): no lookup, no second check. NIL, or a slot no
   * longer the buffer's: as `open`.
   */
  openHeld(j: number, buffer: number, codec: number, client: Actor, also?: number): number {
    if (!this.stillLive(j, buffer)) return this.open(buffer, codec, client, false, also);
    if (also !== undefined) this.js.involve(j, also);
    return client === null ? this.push(j, codec, NIL, null) : this.push(j, codec, client.id, client.name);
  }

  /** The buffer was freed: its last event; the journal moves to the freed ring. */
  freed(buffer: number, client: Actor, fields: Fields): void {
    this.free(buffer, client, null, null, fields);
  }

  /** The buffer was freed, as the bus tells it (pool and size): `freed` without a fields object. */
  freedFrom(buffer: number, pool: string, size: number): void {
    this.free(buffer, null, pool, size, null);
  }

  private free(buffer: number, client: Actor, pool: unknown, size: unknown, fields: Fields | null): void {
    if (!this.enabled) return;
    const j = this.liveSlot(buffer);
    if (j === NIL) return; // history was off when it was made and nothing happened since
    const J = this.js;
    if (J.holds[j]! > 0) {
      J.flags[j]! |= PENDING_FREE;
      J.pendClient[j] = client === null ? NIL : client.id;
      J.pendName[j] = client === null ? null : client.name;
      J.pendPool[j] = pool;
      J.pendSize[j] = size;
      J.pendFields[j] = fields;
      return;
    }
    this.retire(j, buffer, client === null ? NIL : client.id, client === null ? null : client.name, pool, size, fields, undefined);
  }

  /** The free event (after `after`, if an op caused it), then the journal is retired. */
  private retire(j: number, buffer: number, client: number, name: string | null, pool: unknown, size: unknown, fields: Fields | null, after: string | undefined): void {
    const e = this.push(j, fields !== null ? GENERIC : FREE, client, name);
    if (e !== NIL) {
      const v = this.slots.v;
      if (fields !== null) {
        v[0]![e] = 'free';
        v[1]![e] = fields;
      } else {
        v[0]![e] = pool;
        v[1]![e] = size;
      }
      v[2]![e] = after;
    }
    this.js.flags[j]! &= ~LIVE;
    this.lives--;
    const keep = this.limits().keepFreed;
    if (keep === 0) {
      this.ids.delete(buffer);
      this.drop(j);
      return;
    }
    this.retireds++;
    const J = this.js;
    J.older[j] = this.newest;
    J.newer[j] = NIL;
    if (this.newest === NIL) this.oldest = j;
    else J.newer[this.newest] = j;
    this.newest = j;
    while (this.retireds > keep) this.forget(J.buffer[this.oldest]!);
  }

  /** The name a client had when it last acted on the buffer (for one that is gone). */
  nameOf(buffer: number, client: number): string | null {
    const j = this.slotOf(buffer);
    if (j === NIL) return null;
    const E = this.slots;
    let name: string | null = null;
    for (let e = this.js.head[j]!; e !== NIL; e = E.next[e]!) if (E.client[e] === client && E.name[e] !== null) name = E.name[e]!;
    return name;
  }

  /** May this client read the buffer's history (it acted on it or was given it)? */
  involved(buffer: number, client: number): boolean {
    const j = this.slotOf(buffer);
    return j !== NIL && this.js.involved(j, client);
  }
}
