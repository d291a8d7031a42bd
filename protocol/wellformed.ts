/**
 * A structural check of one MessagePack value, run on every frame body
 * before any decoder sees it. It walks the type headers without building
 * anything (an explicit stack, no recursion) and refuses, with the offset:
 *
 * - a header whose length or element count claims more than the bytes left
 *   (every element takes at least one byte, every map entry two);
 * - trailing bytes after the value, or a value cut short;
 * - the reserved byte 0xc1 and every extension type, at any depth;
 * - map keys that are not strings;
 * - nesting deeper than MAX_DEPTH;
 * - strings that are not valid UTF-8;
 * - more than `maxValues` values in all (a request never needs many: this
 *   bounds what one frame costs to decode, e.g. 4 MiB of one-byte values).
 *
 * So the decoder only ever sees bytes whose every length is true: a lying
 * str32 header (`db ffffffff …`), which crashed a native string decoder,
 * never reaches one, and no header can make the decoder allocate more than
 * the frame's own size. Linear in the number of values and string bytes;
 * bin payloads are skipped, not read.
 */
import { isUtf8 } from 'node:buffer';

/** Deepest nesting of arrays and maps accepted (requests use fewer than 8). */
export const MAX_DEPTH = 64;

export class MalformedError extends Error {
  override name = 'MalformedError';
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

/** Frames of containers being walked: items left, and whether the next item is a map key. */
interface Level {
  left: number;
  map: boolean;
  /** For maps: the next item is a key. */
  key: boolean;
  /** For maps, when keys must be unique: the keys seen (their raw bytes). */
  keys: MapKeys | null;
}

/**
 * Keys are compared byte by byte while a map has at most FEW_KEYS of them,
 * each at most SHORT_KEY bytes (a request's maps hold a handful of short
 * names); past either, they go into a Set. So the comparisons cost at most
 * FEW_KEYS × SHORT_KEY bytes a key, whatever a hostile frame holds: a map
 * of thousands, or of long keys that differ only in their last byte.
 */
const FEW_KEYS = 16;
const SHORT_KEY = 16;

/**
 * The keys of one map seen so far, as their bytes in the frame: compared
 * in place while there are few and short (no string or Buffer made per
 * key: this check runs on every request), in a Set of their latin1
 * strings past that, so the cost stays linear in the frame's bytes.
 */
class MapKeys {
  /** Start and length of each key seen, in turn. */
  private readonly spans: number[] = [];
  private set: Set<string> | null = null;

  constructor(private readonly body: Uint8Array) {}

  /** Add the key at body[start, start+len); false when the map has it already. */
  add(start: number, len: number): boolean {
    const body = this.body;
    if (this.set === null && len <= SHORT_KEY) {
      const spans = this.spans;
      for (let i = 0; i < spans.length; i += 2) {
        if (spans[i + 1] !== len) continue;
        const o = spans[i]!;
        let k = 0;
        while (k < len && body[o + k] === body[start + k]) k++;
        if (k === len) return false;
      }
      spans.push(start, len);
      if (spans.length <= FEW_KEYS * 2) return true;
      this.set = setOf(body, spans);
      return true;
    }
    if (this.set === null) this.set = setOf(body, this.spans);
    const k = latin1(body, start, len);
    if (this.set.has(k)) return false;
    this.set.add(k);
    return true;
  }
}

/** The keys seen so far, as a Set of their latin1 strings. */
function setOf(body: Uint8Array, spans: number[]): Set<string> {
  const set = new Set<string>();
  for (let i = 0; i < spans.length; i += 2) set.add(latin1(body, spans[i]!, spans[i + 1]!));
  return set;
}

const latin1 = (body: Uint8Array, start: number, len: number): string => Buffer.from(body.buffer, body.byteOffset + start, len).toString('latin1');

/** Strings up to this long are checked for ASCII in a loop here before the native UTF-8 check (which needs a view object per call). */
const SHORT_STRING = 64;

/** Whether body[start, start+len) is valid UTF-8: an ASCII short string here, the rest by node:buffer's isUtf8. */
function utf8(body: Uint8Array, start: number, len: number): boolean {
  if (len <= SHORT_STRING) {
    let i = start;
    const end = start + len;
    while (i < end && body[i]! < 0x80) i++;
    if (i === end) return true;
  }
  return isUtf8(body.subarray(start, start + len));
}

const hex = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;

/** Values (arrays, maps and their items, every scalar) one request may hold. */
export const MAX_REQUEST_VALUES = 16_384;

/** Throw unless `k` more bytes are left after `pos`. */
function need(n: number, pos: number, k: number, what: string, at: number): void {
  if (pos + k > n) throw new MalformedError(`${what} at offset ${at} needs ${k} more byte(s), only ${n - pos} left`, at);
}

/** A length-prefixed payload (str, bin) from `pos`: its length must fit in what is left, a string must be UTF-8. Returns the position after it. */
function payload(body: Uint8Array, pos: number, len: number, str: boolean, at: number): number {
  const left = body.length - pos;
  if (len > left) throw new MalformedError(`${str ? 'string' : 'bin'} at offset ${at} claims ${len} bytes, only ${left} left in the frame`, at);
  if (str && len > 0 && !utf8(body, pos, len)) throw new MalformedError(`string at offset ${at} is not valid UTF-8`, at);
  return pos + len;
}

/** A container header at `at`, its items from `pos`: the count must be possible in what is left, the nesting within MAX_DEPTH. */
function open(stack: Level[], body: Uint8Array, pos: number, count: number, map: boolean, at: number, uniqueKeys: boolean): void {
  const left = body.length - pos;
  const min = map ? count * 2 : count;
  if (min > left) {
    throw new MalformedError(`${map ? 'map' : 'array'} at offset ${at} claims ${count} ${map ? 'entries' : 'elements'}, more than the ${left} byte(s) left could hold`, at);
  }
  if (stack.length >= MAX_DEPTH) throw new MalformedError(`nesting deeper than ${MAX_DEPTH} levels at offset ${at}`, at);
  if (count === 0) return;
  stack.push({ left: map ? count * 2 : count, map, key: map, keys: map && uniqueKeys ? new MapKeys(body) : null });
}

/** Big-endian 16- and 32-bit lengths at `at` (the caller checked the bytes are there). */
const u16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const u32 = (b: Uint8Array, at: number): number => b[at]! * 0x100_0000 + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);

