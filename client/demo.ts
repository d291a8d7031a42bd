/**
 * npm run demo [-- --socket PATH]
 *
 * The pipeline bufferd's design grew from, as separate processes: a texture
 * app merges the gpu and jpeg constraints and allocates once; a decoder
 * writes a frame into that buffer through its own mapping (zero copy); a capture process
 * fills buffers through the capture device (one above 4 GiB, bounced); the
 * display scans the texture out and checks it through its own mapping. On the way one registration is refused with
 * its attribute diff and one forgotten sync is caught by the checker. Shows
 * `bufctl status`, then every process unregisters what it registered before
 * it leaves: no leak is reported. Exit code 0 when every step did what it
 * should; otherwise each failure says what happened instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const DAEMON = join(HERE, '..', 'daemon', 'main.js');
const ROLES = join(HERE, 'demo-roles.js');
const BUFCTL = join(HERE, 'bufctl.js');
const FOUR_GIB = 2 ** 32;
const hex = (a: number) => `0x${a.toString(16)}`;

/** The daemon's status as bufctl reads it, or the reason it could not. */
function statusJson(socket: string): { leaks: number; clients: (string | null)[] } | string {
  const r = spawnSync(process.execPath, [BUFCTL, '--socket', socket, 'status', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) return `bufctl status --json exited ${String(r.status)}: ${r.stderr.trim()}`;
  const st = JSON.parse(r.stdout) as { dma: { leaks: number }; clients: { name: string | null }[] };
  return { leaks: st.dma.leaks, clients: st.clients.map((c) => c.name) };
}

/** What the camera step returns for one buffer. */
interface Captured {
  buffer: number;
  pool: string;
  addr: number;
  end: number;
  bounced: number;
  ok: boolean;
  got: string;
  wrote: string;
}

/** Why the capture step did not show "only the buffer above 4 GiB is bounced", in what happened; [] when it did. */
export function captureFailures(low: Captured, high: Captured): string[] {
  const out: string[] = [];
  for (const [name, b] of [['low', low], ['high', high]] as const) {
    if (!b.ok) out.push(`the frame captured into the ${name} buffer #${b.buffer} read back as ${b.got}, not ${b.wrote}`);
  }
  if (high.addr < FOUR_GIB) out.push(`the high buffer #${high.buffer} landed at ${hex(high.addr)} (below 4 GiB, pool ${high.pool}), so nothing was bounced`);
  else if (high.bounced === 0) out.push(`the high buffer #${high.buffer} at ${hex(high.addr)} (above 4 GiB) was not bounced for the 32-bit capture device`);
  if (low.end > FOUR_GIB) out.push(`the low buffer #${low.buffer} reaches ${hex(low.end)}, above 4 GiB (pool ${low.pool})`);
  else if (low.bounced > 0) out.push(`the low buffer #${low.buffer} at ${hex(low.addr)} (below 4 GiB) was bounced (${low.bounced} bytes) although the device reaches it`);
  return out;
}

type Msg = Record<string, unknown>;

class Role {
  private readonly waiting: ((m: Msg) => void)[] = [];
  private readonly queue: Msg[] = [];
  readonly exited: Promise<number | null>;
  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    print: (s: string) => void,
  ) {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      let m: Msg;
      try {
        m = JSON.parse(line) as Msg;
      } catch {
        return;
      }
      if (typeof m['say'] === 'string') return print(`   ${`[${name}]`.padEnd(14)}${m['say']}`);
      const w = this.waiting.shift();
      if (w !== undefined) w(m);
      else this.queue.push(m);
    });
    this.exited = new Promise((r) => proc.on('exit', (code) => r(code)));
    proc.stderr!.on('data', (d: Buffer) => print(`   [${name} stderr] ${d.toString().trimEnd()}`));
  }

  /** The next answer (ready, done or error). */
  next(timeoutMs = 20_000): Promise<Msg> {
    const q = this.queue.shift();
    if (q !== undefined) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name} did not answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push((m) => {
        clearTimeout(t);
        resolve(m);
      });
      void this.exited.then((code) => reject(new Error(`${this.name} exited (${String(code)})`)));
    });
  }

  /** Start a step; resolve with its answer (an error answer rejects). */
  async step(step: string, args: Msg = {}): Promise<Msg> {
    this.proc.stdin!.write(`${JSON.stringify({ step, ...args })}\n`);
    const m = await this.next();
    if (typeof m['error'] === 'string') throw new Error(`${this.name}: ${m['error']}`);
    return m;
  }

  quit(): Promise<number | null> {
    this.proc.stdin!.end(`${JSON.stringify({ step: 'quit' })}\n`);
    return this.exited;
  }
}

