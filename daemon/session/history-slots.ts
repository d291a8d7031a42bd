/**
 * Where the history journal keeps its events: columns, one slot per event
 * (struct of arrays), numbers in typed arrays and references (client names,
 * pool and driver names, a refusal's fields) in plain arrays that hold what
 * the daemon already has — so recording an event allocates nothing on the
 * heap, and a kept event is no object the garbage collector has to copy or
 * promote. Slots are reused through a free list threaded on `next` (each
 * buffer's events are a list on `next` too: a slot is on one list or the
 * other). The readable event (names, rights lists, details) is built only
 * when someone reads (history-codecs.ts).
 *
 * Like the kernel's page_owner (mm/page_owner.c: __set_page_owner saves a
 * handle and a few numbers per page, print_page_owner builds the text only
 * when /sys/kernel/debug/page_owner is read) — records are numbers, text
 * is made at read time.
 */

/** No slot / no client / end of a list. */
export const NIL = -1;

/** Values a codec may keep per event, besides the spare number `x`. */
export const VALUES = 6;

export class EventSlots {
  capacity = 0;
  /** Event sequence number and time (ms, 3 decimals). */
  seq = new Float64Array(0);
  time = new Float64Array(0);
  /** A number that is not a small integer (an address). */
  x = new Float64Array(0);
  /** Acting client's id, NIL for the daemon. */
  client = new Int32Array(0);
  /** Next slot on the buffer's list (or the free list). */
  next = new Int32Array(0);
  /** How the values read back (history-codecs.ts). */
  codec = new Uint8Array(0);
  /** The client's name at the time of the event. */
  name: (string | null)[] = [];
  /** The codec's values: small integers, strings the daemon holds anyway, an object for a rare event's fields. */
  v: unknown[][] = Array.from({ length: VALUES }, () => []);
  private free = NIL;
  /** Slots in use. */
  used = 0;

  /** A free slot (its values are the codec's to set), growing up to `limit` slots. */
  take(limit: number): number {
    if (this.free === NIL) this.grow(Math.max(this.capacity + 1, Math.min(Math.max(this.capacity * 2, 64), limit)));
    const s = this.free;
    this.free = this.next[s]!;
    this.next[s] = NIL;
    this.used++;
    return s;
  }

  /**
   * Give a slot back. The values that may be objects go (a generic event's
   * fields in v1, an allocation's placement in v5), so nothing big is kept
   * alive by a free slot; the rest are small integers and strings the next
   * event's codec overwrites (a codec sets every value it reads).
   */
  give(s: number): void {
    this.name[s] = null;
    this.v[1]![s] = undefined;
    this.v[5]![s] = undefined;
    this.next[s] = this.free;
    this.free = s;
    this.used--;
  }

  /** Drop everything (history turned off): the columns go too. */
  reset(): void {
    Object.assign(this, new EventSlots());
  }

  private grow(to: number): void {
    const from = this.capacity;
    this.seq = grown(this.seq, to);
    this.time = grown(this.time, to);
    this.x = grown(this.x, to);
    this.client = grown(this.client, to);
    this.next = grown(this.next, to);
    this.codec = grown(this.codec, to);
    this.name = exactly(this.name, to, null);
    for (let k = 0; k < VALUES; k++) this.v[k] = exactly(this.v[k]!, to, undefined);
    this.free = threadFree(this.next, from, to, this.free);
    this.capacity = to;
  }
}

/** A typed array's copy with room for `to` entries. */
function grown<A extends Float64Array | Int32Array | Uint8Array>(a: A, to: number): A {
  const b = new (a.constructor as new (n: number) => A)(to);
  b.set(a);
  return b;
}

/** A plain array's copy of length `to` (no growth slack: a column's size is its slots'), the new entries `fill`. */
function exactly<T>(a: T[], to: number, fill: T): T[] {
  const b = new Array<T>(to);
  for (let i = 0; i < a.length; i++) b[i] = a[i]!;
  for (let i = a.length; i < to; i++) b[i] = fill;
  return b;
}

