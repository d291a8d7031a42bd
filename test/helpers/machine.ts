/**
 * Shared fixtures of the machine tests: a small machine config, snapshots
 * and their diffs, status lookups.
 */
import { Machine } from '../../daemon/alloc/machine.js';
import { loadConfig, buildConfig } from '../../daemon/config/config.js';
import type { MachineConfig, PoolConfig } from '../../daemon/config/machine-config.js';
import type { Segment } from '../../daemon/alloc/pool.js';
import { BufferdError } from '../../protocol/errors.js';
import type { Test } from 'tap';

export const MiB = 2 ** 20;
export const H = 2 * MiB;
export const PAGE = 4096;

/** 32 MiB of DRAM with a 2 MiB hugepage pool, and a 4 MiB carveout. */
export const SMALL_RAW = {
  memory: {
    regions: [
      { name: 'dram', base: '0x80000000', size: '32M', kind: 'dram' },
      { name: 'carve', base: '0x40000000', size: '4M', kind: 'carveout' },
    ],
  },
  hugepages: [{ size: '2M', region: 'dram', nr: 4, overcommit: 3 }],
  pools: [
    { name: 'default', cache: 'writeback', region: 'dram' },
    { name: 'uc', cache: 'uncached', region: 'dram' },
    { name: 'low', cache: 'writeback', region: 'dram', maxAddress: '0x80800000', maxBytes: '6M' },
    { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'dram' },
    { name: 'wc', cache: 'writecombine', pageSize: '2M', region: 'dram' },
    { name: 'hcontig', cache: 'writecombine', pageSize: '2M', region: 'dram', contiguous: true },
    { name: 'contig', cache: 'writecombine', region: 'carve', contiguous: true },
  ],
};

/** A config with every pool changed by `f` (e.g. its decay time). */
export function withPools(cfg: MachineConfig, f: (p: PoolConfig, i: number) => Partial<PoolConfig>): MachineConfig {
  return { ...cfg, pools: cfg.pools.map((p, i) => ({ ...p, ...f(p, i) })) };
}
export const defaultConfig = (): MachineConfig => loadConfig().machine;
export const smallConfig = (): MachineConfig => buildConfig(structuredClone(SMALL_RAW), 'test').machine;
/** Empty chunks are purged at once: no pool ever holds dirty chunks. */
export const eager = (cfg: MachineConfig): MachineConfig => withPools(cfg, () => ({ dirtyDecayMs: 0 }));

/** Everything status shows of the memory model, pool details (arenas, bins) included. */
export const snap = (m: Machine) =>
  JSON.stringify({ r: m.regionStatus(), h: m.hugepageStatus(), p: m.poolStatus(), d: [...m.pools.keys()].map((n) => m.poolDetail(n)) });
/** Where two snapshots differ (paths and values), for failure messages. */
export function diff(a: string, b: string): string {
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, path: string) => {
    if (out.length >= 12) return;
    if (typeof x === 'object' && x !== null && typeof y === 'object' && y !== null) {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) walk((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], `${path}.${k}`);
    } else if (x !== y) out.push(`${path}: ${JSON.stringify(x)} → ${JSON.stringify(y)}`);
  };
  walk(JSON.parse(a), JSON.parse(b), '');
  return out.join('\n');
}
/** Assert two snapshots are equal, printing only where they differ. */
type Asserts = Pick<Test, 'ok'>;
export function sameSnap(t: Asserts, actual: string, expected: string, msg: string): void {
  t.ok(actual === expected, msg, { diff: actual === expected ? '' : diff(expected, actual) });
}
export const poolStat = (m: Machine, name: string) => m.poolStatus().find((p) => p.name === name)!;
export const hpStat = (m: Machine, size = H) => m.hugepageStatus().find((h) => h.size === size)!;
export const regionFree = (m: Machine, name: string) => m.regionStatus().find((r) => r.name === name)!.free;

export function overlaps(a: Segment[], b: Segment[]): boolean {
  return a.some((x) => b.some((y) => x.addr < y.addr + y.len && y.addr < x.addr + x.len));
}

export function errorOf(fn: () => unknown): BufferdError {
  try {
    fn();
  } catch (e) {
    if (e instanceof BufferdError) return e;
    throw e;
  }
  throw new Error('expected a BufferdError');
}

