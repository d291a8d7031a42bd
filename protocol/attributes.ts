/**
 * Buffer attributes and device constraints: the types, the merge of several
 * drivers' constraints, and the check of a buffer's real attributes against
 * one driver's constraints. Pure: no daemon state.
 *
 * A device with an IOMMU sees one contiguous IOVA range, so physical
 * alignment, contiguity, segment limits and its DMA mask do not constrain
 * the physical buffer (the IOVA allocator honours them). A device without
 * one sees physical segments directly; a DMA mask it can't reach is either
 * a mismatch or, with `bounce`, a copy through the swiotlb bounce pool.
 */
import { Type, type Static, type TLiteral, type TUnion } from './typebox.js';

export const CACHE_POLICY_NAMES = ['writeback', 'writecombine', 'uncached'] as const;
export type CachePolicyName = (typeof CACHE_POLICY_NAMES)[number];

/** Schema of one cache policy name (a union of CACHE_POLICY_NAMES literals). */
export function CachePolicySchema(options?: { description?: string }): TUnion<TLiteral<CachePolicyName>[]> {
  return Type.Union(CACHE_POLICY_NAMES.map((n) => Type.Literal(n)), options);
}

const Pow2 = (description: string, minimum = 1, maximum = 2 ** 40) => Type.Integer({ minimum, maximum, description: `${description} (a power of two)` });

export const ConstraintsSchema = Type.Object(
  {
    align: Type.Optional(Pow2('alignment of the first byte, bytes')),
    contiguous: Type.Optional(Type.Boolean({ description: 'physically contiguous required' })),
    maxSegments: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20, description: 'most scatter-gather segments' })),
    maxSegmentSize: Type.Optional(Type.Integer({ minimum: 4096, maximum: 2 ** 40, description: 'largest segment, bytes' })),
    segmentBoundary: Type.Optional(Pow2('a segment may not cross a multiple of this, bytes', 4096)),
    cache: Type.Optional(
      Type.Array(CachePolicySchema(), {
        minItems: 1,
        maxItems: 3,
        uniqueItems: true,
        description: 'accepted cache policies',
      }),
    ),
    coherent: Type.Optional(Type.Boolean({ description: 'the device snoops CPU caches' })),
    regions: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 64, uniqueItems: true, description: 'regions the device can reach' })),
    dmaMask: Type.Optional(Type.Integer({ minimum: 12, maximum: 64, description: 'address bits the device can drive (12 to 64)' })),
    iommu: Type.Optional(
      Type.Union([
        Type.Null(),
        Type.Object(
          {
            pageSizes: Type.Array(Pow2('IOMMU page size', 4096, 2 ** 30), { minItems: 1, maxItems: 8, uniqueItems: true }),
            iovaSize: Type.Integer({ minimum: 1 << 20, maximum: 2 ** 48, description: 'IOVA space, bytes' }),
          },
          { additionalProperties: false },
        ),
      ]),
    ),
    bounce: Type.Optional(Type.Boolean({ description: 'the platform may bounce through swiotlb when the mask cannot reach the buffer' })),
  },
  { additionalProperties: false },
);

export type Constraints = Static<typeof ConstraintsSchema>;

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Problems a constraint set has on its own (non-power-of-two values, empty IOMMU). */
export function validateConstraints(c: Constraints): string[] {
  const bad: string[] = [];
  if (c.align !== undefined && !isPowerOfTwo(c.align)) bad.push(`align ${c.align} is not a power of two`);
  if (c.segmentBoundary !== undefined && !isPowerOfTwo(c.segmentBoundary)) bad.push(`segmentBoundary ${c.segmentBoundary} is not a power of two`);
  for (const p of c.iommu?.pageSizes ?? []) if (!isPowerOfTwo(p)) bad.push(`iommu page size ${p} is not a power of two`);
  if (c.contiguous === true && c.maxSegments !== undefined && c.maxSegments < 1) bad.push('contiguous with maxSegments 0');
  return bad;
}

/** The limit a DMA mask sets: the first address the device cannot reach. */
export function maskLimit(bits: number | undefined): number {
  return bits === undefined || bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits;
}

export interface MergedAttributes {
  drivers: string[];
  /** LCM of the alignments (bytes). */
  align: number;
  /** Physically contiguous: some device without an IOMMU needs it. */
  contiguous: boolean;
  /** Tightest segment limits of the devices that see physical segments (null: none). */
  maxSegments: number | null;
  maxSegmentSize: number | null;
  segmentBoundary: number | null;
  /** Accepted cache policies: the intersection. */
  cache: CachePolicyName[];
  /** Allowed regions: the intersection (null: any). */
  regions: string[] | null;
  /** Smallest DMA mask of all devices (bits). */
  dmaMask: number;
  /** First physical address the buffer may not use: devices without an IOMMU that cannot bounce (null: none). */
  addressLimit: number | null;
  /** Every device snoops CPU caches (no syncs needed). */
  coherent: boolean;
  /** Devices that will see the buffer through an IOMMU / by bouncing when out of reach. */
  iommuDevices: string[];
  bounceDevices: string[];
}

