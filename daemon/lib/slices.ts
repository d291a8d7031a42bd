/**
 * Layer daemon/lib/: generic building blocks with no knowledge of buffers —
 * binary heaps, the seeded PRNG, long work in slices (this file), deadline
 * timers, the logger, the digest kept for secrets, the version, the system
 * calls Node lacks (native.ts). It may use only protocol/ (nothing else of
 * the daemon); every other layer may use it, and so may client/.
 *
 * Long work in slices. Work over a whole buffer (a sync of 512 MiB, a
 * device fill, dma_map's cache maintenance, a dead client's teardown) is a
 * generator that yields at safe points; `sliced` runs it for at most
 * SLICE_MS at a time and gives the event loop back in between, so no single
 * request holds up others for more than a few milliseconds. `drain` runs
 * one to the end at once (unit tests, small work).
 */

/** A generator of work: it yields where it may be paused, and returns its result. */
export type Work<T> = Generator<void, T, void>;

/** Longest stretch of work run before the event loop gets a turn. */
export const SLICE_MS = 4;

/** Run work to the end now. */
export function drain<T>(w: Work<T>): T {
  for (;;) {
    const r = w.next();
    if (r.done === true) return r.value;
  }
}

/** Run up to SLICE_MS of work; the result when it finished. */
function slice<T>(w: Work<T>): { done: true; value: T } | { done: false } {
  const t0 = performance.now();
  for (;;) {
    const r = w.next();
    if (r.done === true) return { done: true, value: r.value };
    if (performance.now() - t0 >= SLICE_MS) return { done: false };
  }
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

/**
 * Run work in slices of SLICE_MS. Finished within the first slice, the
 * result comes back at once (no promise); otherwise a promise resolves with
 * it. `check` runs before every later slice and may throw to abandon the
 * work (its client left, the registration it works on was dropped): the
 * generator is closed without running further.
 */
export function sliced<T>(w: Work<T>, check?: () => void): T | Promise<T> {
  const first = slice(w);
  if (first.done) return first.value;
  return (async () => {
    for (;;) {
      await nextTurn();
      try {
        check?.();
      } catch (e) {
        w.return(undefined as T);
        throw e;
      }
      const r = slice(w);
      if (r.done) return r.value;
    }
  })();
}

/**
 * Work the daemon does on its own (a dead client's teardown), queued and run
 * in slices one after the other, in order.
 */
export class Background {
  private readonly queue: Work<void>[] = [];
  private running = false;
  /** Pending jobs, the running one included. */
  get pending(): number {
    return this.queue.length;
  }

  constructor(private readonly onError: (e: unknown) => void) {}

  /** Queue work; it starts in this turn if nothing else is queued. */
  run(w: Work<void>): void {
    this.queue.push(w);
    if (!this.running) void this.loop();
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const w = this.queue[0]!;
        let r: { done: boolean };
        try {
          r = slice(w);
        } catch (e) {
          this.onError(e);
          r = { done: true };
        }
        if (r.done) this.queue.shift();
        if (this.queue.length > 0) await nextTurn();
      }
    } finally {
      this.running = false;
    }
  }

  /** Resolves once everything queued so far has run. */
  async idle(): Promise<void> {
    while (this.running || this.queue.length > 0) await nextTurn();
  }
}
