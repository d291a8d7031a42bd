/**
 * One process of the demo pipeline (see demo.ts): texture-app, decoder,
 * capture or display. It connects under its role's name and carries out the
 * steps the orchestrator sends on stdin, one JSON line each
 * ({"step": name, ...}); it answers on stdout with {"say": text} lines and
 * one {"done": name, ...} (or {"error": message}) per step.
 *
 *   node dist/client/demo-roles.js <role> --socket PATH
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { connect } from './connect.js';
import type { BufferClient } from './client.js';
import type { Mapping } from './mapping.js';
import { BufferdError } from '../protocol/errors.js';
import type { HandleEvent, HandleInfo, RegistrationInfo, ViolationEvent } from '../protocol/results.js';
import type { Mismatch } from '../protocol/attributes.js';
import { formatSize, formatAddress } from '../protocol/units.js';
import { formatMismatch } from './format.js';

export const FRAME = 1024 * 1024; // a 512×512 RGBA frame

/** A recognisable frame: a gradient seeded per source. */
export function frame(seed: number, size = FRAME): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >>> 11) * 13 + seed * 31) & 0xff;
  return b;
}

export const checksum = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 12);

export const FOUR_GIB = 2 ** 32;

type Step = Record<string, unknown> & { step: string };
type Say = (s: string) => void;

const where = (h: HandleInfo) =>
  `${formatSize(h.size)} from ${h.pool} (${h.cache}, ${h.region}) at ${formatAddress(h.segments[0]?.addr ?? 0)}${h.contiguous ? ', physically contiguous' : `, ${h.segments.length} segments`}`;

function regLine(r: RegistrationInfo): string {
  const parts = [`device address ${formatAddress(r.deviceAddress)}`];
  if (r.iommu !== null) {
    const e = Object.entries(r.iommu.entries).map(([sz, n]) => `${n}×${formatSize(Number(sz))}`).join(' + ');
    parts.push(`IOMMU entries ${e}`);
  } else parts.push('no IOMMU');
  if (r.bounced > 0) parts.push(`${formatSize(r.bounced)} BOUNCED through swiotlb`);
  return `registered buffer #${r.buffer} with ${r.driver}: ${parts.join(', ')}`;
}

/** Handles sent to this process, in arrival order. */
class Inbox {
  private readonly got: HandleEvent[] = [];
  private waiter: ((e: HandleEvent) => void) | null = null;
  constructor(c: BufferClient) {
    c.on('handle', (e) => {
      if (this.waiter !== null) {
        const w = this.waiter;
        this.waiter = null;
        w(e);
      } else this.got.push(e);
    });
  }
  next(timeoutMs = 10_000): Promise<HandleEvent> {
    const e = this.got.shift();
    if (e !== undefined) return Promise.resolve(e);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no handle arrived')), timeoutMs);
      this.waiter = (ev) => {
        clearTimeout(t);
        resolve(ev);
      };
    });
  }
}

async function cpuRead(c: BufferClient, h: number, len: number): Promise<Buffer> {
  await c.sync(h, { phase: 'start', access: 'read' });
  const b = await c.read(h, 0, len);
  await c.sync(h, { phase: 'end', access: 'read' });
  return b;
}

/** A mapping of the buffer, or null (said why) where this host can't map (no native system calls). */
async function mapOrNull(c: BufferClient, h: number, access: 'read' | 'write', say: Say): Promise<Mapping | null> {
  try {
    return await c.map(h, { access });
  } catch (e) {
    if (!(e instanceof BufferdError) || e.code !== 'ENOTSUP') throw e;
    say(`cannot map here (${e.message}); using the device path instead`);
    return null;
  }
}

/**
 * The camera's buffer above 4 GiB, asked for (minAddress) rather than hoped
 * for: from the hugepage pool, else from 4 KiB pages. Fails naming why each
 * pool could not place it.
 */
async function allocHigh(c: BufferClient, say: Say): Promise<HandleInfo> {
  const refusals: string[] = [];
  for (const pool of ['huge', 'default']) {
    try {
      return await c.alloc({ pool, size: FRAME, minAddress: FOUR_GIB });
    } catch (e) {
      if (!(e instanceof BufferdError) || !['ENOMEM', 'EINVAL', 'ENOENT'].includes(e.code)) throw e;
      refusals.push(`${pool}: ${e.code}: ${e.message}`);
      say(`pool ${pool} cannot place ${formatSize(FRAME)} above 4 GiB (${e.code})`);
    }
  }
  throw new Error(`no pool could place the high buffer above 4 GiB: ${refusals.join('; ')}`);
}