async function startDaemon(dir: string, print: (s: string) => void): Promise<{ socket: string; proc: ChildProcess }> {
  const socket = join(dir, 'bufferd.sock');
  const proc = spawn(process.execPath, [DAEMON, '--socket', socket, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout!.resume(); // warnings (violations) are narrated by the roles instead
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = spawnSync(process.execPath, [BUFCTL, '--socket', socket, 'status', '--json'], { encoding: 'utf8' });
    if (r.status === 0) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`bufferd did not start: ${err.trim()}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  print(`bufferd started on ${socket} (the embedded default machine), pid ${proc.pid}`);
  return { socket, proc };
}

export async function runDemo(argv: string[], print: (s: string) => void): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help === true) {
    print('Usage: npm run demo [-- --socket PATH]\n\nRuns the seed pipeline against a daemon it starts on a temp socket, or the one at PATH.');
    return 0;
  }
  const failures: string[] = [];
  /** Record `failure` (what happened instead) unless ok. */
  const expect = (ok: unknown, failure: () => string) => {
    if (ok !== true) failures.push(failure());
  };
  const dir = mkdtempSync(join(tmpdir(), 'bufferd-demo-'));
  let daemon: ChildProcess | null = null;
  const roles: Role[] = [];
  let socket = values.socket;
  let leaksBefore: number | null = null;
  print('bufferd demo: a texture app, a JPEG decoder, a camera and a display share buffers\n');
  try {
    if (socket === undefined) ({ socket, proc: daemon } = await startDaemon(dir, print));
    else print(`using the running bufferd at ${socket}`);
    const st0 = statusJson(socket);
    if (typeof st0 === 'string') throw new Error(st0);
    leaksBefore = st0.leaks;
    for (const name of ['texture-app', 'decoder', 'capture', 'display']) {
      const p = spawn(process.execPath, [ROLES, name, '--socket', socket], { stdio: ['pipe', 'pipe', 'pipe'] });
      const r = new Role(name, p, print);
      roles.push(r);
      const m = await r.next();
      if (m['ready'] !== name) throw new Error(`${name} did not start: ${JSON.stringify(m)}`);
    }
    print(`four client processes connected: ${roles.map((r) => `${r.name} (pid ${r.proc.pid})`).join(', ')}\n`);
    const [app, decoder, capture, display] = roles as [Role, Role, Role, Role];

    print('1. The texture app merges the constraints of the devices its buffer will visit, and allocates once');
    await app.step('merge-alloc');
    await app.step('send', { what: 'texture', to: 'decoder', rights: ['read', 'write'] });

    print('\n2. The decoder maps the buffer and writes a frame into it, zero copy (sync start/end around the CPU writes)');
    const dec = await decoder.step('decode');
    const ck = await app.step('check-frame', { checksum: dec['checksum'] });
    expect(ck['ok'], () => `the texture app read the texture as ${String(ck['got'])}, not the decoded frame ${String(dec['checksum'])}`);

    print('\n3. The camera captures into two buffers: one below 4 GiB, one it asks to be placed above (the device has 32-bit DMA)');
    const cap = await capture.step('capture');
    failures.push(...captureFailures(cap['low'] as Captured, cap['high'] as Captured));

    print('\n4. The display scans the texture out, and reads it through its own mapping');
    await app.step('send', { what: 'texture', to: 'display', rights: ['read'] });
    const scan = await display.step('scanout', { checksum: dec['checksum'] });
    expect(scan['ok'], () => `the display saw ${String(scan['device'])} by scan-out${scan['mapping'] !== null ? ` and ${String(scan['mapping'])} through its mapping` : ''}, not the decoded frame ${String(dec['checksum'])}`);

    print('\n5. Someone hands the display a camera buffer it cannot scan out');
    await capture.step('send', { what: 'high', to: 'display', rights: ['read'] });
    const tr = await display.step('try-register');
    expect(tr['refused'], () => `the display registered camera buffer #${String(tr['buffer'])} instead of refusing it`);

    print('\n6. The camera app forgets a sync');
    const fs = await capture.step('forget-sync');
    expect(fs['caught'], () => 'the coherency checker reported nothing within 5 s of a CPU read without sync start');

    print('\n7. bufctl status\n');
    const st = spawnSync(process.execPath, [BUFCTL, '--socket', socket, 'status'], { encoding: 'utf8' });
    print(st.stdout.trimEnd());
    expect(st.status === 0, () => `bufctl status exited ${String(st.status)}: ${st.stderr.trim()}`);

    print('\n8. Each process unregisters what it registered, and disconnects');
    for (const r of roles) await r.step('release');
  } catch (e) {
    failures.push((e as Error).message);
  } finally {
    await Promise.all(roles.map((r) => r.quit()));
  }
  if (socket !== undefined && leaksBefore !== null) {
    // the daemon reports a leak when a client leaves with registrations: wait until the roles are gone
    const names = roles.map((r) => r.name);
    let st = statusJson(socket);
    for (let i = 0; i < 50 && typeof st !== 'string' && st.clients.some((n) => n !== null && names.includes(n)); i++) {
      await new Promise((r) => setTimeout(r, 100));
      st = statusJson(socket);
    }
    if (typeof st === 'string') failures.push(st);
    else expect(st.leaks === leaksBefore, () => `the daemon reported ${st.leaks - leaksBefore!} leaked registration(s) as the processes left`);
  }
  if (daemon !== null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon!.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
  if (failures.length > 0) {
    print(`\ndemo FAILED: ${failures.join('; ')}`);
    return 1;
  }
  print('\ndemo finished: every step did what it should.');
  return 0;
}

const isMain = process.argv[1] !== undefined && /demo(\.js)?$/.test(process.argv[1]);
if (isMain) {
  runDemo(process.argv.slice(2), (s) => process.stdout.write(`${s}\n`)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`demo: ${(e as Error)?.message ?? String(e)}\n`);
      process.exit(2);
    },
  );
}
