/**
 * The machine description after validation: regions, hugepage pools and
 * cache-policy pools with sizes as numbers, and the cross-checks a schema
 * can't express (alignment, overlaps, references by name).
 */
import { parseSize, formatAddress, formatSize } from '../../protocol/units.js';
import type { RawConfig } from './schema.js';
import { validateConstraints } from '../../protocol/attributes.js';
import { PAGE_SIZE, HUGE_2M, HUGE_1G, MAX_REGION_BYTES, type RegionConfig, type HugepageConfig } from '../memory/layout.js';
import type { PoolConfig } from '../alloc/pool.js';
import type { BounceConfig, MachineLayout } from '../alloc/machine.js';
import type { DriverConfig } from '../dma/drivers.js';
import { MAX_MAPPING, SLOT } from '../dma/swiotlb.js';

export type { CachePolicy, RegionConfig, RegionKind, HugepageConfig } from '../memory/layout.js';
export type { PoolConfig } from '../alloc/pool.js';
export type { BounceConfig } from '../alloc/machine.js';
export type { DriverConfig } from '../dma/drivers.js';

/** The whole machine: the memory layout and pools (alloc/machine.ts) and the built-in devices. */
export interface MachineConfig extends MachineLayout {
  /** Built-in simulated devices. */
  drivers: DriverConfig[];
}

export class MachineConfigError extends Error {
  override name = 'MachineConfigError';
}

const PAGE_SIZES: Record<string, number> = { '4K': PAGE_SIZE, '2M': HUGE_2M, '1G': HUGE_1G };

function fail(msg: string): never {
  throw new MachineConfigError(msg);
}

