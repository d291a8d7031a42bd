/**
 * Reading a journal (session/journal.ts writes it): FILE and its rotated
 * parts, oldest first (FILE.n … FILE.1, FILE), each a sequence of frames
 * beginning with a header. What cannot be read is said, never guessed:
 * a torn last frame (the daemon was killed mid-write) ends the journal with
 * a warning; a part that is missing (rotated away) makes the replay begin
 * mid-run, which the header's `part` tells.
 */
import { existsSync, readFileSync } from 'node:fs';
import { FRAME_HEADER_BYTES } from '../../protocol/frame.js';
import { decodeValue, isPlainMap } from '../../protocol/codec.js';
import { JOURNAL_MAGIC, JOURNAL_VERSION } from './journal-entries.js';

export interface JournalHeader {
  k: typeof JOURNAL_MAGIC;
  v: number;
  part: number;
  t: number;
  wallTime: string;
  version: string;
  config: Record<string, unknown>;
  socket: string;
  pid: number;
  recordData: boolean;
  maxDataBytes: number;
}

export interface Entry {
  k: 'conn' | 'req' | 'res' | 'ev' | 'sub' | 'cpu' | 'close' | 'gap' | 'end';
  t: number;
  c?: number;
  b?: Uint8Array;
  [field: string]: unknown;
}

export interface ReadJournal {
  header: JournalHeader;
  entries: Entry[];
  /** Files read, oldest first. */
  files: string[];
  warnings: string[];
}

export class JournalReadError extends Error {}

/** The frames of one file; a torn tail is reported, not thrown. */
function framesOf(file: string, warnings: string[]): unknown[] {
  const buf = readFileSync(file);
  const out: unknown[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + FRAME_HEADER_BYTES > buf.length) {
      warnings.push(`${file}: ${buf.length - at} bytes after the last whole frame (a torn write): ignored`);
      break;
    }
    const n = buf.readUInt32BE(at);
    if (at + FRAME_HEADER_BYTES + n > buf.length) {
      warnings.push(`${file}: the last frame (${n} bytes at offset ${at}) is cut short: ignored`);
      break;
    }
    try {
      out.push(decodeValue(buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + n)));
    } catch (e) {
      throw new JournalReadError(`${file}: the frame at offset ${at} is not MessagePack: ${(e as Error).message}`);
    }
    at += FRAME_HEADER_BYTES + n;
  }
  return out;
}

/** The journal's files, oldest first: FILE.n … FILE.1, FILE. */
export function journalFiles(file: string): string[] {
  const older: string[] = [];
  for (let i = 1; i <= 100 && existsSync(`${file}.${i}`); i++) older.unshift(`${file}.${i}`);
  return [...older, file];
}

export function readJournal(file: string): ReadJournal {
  if (!existsSync(file)) throw new JournalReadError(`no journal at ${file}`);
  const warnings: string[] = [];
  const files = journalFiles(file);
  let header: JournalHeader | null = null;
  const entries: Entry[] = [];
  for (const f of files) {
    const frames = framesOf(f, warnings);
    const h = frames[0];
    if (!isPlainMap(h) || h['k'] !== JOURNAL_MAGIC) throw new JournalReadError(`${f} is not a bufferd journal (its first frame is not a '${JOURNAL_MAGIC}' header)`);
    if (h['v'] !== JOURNAL_VERSION) throw new JournalReadError(`${f} is journal format version ${String(h['v'])}; this bufferd reads version ${JOURNAL_VERSION}`);
    if (header === null) {
      header = h as unknown as JournalHeader;
      if (header.part > 0) warnings.push(`the journal begins at part ${header.part}: older parts were rotated away, so the replay starts mid-run`);
    }
    for (const e of frames.slice(1)) {
      if (!isPlainMap(e) || typeof e['k'] !== 'string' || typeof e['t'] !== 'number') throw new JournalReadError(`${f}: an entry without a kind 'k' and a time 't'`);
      entries.push(e as Entry);
    }
  }
  return { header: header!, entries, files, warnings };
}
