/**
 * The journal (`bufferd --record FILE`, `bufctl record start FILE`): every
 * request, response and event of every client, with client identities,
 * timing and the configuration, appended to a file of MessagePack frames
 * that `bufferd replay` re-runs (server/replay.ts). PROTOCOL.md "Journal
 * file format" documents the entries; journal-entries.ts builds them.
 *
 * Writing never blocks the event loop and never grows without bound:
 * - entries are packed into 256 KiB chunks, written by one asynchronous
 *   writev at a time: a full chunk at once, the one being filled at most
 *   25 ms after its first entry (a few system calls a second, whatever the
 *   rate: each costs the event loop tens of µs);
 * - the queue holds at most `maxQueueBytes`: past that, entries are dropped
 *   and counted, and a `gap` entry saying how many takes their place once
 *   the disk catches up (a replay stops comparing at a gap);
 * - a file holds about `maxFileBytes`: then it is renamed FILE.1 (FILE.1 to
 *   FILE.2, ...) and a new FILE begins with a continuation header; at most
 *   `maxFiles` files are kept, the oldest removed (logrotate's scheme).
 * The file is created mode 0600: it holds export tokens and, with
 * `recordData`, the bytes clients wrote.
 */
import { openSync, closeSync, fchmodSync, writev, open as openCb, close as closeCb } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { encodeFrame } from '../../protocol/frame.js';
import type { RecordInfo } from '../../protocol/ops/record.js';
import type { Session } from './clients.js';
import { JournalEntries, type JournalMeta } from './journal-entries.js';
import { CpuTracker, type CpuView } from './journal-cpu.js';

/** Frames are packed into chunks of this size (a larger frame gets one of its own). */
const CHUNK = 256 * 1024;
/** A chunk being filled is written at the latest this long after its first entry. */
const FLUSH_MS = 25;

/** Write all of `bufs` (the callback API: less per call than FileHandle's). */
function writevAll(fd: number, bufs: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    writev(fd, bufs, (err, n) => {
      if (err !== null) return reject(err);
      let total = 0;
      for (const b of bufs) total += b.length;
      if (n === total) return resolve();
      // a short write (a full disk, a signal): the rest, from where it stopped
      let skip = n;
      const rest: Buffer[] = [];
      for (const b of bufs) {
        if (skip >= b.length) skip -= b.length;
        else {
          rest.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
      }
      writevAll(fd, rest).then(resolve, reject);
    });
  });
}

const openFd = (path: string, flags: string, mode: number): Promise<number> =>
  new Promise((resolve, reject) => openCb(path, flags, mode, (err, fd) => (err !== null ? reject(err) : resolve(fd))));
const closeFd = (fd: number): Promise<void> => new Promise((resolve, reject) => closeCb(fd, (err) => (err !== null ? reject(err) : resolve())));

export interface JournalOptions {
  file: string;
  /** Bytes after which a file is rotated. */
  maxFileBytes: number;
  /** Files kept, the current one included. */
  maxFiles: number;
  /** Entries waiting for the disk, in bytes, after which new ones are dropped (and counted). */
  maxQueueBytes: number;
  /** Keep the bytes clients write (each value up to maxDataBytes), not just their digests. */
  recordData: boolean;
  maxDataBytes: number;
  /** With recordData: mapped buffers up to this many bytes have their CPU writes journaled. */
  maxTrackedBytes: number;
  /** The mapped buffers' CPU views (for CPU writes through mappings; journal-cpu.ts). */
  cpuViews?: () => CpuView[];
}

export const JOURNAL_DEFAULTS = {
  maxFileBytes: 256 * 1024 * 1024,
  maxFiles: 4,
  maxQueueBytes: 16 * 1024 * 1024,
  recordData: false,
  maxDataBytes: 1024 * 1024,
  maxTrackedBytes: 8 * 1024 * 1024,
} as const;

/** A journal's figures: the `record` result's, for a journal that is open (protocol/ops/record.ts). */
export type JournalStats = Omit<RecordInfo, 'recording' | 'file' | 'error'> & { file: string };