export interface Conflict {
  attribute: string;
  message: string;
  wants: { driver: string; value: unknown }[];
}

const lcm = (a: number, b: number) => {
  const g = (x: number, y: number): number => (y === 0 ? x : g(y, x % y));
  return (a / g(a, b)) * b;
};

/** Merge the constraints of every device a buffer will visit. */
export function mergeConstraints(list: { driver: string; constraints: Constraints }[]): { merged: MergedAttributes; conflicts: Conflict[] } {
  const conflicts: Conflict[] = [];
  let align = 1;
  let contiguous = false;
  let maxSegments: number | null = null;
  let maxSegmentSize: number | null = null;
  let segmentBoundary: number | null = null;
  let cache = new Set<CachePolicyName>(CACHE_POLICY_NAMES);
  let regions: Set<string> | null = null;
  let dmaMask = 64;
  let addressLimit: number | null = null;
  let coherent = true;
  const iommuDevices: string[] = [];
  const bounceDevices: string[] = [];
  const minOf = (a: number | null, b: number | undefined) => (b === undefined ? a : a === null ? b : Math.min(a, b));
  for (const { driver, constraints: c } of list) {
    align = lcm(align, c.align ?? 1);
    if (c.cache !== undefined) cache = new Set([...cache].filter((p) => c.cache!.includes(p)));
    if (c.regions !== undefined) regions = new Set([...(regions ?? c.regions)].filter((r) => c.regions!.includes(r)));
    dmaMask = Math.min(dmaMask, c.dmaMask ?? 64);
    if (c.coherent !== true) coherent = false;
    if (c.iommu !== undefined && c.iommu !== null) {
      iommuDevices.push(driver);
      continue;
    }
    if (c.contiguous === true || c.maxSegments === 1) contiguous = true;
    maxSegments = minOf(maxSegments, c.maxSegments);
    maxSegmentSize = minOf(maxSegmentSize, c.maxSegmentSize);
    segmentBoundary = minOf(segmentBoundary, c.segmentBoundary);
    if (c.bounce === true) bounceDevices.push(driver);
    else if (c.dmaMask !== undefined && c.dmaMask < 53) addressLimit = Math.min(addressLimit ?? Infinity, maskLimit(c.dmaMask));
  }
  const names = list.map((x) => x.driver);
  if (cache.size === 0) {
    conflicts.push({
      attribute: 'cache',
      message: `no cache policy is accepted by all of ${names.join(', ')}`,
      wants: list.map((x) => ({ driver: x.driver, value: x.constraints.cache ?? [...CACHE_POLICY_NAMES] })),
    });
  }
  if (regions !== null && regions.size === 0) {
    conflicts.push({
      attribute: 'regions',
      message: `no region is reachable by all of ${names.join(', ')}`,
      wants: list.filter((x) => x.constraints.regions !== undefined).map((x) => ({ driver: x.driver, value: x.constraints.regions })),
    });
  }
  const merged: MergedAttributes = {
    drivers: names,
    align,
    contiguous,
    maxSegments,
    maxSegmentSize,
    segmentBoundary,
    cache: CACHE_POLICY_NAMES.filter((p) => cache.has(p)),
    regions: regions === null ? null : [...regions].sort(),
    dmaMask,
    addressLimit,
    coherent,
    iommuDevices,
    bounceDevices,
  };
  return { merged, conflicts };
}

/** What registration compares: the buffer's real attributes. */
export interface BufferFacts {
  cache: CachePolicyName;
  region: string;
  size: number;
  /** Physical segments in buffer order. */
  segments: { addr: number; len: number }[];
}

export interface Mismatch {
  attribute: string;
  required: unknown;
  actual: unknown;
}