export function normalizeMachine(r: RawConfig): MachineConfig {
  const regions: RegionConfig[] = r.memory.regions.map((x, i) => {
    const where = `/memory/regions/${i}`;
    const base = parseSize(x.base, `${where}/base`);
    const size = parseSize(x.size, `${where}/size`);
    if (base % PAGE_SIZE !== 0) fail(`config ${where}/base: region '${x.name}' base ${formatAddress(base)} is not aligned to the 4 KiB page size`);
    if (size === 0 || size % PAGE_SIZE !== 0) fail(`config ${where}/size: region '${x.name}' size ${size} is not a positive multiple of the 4 KiB page size`);
    if (size > MAX_REGION_BYTES) fail(`config ${where}/size: region '${x.name}' size ${formatSize(size)} is above the ${formatSize(MAX_REGION_BYTES)} limit for one region`);
    if (base + size > 2 ** 52) fail(`config ${where}: region '${x.name}' ends above the 52-bit physical address space`);
    return { name: x.name, base, size, kind: x.kind };
  });
  const byName = new Map<string, RegionConfig>();
  regions.forEach((reg, i) => {
    if (byName.has(reg.name)) fail(`config /memory/regions/${i}/name: region name '${reg.name}' is used twice`);
    byName.set(reg.name, reg);
  });
  const sorted = [...regions].sort((a, b) => a.base - b.base);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.base < a.base + a.size) {
      fail(
        `config /memory/regions: regions '${a.name}' [${formatAddress(a.base)}, ${formatAddress(a.base + a.size)}) and ` +
          `'${b.name}' [${formatAddress(b.base)}, ${formatAddress(b.base + b.size)}) overlap`,
      );
    }
  }

  const hugepages: HugepageConfig[] = (r.hugepages ?? []).map((h, i) => {
    const where = `/hugepages/${i}`;
    const reg = byName.get(h.region) ?? fail(`config ${where}/region: no region named '${h.region}'`);
    const size = PAGE_SIZES[h.size]!;
    const need = h.nr * size;
    if (need > reg.size) {
      fail(`config ${where}/nr: ${h.nr} hugepages of ${h.size} (${formatSize(need)}) exceed region '${reg.name}' (${formatSize(reg.size)})`);
    }
    return { size, region: h.region, nr: h.nr, overcommit: h.overcommit ?? 0 };
  });
  hugepages.forEach((h, i) => {
    if (hugepages.findIndex((o) => o.size === h.size) !== i) fail(`config /hugepages/${i}/size: a hugepage pool of ${formatSize(h.size)} is configured twice`);
  });

  const pools: PoolConfig[] = r.pools.map((p, i) => {
    const where = `/pools/${i}`;
    const reg = byName.get(p.region) ?? fail(`config ${where}/region: pool '${p.name}' names no region '${p.region}'`);
    const pageSize = PAGE_SIZES[p.pageSize ?? '4K']!;
    if (pageSize !== PAGE_SIZE) {
      const hp = hugepages.find((h) => h.size === pageSize);
      if (hp === undefined) fail(`config ${where}/pageSize: pool '${p.name}' uses ${p.pageSize} pages but no hugepage pool of that size is configured`);
      if (hp.region !== reg.name) {
        fail(`config ${where}/region: pool '${p.name}' uses ${p.pageSize} hugepages, which live in region '${hp.region}', not '${reg.name}'`);
      }
    }
    const maxAddress = p.maxAddress !== undefined ? parseSize(p.maxAddress, `${where}/maxAddress`) : null;
    if (maxAddress !== null && (maxAddress <= reg.base || maxAddress % PAGE_SIZE !== 0)) {
      fail(`config ${where}/maxAddress: ${formatAddress(maxAddress)} must be page aligned and above region '${reg.name}' base ${formatAddress(reg.base)}`);
    }
    const maxBytes = p.maxBytes !== undefined ? parseSize(p.maxBytes, `${where}/maxBytes`) : null;
    return {
      name: p.name,
      cache: p.cache,
      pageSize,
      region: p.region,
      contiguous: p.contiguous ?? false,
      maxAddress: maxAddress !== null && maxAddress >= reg.base + reg.size ? null : maxAddress,
      capability: p.capability ?? null,
      maxBytes,
      arena: p.arena ?? 'per-client',
      dirtyDecayMs: p.dirtyDecayMs ?? 10_000,
      coherency: p.coherency ?? null,
    };
  });
  pools.forEach((p, i) => {
    if (pools.findIndex((o) => o.name === p.name) !== i) fail(`config /pools/${i}/name: pool name '${p.name}' is used twice`);
  });
  let bounce: BounceConfig | null = null;
  if (r.bounce !== undefined) {
    const reg = byName.get(r.bounce.region) ?? fail(`config /bounce/region: no region named '${r.bounce.region}'`);
    const size = parseSize(r.bounce.size, '/bounce/size');
    if (size < 2048 || size % PAGE_SIZE !== 0) fail(`config /bounce/size: must be a positive multiple of 4 KiB (got ${size})`);
    if (reg.base >= 2 ** 32) fail(`config /bounce/region: region '${reg.name}' lies above 4 GiB; a bounce pool must be reachable by 32-bit devices`);
    const maxMapping = r.bounce.maxMapping !== undefined ? parseSize(r.bounce.maxMapping, '/bounce/maxMapping') : MAX_MAPPING;
    // kernel/dma/swiotlb.c swiotlb_find_slots: no mapping crosses a 128-slot segment, so none is above 256 KiB
    if (maxMapping > MAX_MAPPING) {
      fail(`config /bounce/maxMapping: ${formatSize(maxMapping)} is above the swiotlb limit of ${formatSize(MAX_MAPPING)} (IO_TLB_SEGSIZE 128 slots × IO_TLB_SIZE 2 KiB: a bounce mapping never crosses a segment); leave it out for 256 KiB, or give a smaller limit`);
    }
    if (maxMapping < SLOT) fail(`config /bounce/maxMapping: must be at least one 2 KiB slot (got ${maxMapping})`);
    bounce = { size, region: reg.name, maxMapping };
  }
  const drivers: DriverConfig[] = (r.drivers ?? []).map((d, i) => {
    const where = `/drivers/${i}/constraints`;
    const bad = validateConstraints(d.constraints);
    if (bad.length > 0) fail(`config ${where}: ${bad.join('; ')}`);
    for (const reg of d.constraints.regions ?? []) if (!byName.has(reg)) fail(`config ${where}/regions: no region named '${reg}'`);
    if (d.constraints.bounce === true && bounce === null) fail(`config ${where}/bounce: driver '${d.name}' may bounce but no bounce pool is configured (/bounce)`);
    return { name: d.name, description: d.description ?? '', constraints: d.constraints };
  });
  drivers.forEach((d, i) => {
    if (drivers.findIndex((o) => o.name === d.name) !== i) fail(`config /drivers/${i}/name: driver name '${d.name}' is used twice`);
  });
  return { regions, hugepages, pools, bounce, drivers };
}
