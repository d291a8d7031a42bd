/**
 * Active cache lines: which live registrations touch which cache line, to
 * find two buffers sharing a line (kernel/dma/debug.c: the
 * dma_active_cacheline radix tree, active_cacheline_insert and its
 * "cacheline tracking EEXIST, overlapping mappings aren't supported").
 * Two buffers in one line can't both be given to a non-coherent device
 * that writes: the CPU cleaning one buffer's line writes the other's stale
 * bytes over what the device wrote there.
 *
 * As debug.c: a to-device registration is not tracked (the device does not
 * write memory: "this mitigates legitimate usages of overlapping
 * mappings"). Unlike debug.c, which keys each mapping (each scatterlist
 * entry) by its first line only (to_cacheline_number), bufferd keys both
 * edge lines of every physical segment, so an overlap at a segment's last
 * line is found too: two distinct buffers can only share a line at an edge
 * of a segment (a line inside a segment is wholly its buffer's), and a
 * segment whose edges are line-aligned shares none. The same buffer
 * registered with several devices is not an overlap here (bufferd's
 * ownership model covers it), nor are two coherent devices (they snoop:
 * nothing is lost). Pure.
 */
/** What the tracking needs of a registration (drivers.ts's Registration). */
export interface Mapped {
  readonly buffer: { readonly phys: { readonly segments: readonly { addr: number; len: number }[] } };
  readonly driver: { readonly constraints: { readonly coherent?: boolean | undefined } };
  readonly direction: 'bidirectional' | 'to-device' | 'from-device';
  readonly dying: boolean;
}

export class ActiveCachelines<Registration extends Mapped> {
  private readonly lines = new Map<number, Set<Registration>>();

  constructor(readonly line: number) {}

  /** Line numbers at the unaligned edges of a buffer's segments (the only lines it can share). */
  edgeLines(segments: readonly { addr: number; len: number }[]): number[] {
    const out = new Set<number>();
    for (const s of segments) {
      if (s.len <= 0) continue;
      if (s.addr % this.line !== 0) out.add(Math.floor(s.addr / this.line));
      if ((s.addr + s.len) % this.line !== 0) out.add(Math.floor((s.addr + s.len - 1) / this.line));
    }
    return [...out];
  }

  private tracked(r: Registration): boolean {
    return r.direction !== 'to-device';
  }

  /** Live registrations of other buffers sharing a cache line with r, where one of the two devices is non-coherent: [line address, registration]. */
  overlaps(r: Registration): [number, Registration][] {
    if (!this.tracked(r)) return [];
    const out: [number, Registration][] = [];
    for (const ln of this.edgeLines(r.buffer.phys.segments)) {
      for (const o of this.lines.get(ln) ?? []) {
        if (o.buffer === r.buffer || o.dying) continue;
        if (r.driver.constraints.coherent === true && o.driver.constraints.coherent === true) continue;
        out.push([ln * this.line, o]);
      }
    }
    return out;
  }

  insert(r: Registration): void {
    if (!this.tracked(r)) return;
    for (const ln of this.edgeLines(r.buffer.phys.segments)) {
      let set = this.lines.get(ln);
      if (set === undefined) this.lines.set(ln, (set = new Set()));
      set.add(r);
    }
  }

  remove(r: Registration): void {
    if (!this.tracked(r)) return;
    for (const ln of this.edgeLines(r.buffer.phys.segments)) {
      const set = this.lines.get(ln);
      if (set === undefined) continue;
      set.delete(r);
      if (set.size === 0) this.lines.delete(ln);
    }
  }

  /** Lines tracked (for tests and status). */
  get size(): number {
    return this.lines.size;
  }
}
