/**
 * Sizes and addresses in config and in the client library's arguments: an
 * integer, or a string such as "4K", "2M", "1G", "64GiB", "0x80000000".
 * Binary units (K = 1024).
 */
const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

export const SIZE_PATTERN = '^(0x[0-9a-fA-F]+|[0-9]+ *([KMGTkmgt](i?B)?)?)$';

export class UnitError extends Error {
  override name = 'UnitError';
}

/**
 * A size or address as a number of bytes: an integer, or a string such as
 * "4K", "2M", "1GiB", "0x80000000". UnitError saying what is wrong otherwise.
 */
export function toBytes(v: number | string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new UnitError(`must be a non-negative integer (got ${v})`);
    return v;
  }
  const s = v.trim();
  let n: number;
  if (/^0x[0-9a-f]+$/i.test(s)) {
    n = parseInt(s.slice(2), 16);
  } else {
    const m = /^([0-9]+) *([KMGTkmgt])?(i?B)?$/.exec(s);
    if (m === null) throw new UnitError(`'${v}' is not a size (expected an integer, "0x..." or e.g. "4K", "2M", "1G")`);
    n = Number(m[1]) * UNITS[(m[2] ?? '').toUpperCase()]!;
  }
  if (!Number.isSafeInteger(n)) throw new UnitError(`'${v}' is too large`);
  return n;
}

/** Parse a size or address in the config. `where` names the config path for errors. */
export function parseSize(v: number | string, where: string): number {
  try {
    return toBytes(v);
  } catch (e) {
    throw new UnitError(`config ${where}: ${(e as Error).message}`);
  }
}

/** Human size with binary units: 4096 → "4 KiB", 3221225472 → "3 GiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  const digits = (x: number) => (Math.abs(x) < 10 ? 2 : 1);
  // move up while the value, as printed, would reach 1024 (so 1 GiB − 4 KiB prints "1 GiB", not "1024 MiB")
  while (i < units.length - 1 && (Math.abs(v) >= 1024 || Math.abs(Number(v.toFixed(digits(v)))) >= 1024)) {
    v /= 1024;
    i++;
  }
  const text = Number.isInteger(v) ? String(v) : v.toFixed(digits(v)).replace(/\.?0+$/, '');
  return `${text} ${units[i]}`;
}

export function formatAddress(addr: number): string {
  return `0x${addr.toString(16).padStart(8, '0')}`;
}
