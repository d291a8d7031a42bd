/**
 * coherency: what the simulated CPU cache and the ownership checker cost.
 *
 * 1. CPU throughput on a 16 MiB write-back ('default') buffer registered with
 *    a non-coherent client driver (attachDriver('bench', {coherent:false})),
 *    with correct, synced access, under checker mode off, warn and strict
 *    (one daemon per mode, all three running, rounds rotating the order):
 *      write: sync start(write) → write 16 MiB → sync end(write)
 *      read:  sync start(read)  → read 16 MiB  → sync end(read)
 *    Bytes of payload per second, the syncs included (they are part of
 *    correct access). warn and strict carry baseline 'off'. `unregistered`:
 *    the same loop on a buffer never registered, in the 'off' daemon — still
 *    the cache model (write-allocate, clean, invalidate), but no device
 *    ownership, so no prefetch on sync end and no checks; baseline 'off'.
 *    Every round checks nothing was recorded (warn/strict) and the data
 *    read back equals the data written.
 *
 * 2. Sync cost (mode warn), 4 KiB vs 64 MiB, both registered with 'bench':
 *      syncEndUs:   the CPU dirtied every line inside start(write); time
 *                   sync end(write) = clean every line + flush WC + the
 *                   device taking ownership (prefetch walk).
 *      syncStartUs: after a device write (device.fill, non-coherent: every
 *                   prefetched line becomes a stale kept copy), time sync
 *                   start(read) = invalidate every line.
 *    Client round trip included (a ping's p50 is shown for reference: for
 *    4 KiB the round trip dominates, so the 64 MiB / 4 KiB ratio sits well
 *    below the 16384 × of the line counts). Median of the repetitions.
 *
 * 3. bystander: a client pings without pause while another loops over a
 *    512 MiB write-back buffer registered with the built-in non-coherent
 *    'video' device: sync start(rw) / sync end(rw) / device.fill of all of
 *    it. pingP99Ms against the same pinger on an idle daemon (baseline
 *    'idle'): long work runs in slices, so a bystander waits at most a
 *    slice, not a whole 512 MiB operation. Also the worst ping and the
 *    time each long op took for the client that asked.
 */
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { DEFAULT_MACHINE } from '../daemon/config/default-machine.js';
import { type BenchArgs, Reporter, median, prng, startDaemon, type Child } from './harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 16 * MiB;
const DRIVER = 'bench';
const MODES = ['off', 'warn', 'strict'] as const;
type Mode = (typeof MODES)[number];

interface Side {
  mode: Mode;
  daemon: Child;
  c: BufferClient;
  h: number;
  /** an unregistered buffer (mode off only) */
  u?: number;
}

async function side(mode: Mode): Promise<Side> {
  const daemon = await startDaemon({ ...DEFAULT_MACHINE, coherency: { mode } });
  const c = await connect({ socket: daemon.socket, name: `bench-coherency-${mode}` });
  await c.attachDriver(DRIVER, { coherent: false });
  const h = (await c.alloc({ pool: 'default', size: SIZE })).handle;
  await c.register(h, DRIVER);
  const s: Side = { mode, daemon, c, h };
  if (mode === 'off') s.u = (await c.alloc({ pool: 'default', size: SIZE })).handle;
  return s;
}

interface Acc {
  wBytes: number;
  wMs: number;
  rBytes: number;
  rMs: number;
}

/** Synced write then synced read of the whole buffer, timed separately; returns the bytes read. */
async function writeRead(c: BufferClient, h: number, data: Buffer, acc: Acc): Promise<Buffer> {
  let t0 = performance.now();
  await c.sync(h, { phase: 'start', access: 'write' });
  await c.write(h, 0, data);
  await c.sync(h, { phase: 'end', access: 'write' });
  let t1 = performance.now();
  acc.wMs += t1 - t0;
  acc.wBytes += data.length;
  t0 = t1;
  await c.sync(h, { phase: 'start', access: 'read' });
  const got = await c.read(h, 0, data.length);
  await c.sync(h, { phase: 'end', access: 'read' });
  t1 = performance.now();
  acc.rMs += t1 - t0;
  acc.rBytes += data.length;
  return got;
}

/** Loop writeRead for at least `ms`. */
async function loop(c: BufferClient, h: number, data: Buffer, acc: Acc, ms: number): Promise<void> {
  const t0 = performance.now();
  do {
    const got = await writeRead(c, h, data, acc);
    if (got[0] !== data[0] || got[got.length - 1] !== data[data.length - 1]) throw new Error('coherency: read back differs from the data written');
  } while (performance.now() - t0 < ms);
}