/** Largest power of two dividing an address (its natural alignment), capped at 2^40. */
export function alignmentOf(addr: number): number {
  let a = 1;
  while (a < 2 ** 40 && addr % (a * 2) === 0) a *= 2;
  return a;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * The scatterlist a device without an IOMMU is given: the buffer's physical
 * segments, each split where it passes `maxSegmentSize` bytes or crosses a
 * multiple of `segmentBoundary` (as Linux builds an sg_table for a device's
 * dma_max_seg_size and segment boundary). Splitting never refuses a buffer;
 * too many entries for `maxSegments` does.
 */
export function deviceSegments(c: Pick<Constraints, 'maxSegmentSize' | 'segmentBoundary'>, segs: readonly { addr: number; len: number }[]): { addr: number; len: number }[] {
  const max = c.maxSegmentSize;
  const b = c.segmentBoundary;
  if (max === undefined && b === undefined) return segs.map((s) => ({ addr: s.addr, len: s.len }));
  const out: { addr: number; len: number }[] = [];
  for (const s of segs) {
    let addr = s.addr;
    let left = s.len;
    while (left > 0) {
      let n = left;
      if (max !== undefined) n = Math.min(n, max);
      if (b !== undefined) n = Math.min(n, b - (addr % b));
      out.push({ addr, len: n });
      addr += n;
      left -= n;
    }
  }
  return out;
}

/**
 * Every attribute of the buffer that fails the driver's constraints. With
 * `canBounce` a segment beyond the DMA mask is not a mismatch: it bounces.
 * Segment limits are met by splitting (deviceSegments); the entry count
 * after splitting must fit `maxSegments`, and a device that needs one
 * contiguous range must get exactly one entry.
 */
export function checkBuffer(c: Constraints, f: BufferFacts): Mismatch[] {
  const out: Mismatch[] = [];
  if (c.cache !== undefined && !c.cache.includes(f.cache)) out.push({ attribute: 'cache', required: c.cache, actual: f.cache });
  if (c.regions !== undefined && !c.regions.includes(f.region)) out.push({ attribute: 'regions', required: c.regions, actual: f.region });
  if (c.iommu !== undefined && c.iommu !== null) return out;
  const segs = f.segments;
  const first = segs[0];
  if (c.align !== undefined && first !== undefined && first.addr % c.align !== 0) {
    out.push({ attribute: 'align', required: c.align, actual: alignmentOf(first.addr) });
  }
  if (c.contiguous === true || c.maxSegments === 1) {
    // one range, in one descriptor: the segment limits can't be met by splitting
    if (segs.length > 1) out.push({ attribute: 'contiguous', required: true, actual: `${segs.length} segments` });
    if (c.maxSegmentSize !== undefined) {
      const big = Math.max(0, ...segs.map((s) => s.len));
      if (big > c.maxSegmentSize) out.push({ attribute: 'maxSegmentSize', required: c.maxSegmentSize, actual: big });
    }
    if (c.segmentBoundary !== undefined) {
      const b = c.segmentBoundary;
      const crossing = segs.find((s) => Math.floor(s.addr / b) !== Math.floor((s.addr + s.len - 1) / b));
      if (crossing !== undefined) out.push({ attribute: 'segmentBoundary', required: b, actual: `segment ${hex(crossing.addr)}+${crossing.len} crosses it` });
    }
  } else if (c.maxSegments !== undefined) {
    // scatter-gather: segments are split at the limits; the entries must fit
    const n = deviceSegments(c, segs).length;
    if (n > c.maxSegments) out.push({ attribute: 'maxSegments', required: c.maxSegments, actual: n });
  }
  if (c.dmaMask !== undefined && c.bounce !== true) {
    const limit = maskLimit(c.dmaMask);
    const beyond = segs.find((s) => s.addr + s.len > limit);
    if (beyond !== undefined) {
      out.push({ attribute: 'dmaMask', required: `${c.dmaMask} bits (below ${hex(limit)})`, actual: `segment ends at ${hex(beyond.addr + beyond.len)}` });
    }
  }
  return out;
}

/** What merge and alloc-for know of a pool. */
export interface PoolFacts {
  name: string;
  cache: CachePolicyName;
  region: string;
  contiguous: boolean;
  pageSize: number;
  /** Highest address + 1 the pool can hand out. */
  end: number;
  maxAlign: number;
}

/** Why a pool cannot satisfy merged attributes (empty: it can). */
export function poolMisfits(m: MergedAttributes, p: PoolFacts): Mismatch[] {
  const out: Mismatch[] = [];
  if (!m.cache.includes(p.cache)) out.push({ attribute: 'cache', required: m.cache, actual: p.cache });
  if (m.regions !== null && !m.regions.includes(p.region)) out.push({ attribute: 'regions', required: m.regions, actual: p.region });
  if (m.contiguous && !p.contiguous) out.push({ attribute: 'contiguous', required: true, actual: false });
  if (m.addressLimit !== null && p.end > m.addressLimit) {
    out.push({ attribute: 'dmaMask', required: `below ${hex(m.addressLimit)}`, actual: `pool reaches ${hex(p.end)}` });
  }
  if (m.align > p.maxAlign) out.push({ attribute: 'align', required: m.align, actual: `at most ${p.maxAlign}` });
  return out;
}
