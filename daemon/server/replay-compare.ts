/**
 * Comparing a recorded response (or event) with the replayed one. Both are
 * brought to the journal's form (bytes as digests, journal-entries.ts), then
 * these fields are set aside, because they cannot be the same in another
 * process or at another moment (PROTOCOL.md "Replay" lists them):
 * - `pid` (the daemon's; a client's recorded pid is replayed as it was),
 *   `socket`, `fdSocket`, `dashboard`: where the daemon ran;
 * - `uptimeMs`, `timeMs`, `connectedMs`, `expiresInMs`: clock readings (the
 *   replay runs on the recorded clock, but handlers read it a little later
 *   than the journal did);
 * - `token` strings: export tokens are random; each side's tokens are
 *   numbered in order of appearance, so "the same token used twice" still
 *   compares;
 * - without recordData, the content of bytes (the replay writes a filler
 *   where a client wrote bytes the journal has only digests of): only
 *   their length compares.
 * Everything else (handle numbers, buffer ids, physical addresses, IOVAs,
 * violations, error codes and messages) must be byte-for-byte equal.
 */
import { decodeValue, encodeValue, isPlainMap } from '../../protocol/codec.js';
import { digestBins } from '../session/journal-entries.js';

const VOLATILE = new Set(['pid', 'socket', 'fdSocket', 'dashboard', 'uptimeMs', 'timeMs', 'connectedMs', 'expiresInMs']);

/** Numbers each distinct token string in order of first appearance. */
export class TokenNames {
  private readonly names = new Map<string, string>();
  name(t: string): string {
    let n = this.names.get(t);
    if (n === undefined) this.names.set(t, (n = `<token ${this.names.size + 1}>`));
    return n;
  }
}

export interface NormalOptions {
  /** Compare byte strings by length only (the journal has no data). */
  lengthsOnly: boolean;
  tokens: TokenNames;
}

/** The journal form of a value: what the recorder would have written for it. */
export function journalForm(v: unknown): unknown {
  return decodeValue(encodeValue(digestBins(v, -1)));
}

export function normalise(v: unknown, o: NormalOptions, key = ''): unknown {
  if (Array.isArray(v)) return v.map((x) => normalise(x, o));
  if (isPlainMap(v)) {
    if (typeof v['$bin'] === 'string' && typeof v['len'] === 'number') return o.lengthsOnly ? { $bin: '(not journaled)', len: v['len'] } : v;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = VOLATILE.has(k) ? '(not compared)' : normalise(v[k], o, k);
    return out;
  }
  if (key === 'token' && typeof v === 'string') return o.tokens.name(v);
  return v;
}

/** The first place two normalised values differ ("" for the top), or null when they are equal. */
export function firstDifference(a: unknown, b: unknown, path = ''): string | null {
  if (Object.is(a, b)) return null;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= a.length || i >= b.length) return `${path}[${i}]`;
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d !== null) return d;
    }
    return null;
  }
  if (isPlainMap(a) && isPlainMap(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      if (!(k in a) || !(k in b)) return `${path}.${k}`;
      const d = firstDifference(a[k], b[k], `${path}.${k}`);
      if (d !== null) return d;
    }
    return null;
  }
  return path === '' ? '(the whole value)' : path;
}