/** Put slots from..to-1 on a free list threaded on `next`, lowest first; returns the list's head. */
function threadFree(next: Int32Array, from: number, to: number, head: number): number {
  for (let s = to - 1; s >= from; s--) {
    next[s] = head;
    head = s;
  }
  return head;
}

export const PARTIAL = 1;
export const LIVE = 2;
/** A free came while an op held the buffer: it is recorded when the op ends. */
export const PENDING_FREE = 4;

/**
 * The journals' own records, one slot per buffer, columns as above: its
 * list of events, counts, flags, the clients who may read it (two inline,
 * more in an array made only for a third), and a free waiting on an op.
 */
export class JournalSlots {
  capacity = 0;
  buffer = new Float64Array(0);
  head = new Int32Array(0);
  tail = new Int32Array(0);
  count = new Int32Array(0);
  dropped = new Float64Array(0);
  holds = new Int32Array(0);
  flags = new Uint8Array(0);
  c0 = new Int32Array(0);
  c1 = new Int32Array(0);
  more: (number[] | null)[] = [];
  /** The pending free: its actor (NIL: the daemon), and what it says (pool and size, or a fields object). */
  pendClient = new Int32Array(0);
  pendName: (string | null)[] = [];
  pendPool: unknown[] = [];
  pendSize: unknown[] = [];
  pendFields: (Record<string, unknown> | null)[] = [];
  /** The freed ring, oldest first: a list on these two columns (a Map's oldest key is a scan past its deleted entries). */
  older = new Int32Array(0);
  newer = new Int32Array(0);
  private free = NIL;
  used = 0;

  /** A journal for the buffer: no events, no clients, `flags`. */
  take(buffer: number, flags: number): number {
    if (this.free === NIL) this.grow(Math.max(16, this.capacity * 2));
    const j = this.free;
    this.free = this.next[j]!;
    this.used++;
    this.buffer[j] = buffer;
    this.head[j] = this.tail[j] = NIL;
    this.count[j] = this.dropped[j] = this.holds[j] = 0;
    this.flags[j] = flags;
    this.c0[j] = this.c1[j] = NIL;
    return j;
  }

  /** Drop every journal (history turned off): the columns go too. */
  reset(): void {
    Object.assign(this, new JournalSlots());
  }

  give(j: number): void {
    this.more[j] = null;
    this.pendName[j] = null;
    this.pendPool[j] = this.pendSize[j] = this.pendFields[j] = null;
    this.next[j] = this.free;
    this.free = j;
    this.used--;
  }

  /** The client may read the journal from now on. */
  involve(j: number, client: number): void {
    if (this.c0[j] === client || this.c1[j] === client) return;
    if (this.c0[j] === NIL) this.c0[j] = client;
    else if (this.c1[j] === NIL) this.c1[j] = client;
    else {
      const m = this.more[j];
      if (m === null || m === undefined) this.more[j] = [client];
      else if (!m.includes(client)) m.push(client);
    }
  }

  involved(j: number, client: number): boolean {
    return this.c0[j] === client || this.c1[j] === client || this.more[j]?.includes(client) === true;
  }

  /** The free list, on its own column (a journal's `head` is its events'). */
  private next = new Int32Array(0);

  private grow(to: number): void {
    const from = this.capacity;
    for (const k of ['buffer', 'head', 'tail', 'count', 'dropped', 'holds', 'flags', 'c0', 'c1', 'pendClient', 'older', 'newer', 'next'] as const) {
      (this as unknown as Record<typeof k, Float64Array | Int32Array | Uint8Array>)[k] = grown(this[k], to);
    }
    this.more = exactly(this.more, to, null);
    this.pendName = exactly(this.pendName, to, null);
    this.pendPool = exactly(this.pendPool, to, null);
    this.pendSize = exactly(this.pendSize, to, null);
    this.pendFields = exactly(this.pendFields, to, null);
    this.free = threadFree(this.next, from, to, this.free);
    this.capacity = to;
  }
}