async function throughput(rep: Reporter, sides: Side[], quick: boolean, smoke: boolean): Promise<string> {
  const data = Buffer.allocUnsafe(SIZE);
  const rnd = prng(7);
  for (let i = 0; i < data.length; i++) data[i] = 1 + Math.floor(rnd() * 255);
  const off = sides.find((s) => s.mode === 'off')!;
  const tasks: { name: string; c: BufferClient; h: number; n: number }[] = sides.map((s) => ({ name: s.mode, c: s.c, h: s.h, n: 0 }));
  tasks.push({ name: 'unregistered', c: off.c, h: off.u!, n: 0 });
  // warm-up, with a full check that the bytes really round-trip
  for (const t of tasks) {
    const got = await writeRead(t.c, t.h, data, { wBytes: 0, wMs: 0, rBytes: 0, rMs: 0 });
    if (!got.equals(data)) throw new Error(`coherency: ${t.name}: data read back differs from data written`);
  }
  const rounds = smoke ? 1 : quick ? 3 : 8;
  const ms = (smoke ? 5 : quick ? 300 : 3000) / rounds; // smoke: the loop still runs writeRead at least once
  const wr = tasks.map(() => [] as number[]);
  const rr = tasks.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < tasks.length; k++) {
      const i = (r + k) % tasks.length;
      const acc: Acc = { wBytes: 0, wMs: 0, rBytes: 0, rMs: 0 };
      await loop(tasks[i]!.c, tasks[i]!.h, data, acc, ms);
      wr[i]!.push(acc.wBytes / (acc.wMs / 1000));
      rr[i]!.push(acc.rBytes / (acc.rMs / 1000));
      tasks[i]!.n += acc.wBytes / SIZE;
    }
  }
  for (const s of sides) {
    const v = await s.c.violations({ limit: 1 });
    if (v.total !== 0) throw new Error(`coherency: mode ${s.mode} recorded ${v.total} violation(s) for correct access: ${v.violations[0]?.message}`);
  }
  const w = wr.map(median);
  const rd = rr.map(median);
  tasks.forEach((t, i) => {
    rep.figure(t.name, 'writeBytesPerSec', w[i]!, 'bytes/s', i === 0 ? undefined : { name: 'off', value: w[0]! });
    rep.figure(t.name, 'readBytesPerSec', rd[i]!, 'bytes/s', i === 0 ? undefined : { name: 'off', value: rd[0]! });
  });
  return `median of ${rounds} rounds × ${ms} ms per case, rotating; ${tasks.map((t) => `${t.name} ${t.n}`).join(', ')} × 16 MiB written`;
}

/** Median sync end(write) and sync start(read) µs for one buffer size. */
async function syncCost(c: BufferClient, size: number, reps: number, warm: number): Promise<{ end: number; start: number; cleaned: number; invalidated: number }> {
  const h = (await c.alloc({ pool: 'default', size })).handle;
  await c.register(h, DRIVER);
  const data = Buffer.alloc(size, 0xa5);
  const ends: number[] = [];
  const starts: number[] = [];
  let cleaned = 0;
  let invalidated = 0;
  for (let i = 0; i < warm + reps; i++) {
    await c.sync(h, { phase: 'start', access: 'write' });
    data[0] = 1 + (i & 0x7f); // the whole buffer is written each time: every line dirty
    await c.write(h, 0, data);
    let t0 = process.hrtime.bigint();
    const e = await c.sync(h, { phase: 'end', access: 'write' });
    let us = Number(process.hrtime.bigint() - t0) / 1000;
    if (i >= warm) ends.push(us);
    cleaned = e.cleaned;
    await c.device.fill(DRIVER, h, 0, size, 0x10 + (i & 0x3f));
    t0 = process.hrtime.bigint();
    const s = await c.sync(h, { phase: 'start', access: 'read' });
    us = Number(process.hrtime.bigint() - t0) / 1000;
    if (i >= warm) starts.push(us);
    invalidated = s.invalidated;
    await c.sync(h, { phase: 'end', access: 'read' });
  }
  const lines = size / 64;
  if (cleaned !== lines || invalidated !== lines) throw new Error(`coherency: ${size} bytes: cleaned ${cleaned}, invalidated ${invalidated} lines, expected ${lines}`);
  await c.unregister(h, DRIVER);
  await c.close(h);
  return { end: median(ends), start: median(starts), cleaned, invalidated };
}

