/**
 * The journal's entries (PROTOCOL.md "Journal file format"): each one a
 * MessagePack map in a frame, `k` its kind, `t` the daemon's monotonic
 * clock in ms, `c` the client id. Requests, responses and events keep their
 * wire body (`b`, a bin) so nothing is encoded twice; only bodies that
 * carry binary values are decoded, to put digests in place of the bytes:
 *   {"$bin": "sha256:<base64>", "len": n}
 * Requests keep their bytes with recordData (up to maxDataBytes each);
 * responses and events are always digested (a replay compares digests).
 * A hello's token is never journaled: {"$token": "sha256:<base64>"} stands
 * in for it (the digest the daemon keeps, see lib/digest.ts).
 */
import { createHash } from 'node:crypto';
import { encodeFrame, FRAME_HEADER_BYTES } from '../../protocol/frame.js';
import { decodeValue, encodeValue, isPlainMap } from '../../protocol/codec.js';
import { digest } from '../lib/digest.js';
import type { Session } from './clients.js';
import type { CpuTracker } from './journal-cpu.js';

export const JOURNAL_MAGIC = 'bufferd-journal';
export const JOURNAL_VERSION = 1;

/** What the header says about the recording daemon. */
export interface JournalMeta {
  version: string;
  /** The configuration in force (daemon/config/config.ts Config), replayed with the same machine. */
  config: unknown;
  socket: string;
  pid: number;
}

export interface DataPolicy {
  recordData: boolean;
  maxDataBytes: number;
}

