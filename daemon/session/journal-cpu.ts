/**
 * CPU writes through real mappings, for the journal: a process that maps a
 * buffer (map with a nonce, exportFd) writes its bytes without a request,
 * so the socket never carries them. With recordData the journal looks at
 * every mapped buffer's CPU view (dma/shared.ts, Shm.cpu) before each
 * request and journals the pages that changed since it last looked (after
 * the previous response: what the daemon itself wrote is not a client's)
 * as `cpu` entries, which a replay writes into the same buffer's view
 * before the same request. The look is bounded: past `maxBytes` of mapped
 * buffers it stops and says so once (a `cpu` entry with `untracked`).
 */
import type { Backing } from '../memory/backing.js';

const PAGE = 4096;

export interface CpuView {
  buffer: number;
  cpu: Backing;
  bytes: number;
}

export interface CpuChange {
  buffer: number;
  /** Byte offset of the first changed page. */
  off: number;
  data: Buffer;
}

const ZERO = new Uint8Array(PAGE);

export class CpuTracker {
  private readonly base = new Map<number, Buffer>();
  /** Mapped bytes were past maxBytes: no longer tracked (said once). */
  overflowed = false;

  constructor(
    private readonly views: () => CpuView[],
    private readonly maxBytes: number,
  ) {}

  /**
   * Pages that changed since the last scan, in runs; every scan makes the
   * current content the new baseline. `collect` false only re-baselines.
   */
  scan(collect: boolean): CpuChange[] | 'overflow' {
    if (this.overflowed) return [];
    const views = this.views();
    let total = 0;
    for (const v of views) total += v.bytes;
    if (total > this.maxBytes) {
      this.overflowed = true;
      this.base.clear();
      return 'overflow';
    }
    const out: CpuChange[] = [];
    const live = new Set<number>();
    for (const v of views) {
      live.add(v.buffer);
      let base = this.base.get(v.buffer);
      const fresh = base === undefined;
      if (base === undefined) this.base.set(v.buffer, (base = Buffer.alloc(v.bytes)));
      let run: { off: number; pages: Uint8Array[] } | null = null;
      const flush = () => {
        if (run !== null && collect) out.push({ buffer: v.buffer, off: run.off, data: Buffer.concat(run.pages) });
        run = null;
      };
      for (let i = 0; i < v.bytes / PAGE; i++) {
        const now = v.cpu.peek(i) ?? ZERO;
        const was = base.subarray(i * PAGE, (i + 1) * PAGE);
        if (Buffer.compare(now, was) === 0) {
          flush();
          continue;
        }
        was.set(now);
        // a buffer seen for the first time: its content is the daemon's (map promoted it), not a write
        if (fresh) continue;
        run ??= { off: i * PAGE, pages: [] };
        run.pages.push(Buffer.from(now));
      }
      flush();
    }
    for (const id of this.base.keys()) if (!live.has(id)) this.base.delete(id);
    return out;
  }
}
