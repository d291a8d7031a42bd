/**
 * What a dashboard's snapshot carries beyond the status object: each pool's
 * map (chunks and direct blocks by arena, coloured by use), where buffers
 * lie (to name the buffer under the pointer), each zone laid out by
 * physical address, the newest buffers and the recent violations.
 */
import type { DaemonContext } from '../session/context.js';
import type { SharedBuffer } from '../buffers/handles.js';
import type { PhysBuffer } from '../alloc/pool.js';
import { zoneMaps } from '../alloc/zonemap.js';
import { PAGE } from '../memory/physmem.js';
import { buildStatus } from './status.js';
import { graphOf } from './graph.js';
import { drain } from '../lib/slices.js';

/** Buffers listed in a dashboard snapshot (the newest). */
export const SNAPSHOT_BUFFERS = 500;
/** Buffers in the dashboard's ownership graph (the newest). */
export const SNAPSHOT_GRAPH_BUFFERS = 200;
/** Buffer placements sent at most (large and direct buffers first, then the newest small ones). */
export const SNAPSHOT_PLACEMENTS = 5000;

/** The pool maps the dashboard draws: every chunk and direct block of every pool, by use, with the owner of its arena. */
export function poolMaps(ctx: DaemonContext, bufs: PhysBuffer[]) {
  return [...ctx.machine.pools.values()].map((p) => ({ name: p.name, pageSize: p.pageSize, cache: p.cfg.cache, arena: p.cfg.arena, chunks: p.map(bufs) }));
}

/**
 * Where buffers lie: per pool, [address, bytes, buffer, creator client]
 * for each physical piece (a direct buffer's blocks; a small or large
 * buffer's one run), at most SNAPSHOT_PLACEMENTS in all.
 */
export function placements(bufs: PhysBuffer[]): { byPool: Record<string, [number, number, number, number][]>; omitted: number } {
  const byPool: Record<string, [number, number, number, number][]> = {};
  const big = bufs.filter((b) => b.kind !== 'small');
  const small = bufs.filter((b) => b.kind === 'small');
  let left = SNAPSHOT_PLACEMENTS;
  let omitted = 0;
  for (const b of [...big, ...small.reverse()]) {
    const pieces: [number, number][] = b.kind === 'direct' ? b.blocks.map((k) => [k.pfn * PAGE, k.npages * PAGE]) : b.addr >= 0 ? [[b.addr, b.usize]] : [];
    if (pieces.length > left) {
      omitted++;
      continue;
    }
    left -= pieces.length;
    const list = (byPool[b.pool.name] ??= []);
    for (const [addr, bytes] of pieces) list.push([addr, bytes, b.id, b.owner]);
  }
  for (const l of Object.values(byPool)) l.sort((x, y) => x[0] - y[0]);
  return { byPool, omitted };
}

/** What event subscribers get as a snapshot (dashboards also get the maps, the newest buffers and recent violations). */
export function snapshot(ctx: DaemonContext, full: boolean): Record<string, unknown> {
  const st = buildStatus(ctx) as unknown as Record<string, unknown>;
  if (!full) return st;
  // the newest SNAPSHOT_BUFFERS buffers (ids only grow: the map is in id order), so a million buffers cost a skip, not a frame
  const skip = Math.max(0, ctx.buffers.size - SNAPSHOT_BUFFERS);
  const newest: SharedBuffer[] = [];
  let i = 0;
  for (const b of ctx.buffers.values()) if (i++ >= skip) newest.push(b);
  const buffers = newest.map((b) => ({
    buffer: b.id,
    pool: b.phys.pool.name,
    size: b.phys.size,
    kind: b.phys.kind,
    creator: b.creator,
    holders: [...b.holders.keys()],
    refs: { ...b.refs },
    registrations: ctx.drivers.registrationsOf(b).map((r) => r.driver.name),
  }));
  const bufs = [...ctx.machine.allBuffers()];
  return {
    ...st,
    maps: poolMaps(ctx, bufs),
    placements: placements(bufs),
    zoneMaps: zoneMaps(ctx.machine),
    buffersList: buffers,
    violationsRecent: ctx.coherency.violations({ limit: 50 }),
    // the ownership graph of the newest buffers (bounded: at most SNAPSHOT_GRAPH_BUFFERS, and the handle tables of their holders)
    graph: drain(graphOf(ctx, newest.slice(-SNAPSHOT_GRAPH_BUFFERS), ctx.buffers.size > SNAPSHOT_GRAPH_BUFFERS)),
  };
}