export class Journal {
  /** The current file's descriptor (-1 once closed). */
  private fd: number;
  /** Sealed chunks of whole frames, waiting for the disk. */
  private queue: Buffer[] = [];
  /** The chunk being filled, and how much of it is. */
  private chunk = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  private timer: NodeJS.Timeout | null = null;
  /** A flush is due in a microtask. */
  private kicked = false;
  /** Bytes queued or being written. */
  private queued = 0;
  private writing = false;
  private fileBytes = 0;
  /** Bytes of the current file's header (a file is never rotated before it holds an entry). */
  private headerBytes = 0;
  private part = 0;
  private pendingDrops = 0;
  private pendingDropBytes = 0;
  private closed = false;
  private waiters: (() => void)[] = [];
  private error: Error | null = null;
  readonly entries: JournalEntries;
  private readonly stat: JournalStats;

  /**
   * Create (truncate) the file at once, so a bad path is refused where it
   * was given; the header is the first entry.
   */
  constructor(
    readonly opts: JournalOptions,
    private readonly meta: JournalMeta,
    now: () => number,
  ) {
    // synchronous on purpose, once: a path that cannot be written is an error for whoever asked
    this.fd = openSync(opts.file, 'w', 0o600);
    try {
      fchmodSync(this.fd, 0o600); // a file that was there keeps its mode otherwise
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
    this.stat = { file: opts.file, entries: 0, bytes: 0, dropped: 0, gaps: 0, files: 1, recordData: opts.recordData };
    const cpu = opts.recordData && opts.cpuViews !== undefined ? new CpuTracker(opts.cpuViews, opts.maxTrackedBytes) : null;
    this.entries = new JournalEntries(opts, now, (f) => this.append(f), (k, t, c, b, from) => this.raw(k, t, c, b, from), cpu);
    const h = encodeFrame(this.entries.header(meta, 0));
    this.headerBytes = h.length;
    this.append(h);
  }

  get stats(): JournalStats {
    return { ...this.stat };
  }

  /** Hooks for the connection (server/connection.ts). */
  request(s: Session, body: Buffer): void {
    this.entries.request(s, body);
  }
  response(s: Session, frame: Buffer): void {
    this.entries.response(s, frame);
  }
  event(s: Session, frame: Buffer, stream: boolean): void {
    this.entries.event(s, frame, stream);
  }
  gone(s: Session): void {
    this.entries.gone(s);
  }

  /** Queue one encoded frame (dropped and counted when the queue is full). */
  append(frame: Buffer): void {
    const r = this.room(frame.length);
    if (r !== null) frame.copy(r[0], r[1]);
  }

  /**
   * Queue a request, response or event entry, encoded by hand straight into
   * the queue (the hot path: no intermediate object, no second copy):
   * {"k": kind, "t": float64, "c": uint32, "b": bin32} in a frame.
   */
  raw(kind: string, t: number, c: number, src: Uint8Array, from = 0): void {
    const len = src.length - from;
    const n = 4 + 1 + 2 + 1 + kind.length + 2 + 9 + 2 + 5 + 2 + 5 + len;
    const r = this.room(n);
    if (r === null) return;
    const [b, o] = r;
    let at = o;
    b.writeUInt32BE(n - 4, at);
    b[at + 4] = 0x84; // map of 4
    at += 5;
    b[at++] = 0xa1;
    b[at++] = 0x6b; // "k"
    b[at++] = 0xa0 | kind.length;
    for (let i = 0; i < kind.length; i++) b[at++] = kind.charCodeAt(i);
    b[at++] = 0xa1;
    b[at++] = 0x74; // "t": float 64
    b[at++] = 0xcb;
    b.writeDoubleBE(t, at);
    at += 8;
    b[at++] = 0xa1;
    b[at++] = 0x63; // "c": uint 32
    b[at++] = 0xce;
    b.writeUInt32BE(c, at);
    at += 4;
    b[at++] = 0xa1;
    b[at++] = 0x62; // "b": bin 32
    b[at++] = 0xc6;
    b.writeUInt32BE(len, at);
    at += 4;
    // most bodies are a few dozen bytes: a loop beats a call into C++
    if (len <= 64) for (let i = from; i < src.length; i++) b[at++] = src[i]!;
    else b.set(from === 0 ? src : src.subarray(from), at);
  }

  /**
   * Room for an n-byte frame in the queue, or null when the queue is full
   * (the entry is dropped and counted; a gap entry goes first once there
   * is room again). Frames are packed whole into chunks, so the writer
   * makes few large writes.
   */
  private room(n: number): [Buffer, number] | null {
    if (this.closed) return null;
    if (this.pendingDrops > 0 && this.queued + 64 <= this.opts.maxQueueBytes) {
      const gap = encodeFrame(this.entries.gap(this.pendingDrops, this.pendingDropBytes));
      this.pendingDrops = 0;
      this.pendingDropBytes = 0;
      this.stat.gaps++;
      const [b, at] = this.take(gap.length);
      gap.copy(b, at);
    }
    if (this.queued + n > this.opts.maxQueueBytes) {
      this.pendingDrops++;
      this.pendingDropBytes += n;
      this.stat.dropped++;
      return null;
    }
    this.stat.entries++;
    return this.take(n);
  }

  private take(n: number): [Buffer, number] {
    this.queued += n;
    // a chunk never holds more than a file may: rotation cuts between chunks
    const chunk = Math.min(CHUNK, this.opts.maxFileBytes);
    let out: [Buffer, number];
    if (n > chunk) {
      this.seal();
      const big = Buffer.allocUnsafe(n);
      this.queue.push(big);
      out = [big, 0];
    } else {
      if (this.used + n > chunk) this.seal();
      out = [this.chunk, this.used];
      this.used += n;
    }
    // full chunks are written at once (after the caller has filled its room: a microtask), the
    // one being filled within FLUSH_MS
    if (this.queue.length > 0 && !this.writing && !this.kicked) {
      this.kicked = true;
      queueMicrotask(() => {
        this.kicked = false;
        if (!this.writing) void this.flush();
      });
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.seal();
        if (!this.writing) void this.flush();
      }, FLUSH_MS);
      this.timer.unref();
    }
    return out;
  }

  /** The chunk being filled joins the queue; a new one begins. */
  private seal(): void {
    if (this.used === 0) return;
    this.queue.push(this.chunk.subarray(0, this.used));
    this.chunk = Buffer.allocUnsafe(CHUNK);
    this.used = 0;
  }

  private async flush(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0 && this.error === null) {
        const batch = this.queue;
        this.queue = [];
        // in pieces that fit the current file; a file holds at least one entry after its header
        let from = 0;
        while (from < batch.length) {
          let to = from;
          let n = 0;
          while (to < batch.length && (to === from || this.fileBytes + n + batch[to]!.length <= this.opts.maxFileBytes)) n += batch[to++]!.length;
          if (this.fileBytes > this.headerBytes && this.fileBytes + n > this.opts.maxFileBytes) {
            await this.rotate();
            continue;
          }
          await writevAll(this.fd, from === 0 && to === batch.length ? batch : batch.slice(from, to));
          this.fileBytes += n;
          this.stat.bytes += n;
          this.queued -= n;
          from = to;
        }
      }
    } catch (e) {
      // a full disk or a vanished directory: stop recording, keep serving
      this.error = e as Error;
      this.closed = true;
      this.queue = [];
      this.used = 0;
      this.queued = 0;
    } finally {
      this.writing = false;
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  /** FILE → FILE.1 → FILE.2 …, the oldest beyond maxFiles removed; a new FILE with a continuation header. */
  private async rotate(): Promise<void> {
    await closeFd(this.fd);
    this.fd = -1;
    const f = this.opts.file;
    const keep = this.opts.maxFiles;
    await rm(`${f}.${keep - 1}`, { force: true });
    for (let i = keep - 2; i >= 1; i--) await rename(`${f}.${i}`, `${f}.${i + 1}`).catch(() => {});
    if (keep > 1) await rename(f, `${f}.1`);
    this.fd = await openFd(f, 'w', 0o600);
    this.part++;
    this.stat.files = Math.min(keep, this.stat.files + 1);
    const h = encodeFrame(this.entries.header(this.meta, this.part));
    await writevAll(this.fd, [h]);
    this.fileBytes = this.headerBytes = h.length;
    this.stat.bytes += h.length;
  }

  /** The write error that stopped recording, if any. */
  get failed(): Error | null {
    return this.error;
  }

  /** Resolves once everything queued so far is written (or the journal failed). */
  async drained(): Promise<void> {
    while (this.error === null && (this.writing || this.queue.length > 0 || this.used > 0)) {
      this.seal();
      if (!this.writing) void this.flush();
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Write what is queued, then an end entry (after a gap entry if entries were dropped), and close the file. */
  async close(): Promise<JournalStats> {
    if (!this.closed) {
      await this.drained();
      this.append(encodeFrame(this.entries.end(this.stat)));
      this.closed = true;
    }
    await this.drained();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.fd >= 0) await closeFd(this.fd).catch(() => {});
    this.fd = -1;
    return this.stats;
  }
}
