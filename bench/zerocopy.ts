/**
 * zerocopy: what real shared memory buys, each figure against a baseline in
 * the same run.
 *
 * - map: 64 MiB written into / read out of a mapping (writeBytesPerSec,
 *   readBytesPerSec), baseline 'memcpy' (a Buffer copy of the same size).
 *   Median of REPS after a warm-up that faults every page in.
 * - cross-process: framesPerSec of 8 MiB frames from a producer process to
 *   a consumer process that checks every byte, handed over with send()
 *   (bench/zerocopy-child.ts): through mappings, baseline 'rpc' (the same
 *   pipeline with write()/read()).
 * - fd: exportMapLatencyUs, exportFd + SCM_RIGHTS to another process + its
 *   mmap of the fd + a one-byte answer, baseline 'send' (send() of the
 *   handle, its 'handle' event in the other process + the same answer).
 *   p50, unpipelined.
 * - alloc-map: latencyUs of alloc + map + unmap + close of a 4 KiB buffer,
 *   unpipelined, baseline 'memfd' (memfd_create + ftruncate + mmap + munmap +
 *   close in this process, through the same native calls); and
 *   fourPingsLatencyUs, four unpipelined pings: the round trips alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import { native, type Native } from '../daemon/lib/native.js';
import { type BenchArgs, Reporter, ROOT, median, percentile, startDaemon, track } from './harness.js';

const MiB = 1024 * 1024;

interface Kid {
  proc: ChildProcess;
  line(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function child(args: string[], fd3?: number): Kid {
  const stdio: ('ignore' | 'pipe' | 'inherit' | number)[] = ['ignore', 'pipe', 'inherit'];
  if (fd3 !== undefined) stdio.push(fd3);
  const proc = track(spawn(process.execPath, [join(ROOT, 'dist', 'bench', 'zerocopy-child.js'), ...args], { stdio }));
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
    }
    for (const w of waiters.splice(0)) w();
  });
  let exited = false;
  proc.once('exit', () => {
    exited = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    proc,
    async line(pred) {
      for (;;) {
        const l = lines.find(pred);
        if (l !== undefined) return l;
        if (exited) throw new Error(`zerocopy-child ${args[0]} exited with ${proc.exitCode} before the line wanted`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

/** Bytes per second of `copy` over `bytes`, median of `reps` after one warm-up. */
function rate(bytes: number, reps: number, copy: () => void): number {
  copy();
  const s: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    copy();
    s.push(bytes / ((performance.now() - t0) / 1000));
  }
  return median(s);
}

async function mapCase(rep: Reporter, c: BufferClient, reps: number): Promise<void> {
  const size = 64 * MiB;
  const src = Buffer.alloc(size, 0xa5);
  const dst = Buffer.alloc(size);
  const h = await c.alloc({ pool: 'default', size, align: 4096 });
  const m = await c.map(h.handle);
  const bytes = m.bytes;
  // interleaved, so machine noise falls on both
  const w = rate(size, reps, () => bytes.set(src));
  const wBase = rate(size, reps, () => dst.set(src));
  const r = rate(size, reps, () => dst.set(bytes));
  const rBase = rate(size, reps, () => dst.set(src));
  if (Buffer.compare(dst, src) !== 0) throw new Error('the mapping did not give back what was written');
  await m.unmap();
  await c.close(h.handle);
  rep.figure('map', 'writeBytesPerSec', w, 'bytes/s', { name: 'memcpy', value: wBase });
  rep.figure('map', 'readBytesPerSec', r, 'bytes/s', { name: 'memcpy', value: rBase });
}

async function frames(socket: string, mode: string, n: number, frameBytes: number): Promise<number> {
  const cons = child(['consumer', socket, mode, String(n), String(frameBytes)]);
  const ready = await cons.line((l) => l['ready'] === true);
  const prod = child(['producer', socket, mode, String(n), String(frameBytes), String(ready['id'])]);
  const done = await prod.line((l) => l['frames'] !== undefined);
  const checked = await cons.line((l) => l['checked'] !== undefined);
  if (checked['bad'] !== 0) throw new Error(`${mode}: the consumer found ${String(checked['bad'])} bad frames of ${n}`);
  return n / (done['seconds'] as number);
}

