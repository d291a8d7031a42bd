/**
 * A churning client process for killstorm and soak.
 *
 *   node dist/bench/stress/worker.js <socket> <seed> storm [lanes]
 *   node dist/bench/stress/worker.js <socket> <seed> soak
 *
 * storm: one connection, `lanes` loops (default 4) of random ops pipelined
 *   on it (alloc, write, read, register, sync, device.fill, export, import,
 *   map, dup, close...), forever: the parent SIGKILLs it at a random moment.
 *   Prints {"ready":true} once connected.
 * soak: two connections (A and B) in this process, one loop each, that also
 *   pass handles to each other (send, export → the other imports). On the
 *   stdin line "stop" both loops finish their op, then everything is undone
 *   explicitly (unmap, unregister, close) and {"done":true, ops, errors,
 *   unexpected} is printed before disconnecting. Error codes the workload
 *   can meet (ENOMEM, EBUSY, EATTR, ENOENT for an expired token, EMFILE) are
 *   counted; others (EIO, ECONNRESET, EINVAL, EBADF...) are `unexpected`.
 */
import { createInterface } from 'node:readline';
import { connect } from '../../client/connect.js';
import type { BufferClient } from '../../client/client.js';
import { Rand } from './rand.js';

const MiB = 1024 * 1024;
/** Most handles an actor holds before it stops allocating. */
const MAX_HELD = 48;
/** Most CPU mappings an actor keeps (each holds its buffer after close). */
const MAX_MAPS = 16;
const TOKEN_TTL_MS: [number, number] = [200, 1500];
const EXPECTED = new Set(['ENOMEM', 'EBUSY', 'EATTR', 'ENOENT', 'EMFILE']);

/** Where to allocate: pool, size range, and a driver that accepts the pool's buffers. */
const SPECS = [
  { pool: 'default', min: 8, max: 64 * 1024, driver: 'video' },
  { pool: 'default', min: 2 * MiB, max: 3 * MiB, driver: 'video' },
  { pool: 'huge', min: 4096, max: 3 * MiB, driver: 'video' },
  { pool: 'dma32', min: 4096, max: 256 * 1024, driver: 'capture' },
  { pool: 'wc', min: 4096, max: 1 * MiB, driver: 'gpu' },
  { pool: 'contig', min: 4096, max: 256 * 1024, driver: 'display' },
  { pool: 'uncached', min: 64, max: 64 * 1024, driver: 'gpu' },
] as const;

interface Held {
  buffer: number;
  size: number;
  driver: string;
}

class Actor {
  readonly held = new Map<number, Held>();
  /** Registrations this actor made: buffer → drivers. */
  readonly regs = new Map<number, Set<string>>();
  readonly maps: number[] = [];
  readonly tokens: string[] = [];
  ops = 0;
  readonly errors: Record<string, number> = {};
  readonly unexpected: string[] = [];
  peer: Actor | null = null;

  constructor(
    readonly c: BufferClient,
    readonly r: Rand,
  ) {
    c.on('handle', (ev) => this.held.set(ev.handle, { buffer: ev.buffer, size: ev.size, driver: SPECS.find((s) => s.pool === ev.pool)?.driver ?? 'video' }));
  }

  private someHandle(): [number, Held] | undefined {
    if (this.held.size === 0) return undefined;
    const keys = [...this.held.keys()];
    const h = this.r.pick(keys);
    return [h, this.held.get(h)!];
  }

  private registered(): [number, Held] | undefined {
    const xs = [...this.held].filter(([, x]) => this.regs.get(x.buffer)?.has(x.driver));
    return xs.length === 0 ? undefined : this.r.pick(xs);
  }

