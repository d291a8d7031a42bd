/**
 * The violation log of the coherency checker, as dma-debug's error reports:
 * every misuse of the streaming-DMA rules is numbered, kept in a bounded
 * ring (newest last), counted by kind, and handed to a reporter. Pure.
 */
import { VIOLATION_KINDS, type ViolationKind } from '../../protocol/ops/coherency.js';

export { VIOLATION_KINDS, type ViolationKind };
export type CheckMode = 'off' | 'warn' | 'strict';

export interface Who {
  id: number;
  name: string | null;
}

export interface Violation {
  seq: number;
  timeMs: number;
  kind: ViolationKind;
  client: Who;
  buffer: number;
  driver: string | null;
  op: string;
  range: { offset: number; length: number };
  mode: CheckMode;
  message: string;
}

/** A bounded ring of violations (O(1) per record) with counts by kind. */
export class ViolationLog {
  private readonly ring: (Violation | undefined)[];
  private head = 0;
  private seq = 0;
  readonly counts = new Map<ViolationKind, number>();

  constructor(size: number) {
    this.ring = new Array<Violation | undefined>(Math.max(1, size));
  }

  /** Number the violation, keep it (dropping the oldest past the ring's size) and count it. */
  record(v: Omit<Violation, 'seq'>): Violation {
    const full: Violation = { seq: ++this.seq, ...v };
    this.ring[this.head] = full;
    this.head = (this.head + 1) % this.ring.length;
    this.counts.set(v.kind, (this.counts.get(v.kind) ?? 0) + 1);
    return full;
  }

  /** Violations kept, oldest first, filtered by kind and buffer; `limit` keeps the newest. */
  list(filter: { kind?: string; buffer?: number; limit?: number } = {}): Violation[] {
    const out: Violation[] = [];
    const n = this.ring.length;
    for (let i = 0; i < n; i++) {
      const v = this.ring[(this.head + i) % n];
      if (v === undefined) continue;
      if (filter.kind !== undefined && v.kind !== filter.kind) continue;
      if (filter.buffer !== undefined && v.buffer !== filter.buffer) continue;
      out.push(v);
    }
    return filter.limit !== undefined ? out.slice(-filter.limit) : out;
  }

  /** Violations recorded since start (kept or not). */
  get total(): number {
    return this.seq;
  }

  byKind(): Record<string, number> {
    const o: Record<string, number> = {};
    for (const k of VIOLATION_KINDS) o[k] = this.counts.get(k) ?? 0;
    return o;
  }
}