async function fdLatency(socket: string, c: BufferClient, sys: Native, mode: 'fd' | 'send', n: number): Promise<number> {
  const [mine, theirs] = sys.socketpair();
  const kid = child(['fd-receiver', socket, mode], theirs);
  sys.close(theirs);
  const ready = await kid.line((l) => l['ready'] === true);
  const h = await c.alloc({ pool: 'default', size: 64 * 1024, align: 4096 });
  const lat: number[] = [];
  const tick = Buffer.from('x');
  try {
    for (let i = 0; i < n + n / 10; i++) {
      const t0 = performance.now();
      if (mode === 'fd') {
        const x = await c.exportFd(h.handle);
        sys.sendFds(mine, tick, [x.fd]);
        sys.close(x.fd);
      } else {
        await c.send(h.handle, ready['id'] as number);
      }
      sys.recvFds(mine, 16, false); // the other process's answer (blocking: nothing else runs here meanwhile)
      if (i >= n / 10) lat.push((performance.now() - t0) * 1000);
    }
  } finally {
    sys.close(mine);
    kid.proc.kill('SIGTERM');
    await c.close(h.handle);
  }
  return percentile(lat.sort((a, b) => a - b), 50);
}

async function allocMap(c: BufferClient, sys: Native, n: number, warm: number): Promise<{ broker: number; memfd: number; pings: number }> {
  const broker = async () => {
    const h = await c.alloc({ pool: 'default', size: 4096, align: 4096 });
    const m = await c.map(h.handle);
    m.bytes[0] = 1;
    await m.unmap();
    await c.close(h.handle);
  };
  const own = () => {
    const fd = sys.memfd('bench', 4096);
    const m = sys.map(fd, 0, 4096, true);
    m.bytes[0] = 1;
    sys.unmap(m);
    sys.close(fd);
  };
  // the transport's floor: four round trips that do nothing
  const pings = async () => {
    for (let k = 0; k < 4; k++) await c.ping();
  };
  const a: number[] = [];
  const b: number[] = [];
  const p: number[] = [];
  for (let i = 0; i < warm; i++) {
    await broker();
    own();
  }
  // in blocks, alternating
  for (let k = 0; k < 10; k++) {
    for (let i = 0; i < n / 10; i++) {
      const t0 = performance.now();
      await broker();
      a.push((performance.now() - t0) * 1000);
    }
    for (let i = 0; i < n / 10; i++) {
      const t0 = performance.now();
      own();
      b.push((performance.now() - t0) * 1000);
    }
    for (let i = 0; i < n / 10; i++) {
      const t0 = performance.now();
      await pings();
      p.push((performance.now() - t0) * 1000);
    }
  }
  return { broker: median(a), memfd: median(b), pings: median(p) };
}

export async function run(args: BenchArgs): Promise<Reporter> {
  const smoke = args.smoke === true;
  const rep = new Reporter('zerocopy');
  const sys = native();
  if (sys === null) throw new Error('the zerocopy benchmark needs the native system calls (koffi)');
  const daemon = await startDaemon();
  try {
    const c = await connect({ socket: daemon.socket, accept: 'any' });
    await mapCase(rep, c, smoke ? 1 : args.quick ? 3 : 7);
    const frameBytes = 8 * MiB;
    const mapped = await frames(daemon.socket, 'map', smoke ? 2 : args.quick ? 60 : 300, frameBytes);
    const rpc = await frames(daemon.socket, 'rpc', smoke ? 2 : args.quick ? 15 : 60, frameBytes);
    rep.figure('cross-process', 'framesPerSec', mapped, 'frames/s', { name: 'rpc', value: rpc });
    const n = smoke ? 10 : args.quick ? 300 : 2000;
    const fd = await fdLatency(daemon.socket, c, sys, 'fd', n);
    const send = await fdLatency(daemon.socket, c, sys, 'send', n);
    rep.figure('fd', 'exportMapLatencyUs', fd, 'us', { name: 'send', value: send });
    const am = await allocMap(c, sys, smoke ? 10 : args.quick ? 1000 : 5000, smoke ? 1 : 200);
    rep.figure('alloc-map', 'latencyUs', am.broker, 'us', { name: 'memfd', value: am.memfd });
    // four requests: their round trips alone, for scale (the part of the ratio the transport sets)
    rep.figure('alloc-map', 'fourPingsLatencyUs', am.pings, 'us', { name: 'memfd', value: am.memfd });
    await c.disconnect();
  } finally {
    await daemon.stop();
  }
  rep.table('zerocopy: mappings, fds and frames (ratio = bufferd / baseline)');
  return rep;
}