  /** One random op, errors counted. */
  async step(): Promise<void> {
    const r = this.r;
    const roll = r.int(100);
    const any = this.someHandle();
    try {
      if (roll < 18 || any === undefined) {
        if (this.held.size >= MAX_HELD) return this.close(any);
        const s = r.pick(SPECS);
        const info = await this.c.alloc({ pool: s.pool, size: r.range(s.min, s.max) });
        this.held.set(info.handle, { buffer: info.buffer, size: info.size, driver: s.driver });
      } else if (roll < 30) {
        const [h, x] = any;
        const len = r.range(1, Math.min(x.size, 16 * 1024));
        await this.c.write(h, r.int(x.size - len + 1), Buffer.alloc(len, r.int(256)));
      } else if (roll < 38) {
        const [h, x] = any;
        const len = r.range(1, Math.min(x.size, 16 * 1024));
        await this.c.read(h, r.int(x.size - len + 1), len);
      } else if (roll < 50) {
        await this.close(any);
      } else if (roll < 54) {
        if (this.held.size >= MAX_HELD) return;
        const d = await this.c.dup(any[0]);
        this.held.set(d.handle, { ...any[1] });
      } else if (roll < 60) {
        const [h, x] = any;
        const regs = this.regs.get(x.buffer) ?? new Set<string>();
        if (regs.has(x.driver)) return;
        await this.c.register(h, x.driver);
        regs.add(x.driver);
        this.regs.set(x.buffer, regs);
      } else if (roll < 64) {
        const reg = this.registered();
        if (reg === undefined) return;
        await this.c.unregister({ buffer: reg[1].buffer }, reg[1].driver);
        this.regs.get(reg[1].buffer)!.delete(reg[1].driver);
      } else if (roll < 70) {
        const reg = this.registered();
        if (reg === undefined) return;
        await this.c.sync(reg[0], { phase: 'start', access: 'rw' });
        await this.c.write(reg[0], 0, Buffer.alloc(Math.min(reg[1].size, 4096), 0x5a));
        await this.c.sync(reg[0], { phase: 'end', access: 'rw' });
      } else if (roll < 74) {
        const reg = this.registered();
        if (reg === undefined) return;
        await this.c.device.fill(reg[1].driver, reg[0], 0, Math.min(reg[1].size, 64 * 1024), r.int(256));
      } else if (roll < 82) {
        const t = await this.c.export(any[0], { ttlMs: r.range(TOKEN_TTL_MS[0], TOKEN_TTL_MS[1]) });
        const to = this.peer ?? this;
        if (r.chance(0.8)) await to.importToken(t.token);
        else this.tokens.push(t.token); // left to expire (or imported late)
      } else if (roll < 86) {
        const t = this.tokens.shift();
        if (t !== undefined) await this.importToken(t);
      } else if (roll < 91) {
        if (this.peer === null) return;
        await this.c.send(any[0], this.peer.c.id);
      } else if (roll < 96 && this.maps.length < MAX_MAPS) {
        const m = await this.c.mapRemote(any[0]); // a daemon-side CPU mapping (any buffer), read through {mapping}
        this.maps.push(m.mapping);
        await this.c.read({ mapping: m.mapping }, 0, Math.min(any[1].size, 256));
      } else {
        const m = this.maps.shift();
        if (m !== undefined) await this.c.unmap(m);
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.ops++;
    }
  }

  fail(e: unknown): void {
    const code = (e as { code?: string }).code ?? 'ERROR';
    this.errors[code] = (this.errors[code] ?? 0) + 1;
    if (!EXPECTED.has(code) && this.unexpected.length < 10) this.unexpected.push(`${code}: ${(e as Error).message}`.slice(0, 200));
  }

  async importToken(token: string): Promise<void> {
    if (this.held.size >= MAX_HELD) return;
    try {
      const info = await this.c.import(token);
      this.held.set(info.handle, { buffer: info.buffer, size: info.size, driver: SPECS.find((s) => s.pool === info.pool)?.driver ?? 'video' });
    } catch (e) {
      this.fail(e);
    }
  }

  /** Close a handle; the last one of a buffer takes this actor's registrations of it first. */
  async close(any: [number, Held] | undefined): Promise<void> {
    if (any === undefined) return;
    const [h, x] = any;
    this.held.delete(h);
    const last = ![...this.held.values()].some((y) => y.buffer === x.buffer);
    if (last) {
      for (const d of this.regs.get(x.buffer) ?? []) await this.c.unregister({ buffer: x.buffer }, d).catch((e: unknown) => this.fail(e));
      this.regs.delete(x.buffer);
    }
    await this.c.close(h);
  }

  /** Undo everything this actor holds. */
  async cleanup(): Promise<void> {
    for (const m of this.maps.splice(0)) await this.c.unmap(m).catch((e: unknown) => this.fail(e));
    for (const [buffer, ds] of this.regs) for (const d of ds) await this.c.unregister({ buffer }, d).catch((e: unknown) => this.fail(e));
    this.regs.clear();
    for (const h of [...this.held.keys()]) await this.c.close(h).catch((e: unknown) => this.fail(e));
    this.held.clear();
  }
}

async function main(): Promise<void> {
  const [socket, seedArg, mode, lanesArg] = process.argv.slice(2);
  if (socket === undefined || (mode !== 'storm' && mode !== 'soak')) {
    process.stderr.write('usage: worker.js <socket> <seed> storm|soak [lanes]\n');
    process.exit(2);
  }
  const seed = Number(seedArg ?? 1);
  const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  if (mode === 'storm') {
    const c = await connect({ socket, useCookie: false });
    c.on('close', () => process.exit(3));
    const a = new Actor(c, new Rand(seed));
    out({ ready: true, clientId: c.id });
    for (let i = 0; i < Number(lanesArg ?? 4); i++) {
      void (async () => {
        for (;;) await a.step();
      })();
    }
    return;
  }
  const ca = await connect({ socket, useCookie: false });
  const cb = await connect({ socket, useCookie: false });
  // the pair pass handles to each other: each accepts them from the other only
  await Promise.all([ca.accept([cb.id]), cb.accept([ca.id])]);
  const a = new Actor(ca, new Rand(seed));
  const b = new Actor(cb, new Rand(seed + 0x9e3779b9));
  a.peer = b;
  b.peer = a;
  let stopping = false;
  const loop = async (x: Actor) => {
    while (!stopping) await x.step();
  };
  const loops = [loop(a), loop(b)];
  out({ ready: true, clients: [ca.id, cb.id] });
  await new Promise<void>((resolve) => {
    createInterface({ input: process.stdin })
      .on('line', (l) => l.trim() === 'stop' && resolve())
      .on('close', () => resolve());
  });
  stopping = true;
  await Promise.all(loops);
  // handle events sent before now have reached both (events precede later answers)
  await Promise.all([ca.ping(), cb.ping()]);
  await a.cleanup();
  await b.cleanup();
  const sum = (k: 'ops') => a[k] + b[k];
  const errors: Record<string, number> = { ...a.errors };
  for (const [k, v] of Object.entries(b.errors)) errors[k] = (errors[k] ?? 0) + v;
  out({ done: true, ops: sum('ops'), errors, unexpected: [...a.unexpected, ...b.unexpected], tokensLeft: a.tokens.length + b.tokens.length });
  await Promise.all([ca.disconnect(), cb.disconnect()]);
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`worker: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
