/**
 * Two small buffers in one cache line, both registered with a
 * non-coherent device that writes (kernel/dma/debug.c: "cacheline tracking
 * EEXIST, overlapping mappings aren't supported"): the second registration
 * records an `overlapping-cacheline` violation naming the other buffer and
 * the cure, and the corruption it warns of really happens — the CPU
 * cleaning one buffer's line writes the other's stale bytes over what the
 * device wrote. alloc({for}) gives a non-coherent device's buffers lines of
 * their own, and then nothing is lost. Strict mode refuses the registration.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { rejection } from '../helpers/procs.js';
import { client, driverStatus } from '../helpers/drivers.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { BufferClient, HandleInfo } from '../../client/index.js';

const LINE = 64;
const line = (h: HandleInfo) => Math.floor(h.segments[0]!.addr / LINE);

/** Two 16-byte buffers whose bytes lie in one cache line (not one of the lines of `avoid`). */
async function neighbours(c: BufferClient, avoid: HandleInfo[] = []): Promise<[HandleInfo, HandleInfo]> {
  let a = await c.alloc({ pool: 'default', size: 16 });
  for (let i = 0; i < 16; i++) {
    const b = await c.alloc({ pool: 'default', size: 16 });
    if (line(a) === line(b) && !avoid.some((x) => line(x) === line(a))) return [a, b];
    a = b;
  }
  throw new Error('no two 16-byte buffers share a line');
}

/** The flow dma-debug warns of: the CPU writes b (its line dirty, holding a's old bytes), the device writes a, the CPU cleans b's line, then reads a. */
async function flow(c: BufferClient, a: HandleInfo, b: HandleInfo): Promise<Buffer> {
  await c.sync(b.handle, { phase: 'start', access: 'write' });
  await c.write(b.handle, 0, Buffer.from('cpu-data-for-b!!'));
  await c.device.write('nc', a.handle, 0, Buffer.from('device-wrote-a!!'));
  await c.sync(b.handle, { phase: 'end', access: 'write' });
  await c.sync(a.handle, { phase: 'start', access: 'read' });
  const got = await c.read(a.handle, 0, 16);
  await c.sync(a.handle, { phase: 'end', access: 'read' });
  return got;
}

t.test('warn: the overlap is recorded at registration, and the device write is then really lost', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  await c.attachDriver('nc', { coherent: false });
  const [a, b] = await neighbours(c);
  t.equal((await c.register(a.handle, 'nc', { direction: 'from-device' })).direction, 'from-device');
  t.same((await c.violations()).violations, [], 'one buffer in the line: nothing to report');
  const rb = await c.register(b.handle, 'nc');
  t.equal(rb.direction, 'bidirectional', 'the default direction');
  const vs = (await c.violations()).violations;
  t.equal(vs.length, 1);
  t.match(vs[0], { kind: 'overlapping-cacheline', buffer: b.buffer, driver: 'nc', op: 'register', range: { offset: 0, length: 16 }, mode: 'warn' });
  const m = vs[0]!.message;
  t.match(m, `shares the 64-byte cache line at 0x${(line(a) * LINE).toString(16)} with buffer ${a.buffer} (registered with 'nc' as from-device)`);
  t.match(m, "cacheline tracking EEXIST, overlapping mappings aren't supported (kernel/dma/debug.c)");
  t.match(m, "alloc {align: 64}, or alloc {for: ['nc']}, which aligns to the line for a non-coherent device", 'the cure is named');
  t.match(await driverStatus(c, 'nc'), { registrations: 2, refused: 0 }, 'warn: the registration is made');

  t.same(await flow(c, a, b), Buffer.alloc(16), "the device's write to a was lost: the CPU wrote b's line back with a's old bytes");
  t.same((await c.violations()).violations.map((v) => v.kind), ['overlapping-cacheline'], 'every call was synced: the overlap is the only warning, and the cause');

  // a to-device registration is not tracked: the device does not write it (active_cacheline_insert)
  const [x, y] = await neighbours(c, [a, b]);
  await c.register(x.handle, 'nc', { direction: 'to-device' });
  await c.register(y.handle, 'nc');
  t.equal((await c.violations()).total, 1, 'no new report');

  // bufctl shows the directions and finds the overlap by kind
  const list = await bufctlHere(d.socket, 'buffers');
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, new RegExp(`\\n\\s*${a.buffer}\\s.*\\snc\\(from-device\\)\\s`), 'a non-default direction is shown with the driver');
  t.match(list.stdout, new RegExp(`\\n\\s*${x.buffer}\\s.*\\snc\\(to-device\\)\\s`));
  const v = await bufctlHere(d.socket, 'violations', '--kind', 'overlapping-cacheline');
  t.equal(v.code, 0, v.stderr);
  t.match(v.stdout, /1 violation since start: overlapping-cacheline 1/);
  t.match(v.stdout, /overlapping-cacheline\s+\d+ app\s+\d+\s+nc\s+register\s+0\+16\s+buffer \d+ \(at 0x/);
});

t.test("the cure: alloc({for}) aligns a non-coherent device's buffers to the line; nothing is lost", async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  await c.attachDriver('nc', { coherent: false });
  const a = await c.alloc({ for: ['nc'], size: 16 });
  const b = await c.alloc({ for: ['nc'], size: 16 });
  t.equal(a.segments[0]!.addr % LINE, 0, 'a starts a line');
  t.equal(b.segments[0]!.addr % LINE, 0, 'b starts a line');
  t.not(line(a), line(b), 'and they share none');
  t.match(a.placement, { for: ['nc'], reason: /aligned to the 64-byte cache line \(a non-coherent device: no line shared with another buffer\)/ }, 'the placement says why');
  await c.register(a.handle, 'nc', { direction: 'from-device' });
  await c.register(b.handle, 'nc');
  t.same(await flow(c, a, b), Buffer.from('device-wrote-a!!'), "the device's write survives");
  t.equal((await c.violations()).total, 0, 'no violation');
  // a coherent device needs no line of its own: alloc for it is not padded
  await c.attachDriver('co', { coherent: true });
  const small = await Promise.all([1, 2, 3, 4].map(() => c.alloc({ for: ['co'], size: 16 })));
  t.ok(small.some((h) => h.segments[0]!.addr % LINE !== 0), 'a coherent device\'s small buffers are packed');
  t.notMatch(small[0]!.placement!.reason, /cache line/);
});

t.test('strict: the second registration is refused with ECOHERENCY and holds nothing', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, coherency: { mode: 'strict' } } });
  const c = await client(t, d.socket, 'app');
  await c.attachDriver('nc', { coherent: false });
  const [a, b] = await neighbours(c);
  await c.register(a.handle, 'nc');
  const e = await rejection(c.register(b.handle, 'nc'));
  t.match(e, { code: 'ECOHERENCY', message: /^overlapping-cacheline: buffer \d+ .*cacheline tracking EEXIST/ });
  t.match(await driverStatus(c, 'nc'), { registrations: 1, refused: 1 });
  t.equal((await c.info(b.handle)).refs.registrations, 0, 'the refused buffer holds no registration');
  await c.unregister(a.handle, 'nc');
  t.equal((await c.register(b.handle, 'nc')).direction, 'bidirectional', 'alone in its line, it registers');
});
