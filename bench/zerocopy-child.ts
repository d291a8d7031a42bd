/**
 * Child processes of the `zerocopy` benchmark.
 *
 *   node dist/bench/zerocopy-child.js consumer SOCKET MODE FRAMES FRAME_BYTES
 *   node dist/bench/zerocopy-child.js producer SOCKET MODE FRAMES FRAME_BYTES CONSUMER
 *   node dist/bench/zerocopy-child.js fd-receiver SOCKET MODE     (fd 3: a socketpair)
 *
 * Frames (MODE 'map' or 'rpc'): the producer keeps a ring of RING buffers.
 * For frame i it writes pattern i % 4 (with i in the first 4 bytes) into a
 * free buffer — through its mapping, or with write() — and send()s it to the
 * consumer, which checks every byte against the same pattern — through its
 * own mapping (made once per buffer), or with read() — and sends the buffer
 * back, which frees the slot. The producer prints {frames, seconds}; the
 * consumer prints {checked, bad}.
 *
 * fd-receiver (MODE 'fd'): each message on fd 3 carries a buffer fd; map it,
 * touch its first byte, unmap, close, answer one byte. MODE 'send': answer
 * one byte on fd 3 for each 'handle' event, then close the handle.
 */
import { connect } from '../client/connect.js';
import type { BufferClient } from '../client/client.js';
import type { Mapping } from '../client/mapping.js';
import type { HandleEvent } from '../protocol/results.js';
import { native } from '../daemon/lib/native.js';
import { prng } from './harness.js';

const RING = 3;
const PATTERNS = 4;

function out(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}

/** The same four frame patterns in producer and consumer. */
function patterns(frameBytes: number): Buffer[] {
  return Array.from({ length: PATTERNS }, (_, k) => {
    const r = prng(1000 + k);
    const b = Buffer.alloc(frameBytes);
    for (let i = 0; i + 4 <= frameBytes; i += 4) b.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
    return b;
  });
}

/** 'handle' events, one at a time, in order. */
function inbox(c: BufferClient): () => Promise<HandleEvent> {
  const queued: HandleEvent[] = [];
  let waiter: ((e: HandleEvent) => void) | null = null;
  c.on('handle', (ev) => {
    if (waiter !== null) {
      const w = waiter;
      waiter = null;
      w(ev);
    } else queued.push(ev);
  });
  return () => (queued.length > 0 ? Promise.resolve(queued.shift()!) : new Promise((r) => (waiter = r)));
}

const view = (m: Mapping): Buffer => Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);

async function consumer(socket: string, mode: string, frames: number, frameBytes: number): Promise<void> {
  const c = await connect({ socket, name: `zc-consumer-${mode}-${process.pid}`, accept: 'any' });
  const pats = patterns(frameBytes);
  const next = inbox(c);
  const maps = new Map<number, Buffer>();
  out({ ready: true, name: c.session.name ?? null, id: c.id });
  let bad = 0;
  for (let i = 0; i < frames; i++) {
    const ev = await next();
    let frame: Buffer;
    if (mode === 'map') {
      let v = maps.get(ev.buffer);
      if (v === undefined) {
        v = view(await c.map(ev.handle, { access: 'read' }));
        maps.set(ev.buffer, v);
      }
      frame = v;
    } else {
      const r = await c.read(ev.handle, 0, frameBytes);
      frame = Buffer.from(r.buffer, r.byteOffset, r.byteLength);
    }
    const n = frame.readUInt32LE(0);
    if (n !== i || frame.compare(pats[n % PATTERNS]!, 4, frameBytes, 4, frameBytes) !== 0) bad++;
    await c.send(ev.handle, ev.from.id);
    void c.close(ev.handle);
  }
  out({ checked: frames, bad });
  await c.disconnect();
}

async function producer(socket: string, mode: string, frames: number, frameBytes: number, consumerId: number): Promise<void> {
  const c = await connect({ socket, name: `zc-producer-${mode}-${process.pid}`, accept: 'any' });
  const pats = patterns(frameBytes);
  const next = inbox(c);
  const ring: { handle: number; buffer: number; bytes: Buffer | null }[] = [];
  for (let k = 0; k < RING; k++) {
    const h = await c.alloc({ pool: 'default', size: frameBytes, align: 4096 });
    ring.push({ handle: h.handle, buffer: h.buffer, bytes: mode === 'map' ? view(await c.map(h.handle)) : null });
  }
  const free = [...ring];
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    while (free.length === 0) {
      const back = await next();
      free.push(ring.find((r) => r.buffer === back.buffer)!);
      void c.close(back.handle);
    }
    const slot = free.shift()!;
    const pat = pats[i % PATTERNS]!;
    pat.writeUInt32LE(i, 0);
    if (slot.bytes !== null) slot.bytes.set(pat);
    else await c.write(slot.handle, 0, pat);
    await c.send(slot.handle, consumerId);
  }
  for (let k = free.length; k < RING; k++) await next(); // the last frames checked
  const seconds = (performance.now() - t0) / 1000;
  out({ frames, seconds });
  await c.disconnect();
}

async function fdReceiver(socket: string, mode: string): Promise<void> {
  const sys = native();
  if (sys === null) throw new Error('fd-receiver needs the native system calls');
  const ack = Buffer.from('k');
  if (mode === 'fd') {
    out({ ready: true });
    for (;;) {
      const m = sys.recvFds(3, 16, false);
      if (m === null || m.fds.length === 0) break; // the parent closed its end
      const fd = m.fds[0]!;
      const st = sys.stat(fd);
      const mp = sys.map(fd, 0, st.size, false);
      if (mp.bytes[0] === undefined) throw new Error('empty mapping');
      sys.unmap(mp);
      sys.close(fd);
      sys.sendFds(3, ack, []);
    }
    return;
  }
  const c = await connect({ socket, name: `zc-fd-${process.pid}`, accept: 'any' });
  c.on('handle', (ev) => {
    sys.sendFds(3, ack, []);
    void c.close(ev.handle);
  });
  out({ ready: true, id: c.id });
  await new Promise((r) => c.once('close', r)); // until the parent kills this process
}

const [role, socket, mode, a, b, cons] = process.argv.slice(2);
const run =
  role === 'consumer'
    ? consumer(socket!, mode!, Number(a), Number(b))
    : role === 'producer'
      ? producer(socket!, mode!, Number(a), Number(b), Number(cons))
      : fdReceiver(socket!, mode!);
run.then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`zerocopy-child ${role}: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