/** The registrations this process made, to undo before it leaves (as a driver's remove() calls dma_unmap). */
class Registrations {
  private readonly list: { handle: number; driver: string; buffer: number }[] = [];
  constructor(private readonly c: BufferClient) {}
  async register(handle: number, driver: string): Promise<RegistrationInfo> {
    const r = await this.c.register(handle, driver);
    this.list.push({ handle, driver, buffer: r.buffer });
    return r;
  }
  /** Unregister everything, newest first; returns what was undone. */
  async releaseAll(): Promise<string[]> {
    const done: string[] = [];
    for (const r of this.list.splice(0).reverse()) {
      await this.c.unregister(r.handle, r.driver);
      done.push(`#${r.buffer} from ${r.driver}`);
    }
    return done;
  }
}

function roleSteps(c: BufferClient, say: Say, regs: Registrations): Record<string, (s: Step) => Promise<Record<string, unknown>>> {
  const inbox = new Inbox(c);
  const handles: Record<string, number> = {};
  const violations: ViolationEvent[] = [];
  c.on('violation', (v) => violations.push(v));
  return {
    // texture-app
    'merge-alloc': async () => {
      const m = await c.merge(['gpu', 'jpeg']);
      const g = m.merged;
      say(`merged gpu + jpeg: align ${formatSize(g.align)}, ${g.contiguous ? 'physically contiguous' : 'scatter-gather'}, cache ${g.cache?.join('|') ?? 'any'}, below ${formatAddress(g.addressLimit ?? 0)}`);
      say(`pools that fit: ${m.pools.filter((p) => p.fits).map((p) => p.name).join(', ')}`);
      const h = await c.alloc({ for: ['gpu', 'jpeg'], size: FRAME });
      handles['texture'] = h.handle;
      say(`allocated buffer #${h.buffer}: ${where(h)}`);
      say(regLine(await regs.register(h.handle, 'gpu')));
      return { buffer: h.buffer };
    },
    send: async (s) => {
      const r = await c.send(handles[s['what'] as string]!, s['to'] as string, { rights: s['rights'] as ('read' | 'write' | 'share')[] });
      say(`sent the ${String(s['what'])} buffer to ${String(s['to'])} (rights ${r.rights.join(', ')})`);
      return {};
    },
    'check-frame': async (s) => {
      const got = checksum(await cpuRead(c, handles['texture']!, FRAME));
      const ok = got === s['checksum'];
      say(`CPU reads the texture after sync start (invalidate): checksum ${got} ${ok ? 'matches the decoder\'s' : 'DIFFERS'}`);
      return { ok, got };
    },
    // decoder
    decode: async () => {
      const ev = await inbox.next();
      handles['texture'] = ev.handle;
      say(`received buffer #${ev.buffer} from ${ev.from.name ?? ev.from.id} as handle ${ev.handle}`);
      say(regLine(await regs.register(ev.handle, 'jpeg')));
      const f = frame(1);
      const m = await mapOrNull(c, ev.handle, 'write', say);
      if (m === null) {
        await c.device.write('jpeg', ev.handle, 0, f);
        say(`the jpeg device decoded a frame into it: ${formatSize(f.length)} by DMA, checksum ${checksum(f)}`);
        return { checksum: checksum(f), mapped: false };
      }
      // the CPU owns the buffer between sync start and end; end cleans its writes to memory
      await c.sync(ev.handle, { phase: 'start', access: 'write' });
      m.bytes.set(f);
      await c.sync(ev.handle, { phase: 'end', access: 'write' });
      say(`decoded a frame into it: ${formatSize(f.length)} written through its own mapping (${m.cache}, zero copy), checksum ${checksum(m.bytes.subarray(0, f.length))}`);
      await m.unmap();
      return { checksum: checksum(f), mapped: true };
    },
    // capture
    capture: async () => {
      const out: Record<string, unknown> = {};
      for (const [name, seed] of [['low', 2], ['high', 3]] as const) {
        // the low buffer from the pool below 4 GiB; the high one placed above 4 GiB on request
        const h = name === 'low' ? await c.alloc({ pool: 'dma32', size: FRAME }) : await allocHigh(c, say);
        handles[name] = h.handle;
        say(`allocated buffer #${h.buffer}: ${where(h)}`);
        const r = await regs.register(h.handle, 'capture');
        say(regLine(r));
        const f = frame(seed);
        await c.device.write('capture', h.handle, 0, f);
        const got = checksum(await cpuRead(c, h.handle, FRAME));
        say(`captured a frame; CPU reads it after sync start: checksum ${got} ${got === checksum(f) ? 'ok' : 'WRONG'}`);
        const addrs = h.segments.map((x) => x.addr);
        out[name] = { buffer: h.buffer, pool: h.pool, addr: Math.min(...addrs), end: Math.max(...h.segments.map((x) => x.addr + x.len)), bounced: r.bounced, ok: got === checksum(f), got, wrote: checksum(f) };
      }
      return out;
    },
    'forget-sync': async () => {
      const h = handles['low']!;
      const before = violations.length;
      await c.device.write('capture', h, 0, frame(4));
      say('the capture device writes the next frame; the app reads it WITHOUT sync start…');
      await c.read(h, 0, 4096);
      const deadline = Date.now() + 5000;
      while (violations.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (violations.length === before) return { caught: false };
      await new Promise((r) => setTimeout(r, 100)); // the read may break more than one rule
      const caught = violations.slice(before);
      for (const v of caught) say(`the checker caught it: ${v.kind}: ${v.message}`);
      return { caught: true, kinds: caught.map((v) => v.kind) };
    },
    // display
    scanout: async (s) => {
      const ev = await inbox.next();
      handles['scanout'] = ev.handle;
      say(`received buffer #${ev.buffer} from ${ev.from.name ?? ev.from.id} (rights ${ev.rights.join(', ')})`);
      say(regLine(await regs.register(ev.handle, 'display')));
      const got = checksum(await c.device.read('display', ev.handle, 0, FRAME));
      let ok = got === s['checksum'];
      say(`scanned out ${formatSize(FRAME)}: checksum ${got} ${ok ? 'matches' : 'DIFFERS'}`);
      const m = await mapOrNull(c, ev.handle, 'read', say);
      let seen: string | null = null;
      if (m !== null) {
        await c.sync(ev.handle, { phase: 'start', access: 'read' });
        seen = checksum(m.bytes.subarray(0, FRAME));
        await c.sync(ev.handle, { phase: 'end', access: 'read' });
        await m.unmap();
        ok &&= seen === s['checksum'];
        say(`and through its own read-only mapping: checksum ${seen} ${seen === s['checksum'] ? 'matches' : 'DIFFERS'}`);
      }
      return { ok, mapped: m !== null, device: got, mapping: seen };
    },
    'try-register': async () => {
      const ev = await inbox.next();
      say(`received buffer #${ev.buffer} (${formatSize(ev.size)}, ${ev.pool}, ${ev.cache}) from ${ev.from.name ?? ev.from.id}`);
      try {
        await regs.register(ev.handle, 'display');
        say('display registered it: it should have been refused!');
        return { refused: false, buffer: ev.buffer };
      } catch (e) {
        if (!(e instanceof BufferdError) || e.code !== 'EATTR') throw e;
        const mm = (e.details?.['mismatches'] as Mismatch[] | undefined) ?? [];
        say(`display REFUSED buffer #${ev.buffer} (${e.code}); the attribute diff:`);
        for (const m of mm) say(`  ${formatMismatch(m, 'buffer has')}`);
        return { refused: true, attributes: mm.map((m) => m.attribute) };
      }
    },
    // every role: undo its registrations before it leaves
    release: async () => {
      const done = await regs.releaseAll();
      say(done.length === 0 ? 'holds no registrations' : `unregistered ${done.join(', ')}`);
      return { unregistered: done.length };
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const role = argv[0];
  const i = argv.indexOf('--socket');
  const socket = i >= 0 ? argv[i + 1] : undefined;
  if (role === undefined || !['texture-app', 'decoder', 'capture', 'display'].includes(role)) {
    process.stderr.write('usage: demo-roles <texture-app|decoder|capture|display> --socket PATH\n');
    process.exit(2);
  }
  const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
  // receiving handles is each role's choice: the decoder takes the app's, the display the app's and the camera's
  const accept: Record<string, string[]> = { decoder: ['texture-app'], display: ['texture-app', 'capture'] };
  const c = await connect({ socket, name: role, accept: accept[role] ?? 'none' });
  const regs = new Registrations(c);
  const steps = roleSteps(c, (text) => emit({ say: text }), regs);
  emit({ ready: role, client: c.id });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    let s: Step;
    try {
      s = JSON.parse(line) as Step;
    } catch {
      continue;
    }
    if (s.step === 'quit') break;
    const f = steps[s.step];
    try {
      if (f === undefined) throw new Error(`unknown step '${s.step}'`);
      emit({ done: s.step, ...(await f(s)) });
    } catch (e) {
      emit({ error: `${s.step}: ${e instanceof BufferdError ? `${e.code}: ` : ''}${(e as Error).message}` });
    }
  }
  // what was registered and not released by a step (a run cut short) is unregistered, not leaked
  await regs.releaseAll().catch(() => []);
  await c.disconnect();
}

const isMain = process.argv[1] !== undefined && /demo-roles(\.js)?$/.test(process.argv[1]);
if (isMain) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`demo-roles: ${(e as Error)?.message ?? String(e)}\n`);
    process.exit(1);
  });
}