async function syncBench(rep: Reporter, s: Side, quick: boolean, smoke: boolean): Promise<string> {
  const pings: number[] = [];
  for (let i = 0; i < (smoke ? 5 : 200); i++) {
    const t0 = process.hrtime.bigint();
    await s.c.ping();
    pings.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const small = await syncCost(s.c, 4 * KiB, smoke ? 3 : quick ? 200 : 1000, smoke ? 1 : quick ? 50 : 200);
  const big = await syncCost(s.c, 64 * MiB, smoke ? 1 : quick ? 2 : 7, quick ? 0 : 1);
  rep.figure('4KiB', 'syncEndUs', small.end, 'us');
  rep.figure('4KiB', 'syncStartUs', small.start, 'us');
  rep.figure('64MiB', 'syncEndUs', big.end, 'us', { name: '4KiB', value: small.end });
  rep.figure('64MiB', 'syncStartUs', big.start, 'us', { name: '4KiB', value: small.start });
  const v = await s.c.violations({ limit: 1 });
  if (v.total !== 0) throw new Error(`coherency: sync bench recorded ${v.total} violation(s): ${v.violations[0]?.message}`);
  return `lines: 64 vs ${big.cleaned}; ping p50 ${median(pings).toFixed(1)} us (round trip included in every sync figure)`;
}

/** Ping p99 of a client while another loops over a big buffer (see 3. above), against the same on an idle daemon. */
async function bystander(rep: Reporter, quick: boolean, smoke: boolean): Promise<void> {
  const daemon = await startDaemon(DEFAULT_MACHINE);
  try {
    const by = await connect({ socket: daemon.socket, name: 'bystander', useCookie: false });
    const worker = await connect({ socket: daemon.socket, name: 'worker', useCookie: false });
    const size = (smoke ? 16 : quick ? 128 : 512) * MiB;
    const ms = smoke ? 30 : quick ? 1500 : 6000; // smoke: the load loop still runs one sync pair and one fill (it stops only between rounds)
    const pings = async (untilMs: number): Promise<number[]> => {
      const out: number[] = [];
      const end = performance.now() + untilMs;
      while (performance.now() < end) {
        const t0 = performance.now();
        await by.ping();
        out.push(performance.now() - t0);
      }
      return out.sort((a, b) => a - b);
    };
    const p99 = (xs: number[]) => xs[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
    const idle = await pings(ms);
    const h = (await worker.alloc({ pool: 'default', size })).handle;
    await worker.register(h, 'video');
    const opMs: Record<string, number[]> = { sync: [], fill: [] };
    let stop = false;
    const load = (async () => {
      while (!stop) {
        let t0 = performance.now();
        await worker.sync(h, { phase: 'start', access: 'rw' });
        await worker.sync(h, { phase: 'end', access: 'rw' });
        opMs['sync']!.push(performance.now() - t0);
        t0 = performance.now();
        await worker.device.fill('video', h, 0, size, 0x5a);
        opMs['fill']!.push(performance.now() - t0);
      }
    })();
    const busy = await pings(ms);
    stop = true;
    await load;
    rep.figure('idle', 'pingP99Ms', p99(idle), 'ms');
    rep.figure('idle', 'pingMaxMs', idle[idle.length - 1]!, 'ms');
    rep.figure('bystander', 'pingP99Ms', p99(busy), 'ms', { name: 'idle', value: p99(idle) });
    rep.figure('bystander', 'pingMaxMs', busy[busy.length - 1]!, 'ms', { name: 'idle', value: idle[idle.length - 1]! });
    rep.figure('bystander', 'syncPairMs', median(opMs['sync']!), 'ms');
    rep.figure('bystander', 'fillMs', median(opMs['fill']!.length > 0 ? opMs['fill']! : [0]), 'ms');
    await worker.disconnect();
    await by.disconnect();
  } finally {
    await daemon.stop();
  }
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const smoke = args.smoke === true;
  const rep = new Reporter('coherency');
  const sides: Side[] = [];
  try {
    for (const m of MODES) sides.push(await side(m));
    const t = await throughput(rep, sides, args.quick, smoke);
    const s = await syncBench(rep, sides.find((x) => x.mode === 'warn')!, args.quick, smoke);
    await bystander(rep, args.quick, smoke);
    rep.table(
      `coherency: synced CPU write/read of a 16 MiB write-back buffer registered with a non-coherent driver, per checker mode (ratio = mode / off; unregistered = no ownership, mode off); ${t}\n` +
        `sync cost in mode warn, median (ratio = 64 MiB / 4 KiB); ${s}`,
    );
  } finally {
    for (const s of sides) {
      await s.c.disconnect();
      await s.daemon.stop();
    }
  }
  return rep;
}