/** The digest a journal keeps for bytes. */
export const binDigest = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('base64')}`;

/**
 * Does a MessagePack body hold a bin value? A linear walk of the encoding:
 * containers need no counting (their items simply follow), strings and
 * exts are skipped by their length. Anything it cannot walk answers yes
 * (the decode that follows says what is wrong).
 */
export function mayHoldBin(b: Uint8Array, from = 0): boolean {
  let i = from;
  const n = b.length;
  while (i < n) {
    const x = b[i]!;
    if (x <= 0x9f || x >= 0xe0) {
      i += 1; // fixint, fixmap, fixarray, negative fixint
      continue;
    }
    if (x <= 0xbf) {
      i += 1 + (x & 0x1f); // fixstr
      continue;
    }
    switch (x) {
      case 0xc0: case 0xc2: case 0xc3: i += 1; break;
      case 0xc4: case 0xc5: case 0xc6: return true;
      case 0xc7: if (i + 1 >= n) return true; i += 3 + b[i + 1]!; break;
      case 0xc8: if (i + 2 >= n) return true; i += 4 + ((b[i + 1]! << 8) | b[i + 2]!); break;
      case 0xc9: if (i + 4 >= n) return true; i += 6 + ((b[i + 1]! * 2 ** 24) + ((b[i + 2]! << 16) | (b[i + 3]! << 8) | b[i + 4]!)); break;
      case 0xca: i += 5; break;
      case 0xcb: i += 9; break;
      case 0xcc: case 0xd0: i += 2; break;
      case 0xcd: case 0xd1: i += 3; break;
      case 0xce: case 0xd2: i += 5; break;
      case 0xcf: case 0xd3: i += 9; break;
      case 0xd4: i += 3; break;
      case 0xd5: i += 4; break;
      case 0xd6: i += 6; break;
      case 0xd7: i += 10; break;
      case 0xd8: i += 18; break;
      case 0xd9: if (i + 1 >= n) return true; i += 2 + b[i + 1]!; break;
      case 0xda: if (i + 2 >= n) return true; i += 3 + ((b[i + 1]! << 8) | b[i + 2]!); break;
      case 0xdb: if (i + 4 >= n) return true; i += 5 + ((b[i + 1]! * 2 ** 24) + ((b[i + 2]! << 16) | (b[i + 3]! << 8) | b[i + 4]!)); break;
      case 0xdc: case 0xde: i += 3; break;
      case 0xdd: case 0xdf: i += 5; break;
      default: return true; // 0xc1: never used
    }
  }
  return false;
}

/** A copy of v with each byte string longer than `keep` replaced by its digest marker. */
export function digestBins(v: unknown, keep: number): unknown {
  if (v instanceof Uint8Array) return v.length <= keep ? v : { $bin: binDigest(v), len: v.length };
  if (Array.isArray(v)) return v.map((x) => digestBins(x, keep));
  if (isPlainMap(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = digestBins(x, keep);
    return out;
  }
  return v;
}

/** The body to journal: as received, or re-encoded with digests for bytes beyond `keep` (-1: all). */
function withDigests(body: Buffer, keep: number): Buffer {
  if (!mayHoldBin(body)) return body;
  let v: unknown;
  try {
    v = decodeValue(body);
  } catch {
    return body; // not MessagePack: journaled as it came (a replay gets the same EPROTO)
  }
  return encodeValue(digestBins(v, keep));
}

/** A hello body with its token replaced by the token's digest. */
function redactHello(body: Buffer): Buffer {
  let v: unknown;
  try {
    v = decodeValue(body);
  } catch {
    return body;
  }
  if (!isPlainMap(v) || typeof v['token'] !== 'string') return body;
  return encodeValue({ ...v, token: { $token: `sha256:${digest(v['token'])}` } });
}

export class JournalEntries {
  private readonly known = new Set<number>();
  /** Requests journaled and not yet answered, per client: a response to one made before the recording began is left out. */
  private readonly open = new Map<number, number>();

  constructor(
    private readonly policy: DataPolicy,
    private readonly now: () => number,
    private readonly out: (frame: Buffer) => void,
    /** Queue a req/res/ev/sub entry without building it (Journal.raw). */
    private readonly raw: (kind: string, t: number, c: number, body: Uint8Array, from: number) => void,
    /** With recordData: what processes wrote through their mappings (journal-cpu.ts). */
    private readonly cpu: CpuTracker | null = null,
  ) {}

  /** Journal the pages processes changed through their mappings since the last response. */
  private cpuWrites(): void {
    const changes = this.cpu!.scan(true);
    if (changes === 'overflow') {
      this.out(encodeFrame({ k: 'cpu', t: this.now(), untracked: 'the mapped buffers are too large to track: CPU writes through mappings are journaled no further' }));
      return;
    }
    for (const ch of changes) {
      const b = ch.data.length <= this.policy.maxDataBytes ? ch.data : { $bin: binDigest(ch.data), len: ch.data.length };
      this.out(encodeFrame({ k: 'cpu', t: this.now(), buffer: ch.buffer, off: ch.off, b }));
    }
  }

  header(meta: JournalMeta, part: number): Record<string, unknown> {
    return {
      k: JOURNAL_MAGIC,
      v: JOURNAL_VERSION,
      part,
      t: this.now(),
      wallTime: new Date().toISOString(),
      ...meta,
      recordData: this.policy.recordData,
      maxDataBytes: this.policy.maxDataBytes,
      // a continuation part names the clients already announced in earlier parts
      ...(part === 0 ? {} : { clients: [...this.known] }),
    };
  }

  /** Announce a client the first time it appears: who it is (peer credentials, and hello's outcome if it came before the recording). */
  private conn(s: Session): void {
    if (this.known.has(s.id)) return;
    this.known.add(s.id);
    this.out(
      encodeFrame({ k: 'conn', t: this.now(), c: s.id, peer: s.peer, open: s.open, name: s.name, principal: s.principal?.name ?? null }),
    );
  }

  request(s: Session, body: Buffer): void {
    this.conn(s);
    if (this.cpu !== null) this.cpuWrites();
    this.open.set(s.id, (this.open.get(s.id) ?? 0) + 1);
    const b = !s.open ? redactHello(body) : withDigests(body, this.policy.recordData ? this.policy.maxDataBytes : -1);
    this.raw('req', this.now(), s.id, b, 0);
  }

  response(s: Session, frame: Buffer): void {
    const n = this.open.get(s.id) ?? 0;
    if (n === 0) return;
    this.open.set(s.id, n - 1);
    // what the daemon wrote while handling the request is not a process's write
    this.cpu?.scan(false);
    if (mayHoldBin(frame, FRAME_HEADER_BYTES)) this.raw('res', this.now(), s.id, withDigests(frame.subarray(FRAME_HEADER_BYTES), -1), 0);
    else this.raw('res', this.now(), s.id, frame, FRAME_HEADER_BYTES);
  }

  event(s: Session, frame: Buffer, stream: boolean): void {
    this.conn(s);
    this.raw(stream ? 'sub' : 'ev', this.now(), s.id, withDigests(frame.subarray(FRAME_HEADER_BYTES), -1), 0);
  }

  gone(s: Session): void {
    this.open.delete(s.id);
    if (!this.known.delete(s.id)) return;
    this.out(encodeFrame({ k: 'close', t: this.now(), c: s.id }));
  }

  gap(dropped: number, bytes: number): Record<string, unknown> {
    return { k: 'gap', t: this.now(), dropped, bytes };
  }

  end(stats: { entries: number; dropped: number; gaps: number }): Record<string, unknown> {
    return { k: 'end', t: this.now(), entries: stats.entries, dropped: stats.dropped, gaps: stats.gaps };
  }
}
