/**
 * The journal (`bufferd --record FILE`, `bufctl record start FILE`): every
 * request, response and event of every client, with client identities,
 * timing and the configuration, appended to a file of MessagePack frames
 * that `bufferd replay` re-runs (server/replay.ts). PROTOCOL.md "Journal
 * file format" documents the entries; journal-entries.ts builds them.
 *
 * Writing never blocks the event loop and never grows without bound:
 * - entries are queued and written by one asynchronous writev at a time
 *   (what arrives meanwhile goes in the next batch);
 * - the queue holds at most `maxQueueBytes`: past that, entries are dropped
 *   and counted, and a `gap` entry saying how many takes their place once
 *   the disk catches up (a replay stops comparing at a gap);
 * - a file holds about `maxFileBytes`: then it is renamed FILE.1 (FILE.1 to
 *   FILE.2, ...) and a new FILE begins with a continuation header; at most
 *   `maxFiles` files are kept, the oldest removed (logrotate's scheme).
 * The file is created mode 0600: it holds export tokens and, with
 * `recordData`, the bytes clients wrote.
 */
import { openSync, closeSync, fchmodSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { encodeFrame } from '../../protocol/frame.js';
import type { Session } from './clients.js';
import { JournalEntries, type JournalMeta } from './journal-entries.js';
import { CpuTracker, type CpuView } from './journal-cpu.js';

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

export interface JournalStats {
  file: string;
  entries: number;
  bytes: number;
  dropped: number;
  gaps: number;
  files: number;
  recordData: boolean;
}

export class Journal {
  private fh: FileHandle | null = null;
  private readonly opening: Promise<void>;
  private queue: Buffer[] = [];
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
    const fd = openSync(opts.file, 'w', 0o600);
    try {
      fchmodSync(fd, 0o600); // a file that was there keeps its mode otherwise
    } finally {
      closeSync(fd);
    }
    this.opening = open(opts.file, 'a', 0o600).then((fh) => {
      this.fh = fh;
    });
    this.stat = { file: opts.file, entries: 0, bytes: 0, dropped: 0, gaps: 0, files: 1, recordData: opts.recordData };
    const cpu = opts.recordData && opts.cpuViews !== undefined ? new CpuTracker(opts.cpuViews, opts.maxTrackedBytes) : null;
    this.entries = new JournalEntries(opts, now, (f) => this.append(f), cpu);
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
    if (this.closed) return;
    if (this.pendingDrops > 0 && this.queued + 64 <= this.opts.maxQueueBytes) {
      const gap = encodeFrame(this.entries.gap(this.pendingDrops, this.pendingDropBytes));
      this.pendingDrops = 0;
      this.pendingDropBytes = 0;
      this.stat.gaps++;
      this.push(gap);
    }
    if (this.queued + frame.length > this.opts.maxQueueBytes) {
      this.pendingDrops++;
      this.pendingDropBytes += frame.length;
      this.stat.dropped++;
      return;
    }
    this.stat.entries++;
    this.push(frame);
  }

  private push(frame: Buffer): void {
    this.queue.push(frame);
    this.queued += frame.length;
    if (!this.writing) void this.flush();
  }

  private async flush(): Promise<void> {
    this.writing = true;
    try {
      await this.opening;
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
          await this.fh!.writev(batch.slice(from, to));
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
    await this.fh!.close();
    const f = this.opts.file;
    const keep = this.opts.maxFiles;
    await rm(`${f}.${keep - 1}`, { force: true });
    for (let i = keep - 2; i >= 1; i--) await rename(`${f}.${i}`, `${f}.${i + 1}`).catch(() => {});
    if (keep > 1) await rename(f, `${f}.1`);
    this.fh = await open(f, 'w', 0o600);
    this.part++;
    this.stat.files = Math.min(keep, this.stat.files + 1);
    const h = encodeFrame(this.entries.header(this.meta, this.part));
    await this.fh.writev([h]);
    this.fileBytes = this.headerBytes = h.length;
    this.stat.bytes += h.length;
  }

  /** The write error that stopped recording, if any. */
  get failed(): Error | null {
    return this.error;
  }

  /** Write what is queued, an end entry, and close the file. */
  async close(): Promise<JournalStats> {
    if (!this.closed) {
      this.append(encodeFrame(this.entries.end(this.stat)));
      this.closed = true;
    }
    while (this.writing || this.queue.length > 0) {
      if (!this.writing) void this.flush();
      await new Promise<void>((r) => this.waiters.push(r));
    }
    await this.opening.catch(() => {});
    await this.fh?.close().catch(() => {});
    this.fh = null;
    return this.stats;
  }
}
