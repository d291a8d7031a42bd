/**
 * What a replay observed, for "would last night's workload fit with this
 * config?": requests whose outcome changed (now failing, grouped by op and
 * error code, with the first one's message; now succeeding), the peak use of
 * hugepages (per size and region), pools and regions, and at the end how
 * fragmented each region is (largest free block against free bytes).
 * Peaks are sampled after every op that can take or give back memory.
 */
import { isPlainMap } from '../../protocol/codec.js';
import type { DaemonContext } from '../session/context.js';
import { buildStatus } from '../ops/status.js';

/** Ops after which memory use may have changed. */
const MUTATING = new Set(['alloc', 'close', 'hugepages.set', 'import', 'importFd', 'register', 'unregister', 'reload', 'driver.detach', 'send', 'dup', 'map', 'unmap']);

export interface OutcomeChange {
  op: string;
  /** The error code now (now failing) or before (now succeeding). */
  code: string;
  count: number;
  /** The first such request: its place in the journal, its client, the error message. */
  first: { request: number; client: number; message: string };
}

export interface ReplaySummary {
  divergences: number;
  nowFail: OutcomeChange[];
  nowSucceed: OutcomeChange[];
  peaks: {
    hugepages: { size: number; region: string; total: number; peakInUse: number }[];
    pools: { name: string; peakAllocated: number; peakActive: number; maxBytes: number | null }[];
    regions: { name: string; size: number; peakUsed: number }[];
  };
  end: { regions: { name: string; free: number; largestFree: number; fragmentation: number }[]; liveBuffers: number };
}

type Err = { code: string; message: string } | null;

function errorOf(r: unknown): Err {
  if (!isPlainMap(r) || !isPlainMap(r['error'])) return null;
  return { code: String(r['error']['code']), message: String(r['error']['message']) };
}

export class Observer {
  private divergences = 0;
  private readonly fail = new Map<string, OutcomeChange>();
  private readonly succeed = new Map<string, OutcomeChange>();
  private readonly huge = new Map<string, { size: number; region: string; total: number; peakInUse: number }>();
  private readonly pools = new Map<string, { name: string; peakAllocated: number; peakActive: number; maxBytes: number | null }>();
  private readonly regions = new Map<string, { name: string; size: number; peakUsed: number }>();

  constructor(private readonly ctx: DaemonContext) {
    this.sample();
  }

  diverged(): void {
    this.divergences++;
  }

  /** One request's recorded and replayed responses (journal form). */
  outcome(op: string, request: number, client: number, recorded: unknown, replayed: unknown): void {
    const a = errorOf(recorded);
    const b = errorOf(replayed);
    if (a === null && b !== null) bump(this.fail, op, b.code, request, client, b.message);
    else if (a !== null && b === null) bump(this.succeed, op, a.code, request, client, a.message);
    if (MUTATING.has(op)) this.sample();
  }

  /** Record the current use where it is a new peak. */
  sample(): void {
    const st = buildStatus(this.ctx);
    for (const h of st.hugepages) {
      const k = `${h.region}/${h.size}`;
      const cur = this.huge.get(k) ?? { size: h.size, region: h.region, total: h.total, peakInUse: 0 };
      cur.total = Math.max(cur.total, h.total);
      cur.peakInUse = Math.max(cur.peakInUse, h.inUse);
      this.huge.set(k, cur);
    }
    for (const p of st.pools) {
      const cur = this.pools.get(p.name) ?? { name: p.name, peakAllocated: 0, peakActive: 0, maxBytes: p.maxBytes };
      cur.peakAllocated = Math.max(cur.peakAllocated, p.allocated);
      cur.peakActive = Math.max(cur.peakActive, p.active);
      this.pools.set(p.name, cur);
    }
    for (const r of st.memory.regions) {
      const cur = this.regions.get(r.name) ?? { name: r.name, size: r.size, peakUsed: 0 };
      cur.peakUsed = Math.max(cur.peakUsed, r.size - r.free);
      this.regions.set(r.name, cur);
    }
  }

  summary(): ReplaySummary {
    const st = buildStatus(this.ctx);
    // in journal order of their first request: a cause (ENOMEM) comes before its consequences (EBADF)
    const byCount = (a: OutcomeChange, b: OutcomeChange) => a.first.request - b.first.request;
    return {
      divergences: this.divergences,
      nowFail: [...this.fail.values()].sort(byCount),
      nowSucceed: [...this.succeed.values()].sort(byCount),
      peaks: { hugepages: [...this.huge.values()], pools: [...this.pools.values()], regions: [...this.regions.values()] },
      end: {
        regions: st.memory.regions.map((r) => ({
          name: r.name,
          free: r.free,
          largestFree: r.largestFree,
          // 0: all free memory in one block; near 1: free memory in small pieces
          fragmentation: r.free === 0 ? 0 : Math.round((1 - r.largestFree / r.free) * 1000) / 1000,
        })),
        liveBuffers: st.buffers.live,
      },
    };
  }
}

function bump(m: Map<string, OutcomeChange>, op: string, code: string, request: number, client: number, message: string): void {
  const k = `${op} ${code}`;
  const cur = m.get(k);
  if (cur !== undefined) cur.count++;
  else m.set(k, { op, code, count: 1, first: { request, client, message } });
}
