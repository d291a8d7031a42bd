/**
 * Sizes in the client library's arguments: a number of bytes or a string
 * as in the config ("6M", "1G", "64K", "0x200000"), turned into bytes here,
 * before the request is sent. Strings avoid the `6 << 20` idiom, which
 * overflows past 2 GiB (`3 << 30` is negative).
 */
import { BufferdError } from '../protocol/errors.js';
import { toBytes } from '../protocol/units.js';
import type { ParamsOf } from '../protocol/requests.js';

/** Bytes: a number, or a string such as "4K", "6M", "1G", "0x1000" (binary units). */
export type Size = number | string;

/**
 * A size argument in bytes. A string that is not a size, or a negative
 * number, is EINVAL naming the op and the field; other numbers go to the
 * daemon as they are (it checks them).
 */
export function bytes(v: Size, op: string, field: string): number {
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v < 0) {
      throw new BufferdError('EINVAL', `${op}: ${field} ${v} is negative (a shift such as 3 << 30 overflows past 2 GiB: write 3 * 2 ** 30 or "3G")`, { field, value: v });
    }
    return v;
  }
  try {
    return toBytes(v);
  } catch (e) {
    throw new BufferdError('EINVAL', `${op}: ${field} ${(e as Error).message}`, { field, value: v });
  }
}

export type AllocOptions = ({ pool: string } | { for: string[] }) & {
  /** Bytes, or a string such as "6M". */
  size: Size;
  /** Alignment in bytes, or a string such as "64K". */
  align?: Size;
  populate?: boolean;
  /** Place every page at or above this physical address (e.g. "4G"); the buffer then takes whole pages of its own. */
  minAddress?: Size;
};

/** alloc's request parameters with the sizes in bytes. */
export function allocParams(o: AllocOptions): ParamsOf<'alloc'> {
  const p = { ...o, size: bytes(o.size, 'alloc', 'size') } as ParamsOf<'alloc'>;
  if (o.align !== undefined) p.align = bytes(o.align, 'alloc', 'align');
  if (o.minAddress !== undefined) p.minAddress = bytes(o.minAddress, 'alloc', 'minAddress');
  return p;
}