/**
 * Throw MalformedError unless `body` holds exactly one well-formed value
 * within the rules above. Requests are checked with `maxValues` set, and
 * then a map's keys must also be unique (a request whose `id` appears
 * twice means two things). The helpers above take the position and give
 * it back: no closure over it, so it stays in a register through the loop.
 */
export function checkWellFormed(body: Uint8Array, maxValues = Infinity): void {
  const uniqueKeys = maxValues !== Infinity;
  const n = body.length;
  const stack: Level[] = [];
  let pos = 0;
  let values = 0;

  do {
    if (pos >= n) throw new MalformedError(`value cut short at offset ${pos} (frame ends)`, pos);
    const at = pos;
    if (++values > maxValues) throw new MalformedError(`more than ${maxValues} values in one frame (at offset ${at}); a request holds far fewer`, at);
    const top = stack.length > 0 ? stack[stack.length - 1]! : undefined;
    const isKey = top !== undefined && top.map && top.key;
    if (top !== undefined) {
      top.left--;
      if (top.map) top.key = !top.key;
    }
    const b = body[pos++]!;
    if (isKey && !((b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb)) {
      throw new MalformedError(`map key at offset ${at} is not a string (type byte ${hex(b)}); map keys must be strings`, at);
    }
    const keys = isKey ? top!.keys : null;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, negative fixint, nil, false, true
    } else if (b >= 0xa0 && b <= 0xbf) {
      pos = payload(body, pos, b & 0x1f, true, at);
    } else if (b >= 0x90 && b <= 0x9f) {
      open(stack, body, pos, b & 0x0f, false, at, uniqueKeys);
    } else if (b >= 0x80 && b <= 0x8f) {
      open(stack, body, pos, b & 0x0f, true, at, uniqueKeys);
    } else {
      switch (b) {
        case 0xcc:
        case 0xd0:
          need(n, pos, 1, 'integer', at);
          pos += 1;
          break;
        case 0xcd:
        case 0xd1:
          need(n, pos, 2, 'integer', at);
          pos += 2;
          break;
        case 0xce:
        case 0xd2:
        case 0xca:
          need(n, pos, 4, 'number', at);
          pos += 4;
          break;
        case 0xcf:
        case 0xd3:
        case 0xcb:
          need(n, pos, 8, 'number', at);
          pos += 8;
          break;
        case 0xd9:
        case 0xc4:
          need(n, pos, 1, 'length', at);
          pos = payload(body, pos + 1, body[pos]!, b === 0xd9, at);
          break;
        case 0xda:
        case 0xc5:
          need(n, pos, 2, 'length', at);
          pos = payload(body, pos + 2, u16(body, pos), b === 0xda, at);
          break;
        case 0xdb:
        case 0xc6:
          need(n, pos, 4, 'length', at);
          pos = payload(body, pos + 4, u32(body, pos), b === 0xdb, at);
          break;
        case 0xdc:
          need(n, pos, 2, 'array length', at);
          pos += 2;
          open(stack, body, pos, u16(body, pos - 2), false, at, uniqueKeys);
          break;
        case 0xdd:
          need(n, pos, 4, 'array length', at);
          pos += 4;
          open(stack, body, pos, u32(body, pos - 4), false, at, uniqueKeys);
          break;
        case 0xde:
          need(n, pos, 2, 'map length', at);
          pos += 2;
          open(stack, body, pos, u16(body, pos - 2), true, at, uniqueKeys);
          break;
        case 0xdf:
          need(n, pos, 4, 'map length', at);
          pos += 4;
          open(stack, body, pos, u32(body, pos - 4), true, at, uniqueKeys);
          break;
        case 0xc1:
          throw new MalformedError(`the reserved byte 0xc1 at offset ${at} is never valid MessagePack`, at);
        default:
          // 0xc7–0xc9 ext 8/16/32, 0xd4–0xd8 fixext
          throw new MalformedError(`extension type (byte ${hex(b)}) at offset ${at}: extension types are not accepted`, at);
      }
    }
    if (keys !== null) {
      // the key's own bytes, whatever header encoded its length
      const header = b <= 0xbf ? 1 : b === 0xd9 ? 2 : b === 0xda ? 3 : 5;
      if (!keys.add(at + header, pos - at - header)) throw new MalformedError(`duplicate map key at offset ${at}: a key may appear once in a map`, at);
    }
    // close every container this value completed
    while (stack.length > 0 && stack[stack.length - 1]!.left === 0) stack.pop();
  } while (stack.length > 0);
  if (pos !== n) throw new MalformedError(`${n - pos} trailing byte(s) after the value, from offset ${pos}`, pos);
}
