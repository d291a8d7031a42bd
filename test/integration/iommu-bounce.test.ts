/**
 * How devices reach registered buffers: through an IOMMU (page-table
 * entries of the largest page size both addresses allow, an IOVA range
 * given back on unregister), or, for a device without one whose DMA mask
 * can't reach the buffer, through swiotlb bounce slots below 4 GiB (data
 * copied both ways) when it may bounce — refused otherwise. Exhaustion of
 * the bounce pool and of a small IOVA space is ENOMEM naming the device.
 */
import t, { type Test } from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { pattern, rejection } from '../helpers/procs.js';
import { client, driverStatus, collect, nextEvent, KiB, MiB, GiB } from '../helpers/drivers.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { BufferClient, HandleInfo, RegistrationInfo, ViolationEvent } from '../../client/index.js';

/** Σ page size × count over the entries: the bytes of IOVA they map. */
const mapped = (e: Record<string, number>) => Object.entries(e).reduce((a, [k, v]) => a + Number(k) * v, 0);

async function cpuSees(t: Test, c: BufferClient, h: HandleInfo, off: number, want: Buffer, what: string) {
  t.ok((await c.read(h.handle, off, want.length)).equals(want), what);
}
async function deviceSees(t: Test, c: BufferClient, driver: string, h: HandleInfo, off: number, want: Buffer, what: string) {
  t.ok((await c.device.read(driver, h.handle, off, want.length)).equals(want), what);
}

t.test('gpu IOMMU: 2 MiB entries for hugepages, 4 KiB for 4K pages; unregister gives IOVA and entries back', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');

  const wc = await c.alloc({ pool: 'wc', size: 4 * MiB });
  t.same(wc.segments.map((s) => s.addr % (2 * MiB)), wc.segments.map(() => 0), 'hugepage-backed: 2 MiB aligned');
  const rw = await c.register(wc.handle, 'gpu');
  t.same(rw.iommu!.entries, { [2 * MiB]: 2 }, 'two 2 MiB entries, nothing smaller');
  t.equal(rw.iommu!.iova % (2 * MiB), 0, 'the IOVA is 2 MiB aligned like the pages');
  t.equal(rw.iommu!.iovaSize, 4 * MiB);
  t.same(rw.segments, [{ addr: rw.deviceAddress, len: 4 * MiB }]);
  t.equal(rw.bounced, 0);
  t.match(await driverStatus(c, 'gpu'), { registrations: 1, bytes: 4 * MiB, iovaUsed: 4 * MiB, iommuEntries: { [2 * MiB]: 2 } });

  const un = await c.alloc({ pool: 'uncached', size: 12 * KiB });
  const ru = await c.register(un.handle, 'gpu');
  t.same(ru.iommu!.entries, { 4096: 3 }, 'three 4 KiB entries');
  t.equal(ru.iommu!.iovaSize, 12 * KiB);
  const st = await driverStatus(c, 'gpu');
  t.same(st.iommuEntries, { 4096: 3, [2 * MiB]: 2 }, 'drivers(): live entries by page size');
  t.equal(st.iovaUsed, 4 * MiB + 12 * KiB);

  // a scatter-gather 4K-pool buffer: one contiguous IOVA range; entries cover it exactly
  const sg = await c.alloc({ pool: 'uncached', size: 2 * MiB + 4 * KiB });
  const rs = await c.register(sg.handle, 'gpu');
  t.same(rs.segments, [{ addr: rs.deviceAddress, len: 2 * MiB + 4 * KiB }], `${sg.segments.length} physical segments, one IOVA range`);
  t.equal(mapped(rs.iommu!.entries), rs.iommu!.iovaSize, 'the entries map the whole IOVA range');
  // the device reads and writes across the pieces through its IOVA
  const data = pattern(2 * MiB + 4 * KiB, 3);
  await c.device.write('gpu', sg.handle, 0, data);
  await cpuSees(t, c, sg, 0, data, 'the CPU sees what the gpu wrote through its IOVA');
  const at = Math.min(sg.segments[0]!.len, 2 * MiB + 4 * KiB - 2500) - 2500; // straddles the first physical piece's end
  const cpu = pattern(5000, 4, at);
  await c.write(sg.handle, at, cpu);
  await deviceSees(t, c, 'gpu', sg, at, cpu, 'the gpu sees what the CPU wrote, across a piece boundary');

  // a sub-page buffer: the device address carries the offset in the page
  const tiny = await c.alloc({ pool: 'wc', size: 100 });
  const rt = await c.register(tiny.handle, 'gpu');
  t.equal(rt.deviceAddress % 4096, tiny.segments[0]!.addr % 4096, 'offset in the page kept');
  t.same(rt.iommu!.entries, { 4096: 1 });
  await c.device.write('gpu', tiny.handle, 0, pattern(100, 8));
  await cpuSees(t, c, tiny, 0, pattern(100, 8), 'sub-page: the CPU sees the gpu write');
  t.equal((await rejection(c.device.read('gpu', tiny.handle, 1, 100))).code, 'EINVAL', 'past the end');

  // a buffer whose hugepages are only reserved is populated by registration
  const lazy = await c.alloc({ pool: 'wc', size: 4 * MiB, populate: false });
  t.match(lazy, { populated: false, segments: [], reservedHugepages: 2 });
  const rl = await c.register(lazy.handle, 'gpu');
  t.same(rl.iommu!.entries, { [2 * MiB]: 2 });
  t.match(await c.info(lazy.handle), { populated: true, reservedHugepages: 0, registrations: ['gpu'] });
  await c.unregister(lazy.handle, 'gpu');

  // unregister gives the IOVA and the entries back
  const before = await driverStatus(c, 'gpu');
  await c.unregister(wc.handle, 'gpu');
  const after = await driverStatus(c, 'gpu');
  t.equal(after.iovaUsed, before.iovaUsed - 4 * MiB, '4 MiB of IOVA back');
  t.equal(after.iommuEntries[String(2 * MiB)] ?? 0, (before.iommuEntries[String(2 * MiB)] ?? 0) - 2, 'its two 2 MiB entries are gone');
  t.equal(mapped(after.iommuEntries), mapped(before.iommuEntries) - 4 * MiB);
  for (const h of [un, sg, tiny]) await c.unregister({ buffer: h.buffer }, 'gpu');
  t.match(await driverStatus(c, 'gpu'), { registrations: 0, bytes: 0, iovaUsed: 0, iommuEntries: {} });
  const again = await c.register(wc.handle, 'gpu');
  t.equal(again.iommu!.iova, rw.iommu!.iova, 'the freed IOVA is handed out again');
});

t.test('capture bounces a buffer above 4 GiB; jpeg refuses it', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const SIZE = 128 * KiB;
  const h = await c.alloc({ pool: 'default', size: SIZE });
  t.equal(h.segments.length, 1);
  t.ok(h.segments[0]!.addr >= 4 * GiB, 'above 4 GiB');
  await c.write(h.handle, 0, pattern(SIZE, 1));

  const r = await c.register(h.handle, 'capture');
  t.equal(r.bounced, SIZE, 'every byte bounced');
  t.equal(r.iommu, null);
  t.ok(r.segments.every((s) => s.addr + s.len <= 4 * GiB), 'the device segments are below 4 GiB');
  const st = await c.status();
  const pool = st.dma.bounce!;
  t.ok(r.deviceAddress >= pool.base && r.deviceAddress + SIZE <= pool.base + pool.size, 'inside the bounce pool');
  t.match(st.drivers.find((x) => x.name === 'capture'), { registrations: 1, bytes: SIZE, bounceSlots: { used: SIZE / 2048, total: pool.slots } });
  t.equal(pool.used, SIZE / 2048);

  // register (dma_map) copied the buffer into the bounce slots; after that data moves only at sync points
  await deviceSees(t, c, 'capture', h, 0, pattern(SIZE, 1), 'the device sees what the CPU wrote before registering');
  await c.sync(h.handle, { phase: 'start', access: 'write', offset: 1000, length: 5000 });
  await c.write(h.handle, 1000, pattern(5000, 2, 1000));
  await c.sync(h.handle, { phase: 'end', access: 'write', offset: 1000, length: 5000 });
  await deviceSees(t, c, 'capture', h, 1000, pattern(5000, 2, 1000), 'and what it wrote after, once synced for the device');
  await deviceSees(t, c, 'capture', h, 0, pattern(1000, 1), 'the bounce bytes outside the synced range are untouched');
  await c.device.write('capture', h.handle, 70_000, pattern(20_000, 3, 70_000));
  await c.sync(h.handle, { phase: 'start', access: 'read', offset: 70_000, length: 20_000 });
  await cpuSees(t, c, h, 70_000, pattern(20_000, 3, 70_000), 'the CPU sees what the device wrote, once synced for the CPU');
  await c.sync(h.handle, { phase: 'end', access: 'read', offset: 70_000, length: 20_000 });
  await c.device.fill('capture', h.handle, 100, 50, 0xab);
  await c.sync(h.handle, { phase: 'start', access: 'read', offset: 0, length: 150 });
  await cpuSees(t, c, h, 100, Buffer.alloc(50, 0xab), 'the CPU sees what the device filled, once synced for the CPU');
  await cpuSees(t, c, h, 0, pattern(100, 1), 'the bytes before are the CPU\'s');
  await c.sync(h.handle, { phase: 'end', access: 'read', offset: 0, length: 150 });
  t.same((await c.violations({ buffer: h.buffer })).violations, [], 'the synced flow is free of coherency violations');

  // the same buffer on jpeg (no IOMMU, may not bounce): refused on the mask
  const e = await rejection(c.register(h.handle, 'jpeg'));
  t.equal(e.code, 'EATTR');
  t.ok((e.details as { mismatches: { attribute: string }[] }).mismatches.some((m) => m.attribute === 'dmaMask'), 'dmaMask among them');

  // unregister: slots back, the data stays
  await c.unregister(h.handle, 'capture');
  const st2 = await c.status();
  t.equal(st2.dma.bounce!.used, 0);
  t.match(st2.drivers.find((x) => x.name === 'capture'), { registrations: 0, bounceSlots: { used: 0 } });
  await cpuSees(t, c, h, 70_000, pattern(20_000, 3, 70_000), 'the device\'s data survives unregister');
  await cpuSees(t, c, h, 100, Buffer.alloc(50, 0xab), 'and so does what it filled');
  t.same((await c.violations({ buffer: h.buffer })).violations, [], 'a synced unregister is no violation either');
});

t.test('a CPU write while the device owns a bounced buffer is a violation, and unregister (dma_unmap) copies the bounce data back over it', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const h = await c.alloc({ pool: 'default', size: 8 * KiB });
  t.ok(h.segments[0]!.addr >= 4 * GiB, 'above 4 GiB');
  await c.write(h.handle, 0, pattern(8 * KiB, 1));
  t.equal((await c.register(h.handle, 'capture')).bounced, 8 * KiB, 'bounced: the device works on copies');
  const events = collect<ViolationEvent>(c, 'violation');

  // no sync start: the device still owns the buffer
  const ev = nextEvent<ViolationEvent>(c, 'violation');
  await c.write(h.handle, 0, Buffer.alloc(16, 3));
  t.match(
    await ev,
    { event: 'violation', kind: 'cpu-access-while-device-owned', client: { id: c.id, name: 'app' }, buffer: h.buffer, driver: 'capture', op: 'write', range: { offset: 0, length: 16 }, mode: 'warn', message: /sync \{phase:'start', access:'write'\}/ },
    'the holder is told: a CPU write while the device owns the buffer, naming the missing sync',
  );
  await c.unregister(h.handle, 'capture');
  const v = (await c.violations({ buffer: h.buffer })).violations;
  t.match(
    v,
    [
      { kind: 'cpu-access-while-device-owned', driver: 'capture', op: 'write', range: { offset: 0, length: 16 } },
      { kind: 'unsynced-unregister', driver: 'capture', op: 'unregister', message: /dirty/ },
    ],
    'recorded: the unsynchronised write, then an unregister with its dirty line still in the cache',
  );
  t.equal(v.length, 2, 'nothing else');
  t.same(events.map((e) => e.kind), ['cpu-access-while-device-owned', 'unsynced-unregister'], 'both sent as events');
  await cpuSees(t, c, h, 0, pattern(16, 1), 'dma_unmap copied the bounce data back over the CPU write: it is lost');
  await cpuSees(t, c, h, 16, pattern(8 * KiB - 16, 1, 16), 'the rest is what the bounce slots held');
});

t.test('CPU writes made inside a sync bracket survive unregister of a bounced buffer', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const h = await c.alloc({ pool: 'default', size: 8 * KiB });
  t.ok(h.segments[0]!.addr >= 4 * GiB, 'above 4 GiB');
  await c.write(h.handle, 0, pattern(8 * KiB, 1));
  t.equal((await c.register(h.handle, 'capture')).bounced, 8 * KiB, 'bounced');
  await c.device.write('capture', h.handle, 4096, Buffer.alloc(16, 9));
  // the device touched the buffer last; the CPU takes it for read-modify-write (rw: the bounce data comes back first)
  await c.sync(h.handle, { phase: 'start', access: 'rw' });
  await c.write(h.handle, 0, Buffer.alloc(16, 3));
  await c.sync(h.handle, { phase: 'end', access: 'rw' });
  await c.unregister(h.handle, 'capture');
  await cpuSees(t, c, h, 0, Buffer.alloc(16, 3), 'the CPU write is still there');
  await cpuSees(t, c, h, 16, pattern(4096 - 16, 1, 16), 'around it, the CPU\'s earlier data');
  await cpuSees(t, c, h, 4096, Buffer.alloc(16, 9), 'and the device\'s write survives too');
  t.same((await c.violations({ buffer: h.buffer })).violations, [], 'no violations');
});

t.test('bounce pool exhaustion: ENOMEM naming the device; unregistering frees slots', async (t) => {
  const d = await startDaemon(t, { config: { ...DEFAULT_MACHINE, bounce: { size: '64K', region: 'dram', maxMapping: '64K' } } });
  const c = await client(t, d.socket, 'app');
  const st0 = await c.status();
  t.match(st0.dma.bounce, { size: 64 * KiB, slots: 32, used: 0, full: 0 });

  const regs: { h: HandleInfo; r: RegistrationInfo }[] = [];
  let err: Error | null = null;
  const low: number[] = [];
  for (let i = 0; i < 40 && err === null; i++) {
    const h = await c.alloc({ pool: 'default', size: 4 * KiB });
    if (h.segments[0]!.addr < 4 * GiB) low.push(i);
    try {
      regs.push({ h, r: await c.register(h.handle, 'capture') });
    } catch (e) {
      err = e as Error;
      t.same((await c.info(h.handle)).refs.registrations, 0, 'the refused buffer holds no registration');
      regs.push({ h, r: null as never });
    }
  }
  t.same(low, [], 'every buffer lies above 4 GiB');
  const refusedAt = regs.length - 1;
  t.equal(refusedAt, 16, '16 registrations of two 2 KiB slots fill 32 slots');
  t.match(err, { code: 'ENOMEM', message: /^swiotlb buffer is full \(sz: 4096 bytes\), total 32 \(slots\), used 32 \(slots\)/, details: { device: 'capture', free: 0, total: 32 } });
  t.match(err!.message, /'capture'/, 'the message names the device');
  const st = await c.status();
  t.match(st.dma.bounce, { used: 32, full: 1 });
  t.match(st.drivers.find((x) => x.name === 'capture'), { registrations: 16, bounceSlots: { used: 32, total: 32 } });

  // a segment larger than the largest mapping is ENOMEM too, whatever is free
  await c.unregister(regs[0]!.h.handle, 'capture');
  const big = await c.alloc({ pool: 'default', size: 128 * KiB });
  t.match(await rejection(c.register(big.handle, 'capture')), { code: 'ENOMEM', message: /swiotlb buffer is full \(sz: 131072 bytes\).*device 'capture' needs a 128 KiB bounce mapping; the largest bounce mapping is 64 KiB \(bounce.maxMapping\)/ });

  // unregistering frees slots; the refused buffer now registers
  const last = regs[refusedAt]!.h;
  const r = await c.register(last.handle, 'capture');
  t.equal(r.bounced, 4 * KiB);
  t.equal((await c.status()).dma.bounce!.used, 32);

  // fragmentation: every other 2-slot run free is 16 free slots, but no run of 4 for an 8 KiB segment
  const inOrder = [last, ...regs.slice(1, refusedAt).map((x) => x.h)];
  for (let i = 0; i < inOrder.length; i += 2) await c.unregister(inOrder[i]!.handle, 'capture');
  t.equal((await c.status()).dma.bounce!.used, 16);
  const eight = await c.alloc({ pool: 'default', size: 8 * KiB });
  t.match(await rejection(c.register(eight.handle, 'capture')), {
    code: 'ENOMEM',
    message: /swiotlb buffer is full \(sz: 8192 bytes\).*device 'capture' needs 4 contiguous slots \(8 KiB\) starting on a page inside one 128-slot segment; 16 of 32 free/,
    details: { device: 'capture', slots: 4, free: 16, total: 32 },
  });
  for (let i = 1; i < inOrder.length; i += 2) await c.unregister(inOrder[i]!.handle, 'capture');
  t.equal((await c.status()).dma.bounce!.used, 0, 'all slots back');
  t.equal((await c.register(eight.handle, 'capture')).bounced, 8 * KiB, 'and the 8 KiB buffer fits');
  t.match((await c.status()).drivers.find((x) => x.name === 'capture'), { registrations: 1, bounceSlots: { used: 4 }, refused: 3, leaks: 0 }, 'every refusal counts, bounce pool full included');
});

t.test('IOVA exhaustion on a client driver with a tiny IOMMU: ENOMEM naming the device', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const drv = await client(t, d.socket, 'tiny-drv');
  await drv.attachDriver('tiny', { iommu: { pageSizes: [4096], iovaSize: 1 * MiB } });
  t.match(await driverStatus(c, 'tiny'), { kind: 'client', owner: drv.id, iommu: true, iovaTotal: 1 * MiB - 4096 });
  const a = await c.alloc({ pool: 'default', size: 512 * KiB });
  const b = await c.alloc({ pool: 'default', size: 512 * KiB });
  const ra = await c.register(a.handle, 'tiny');
  t.same(ra.iommu!.entries, { 4096: 128 });
  const e = await rejection(c.register(b.handle, 'tiny'));
  t.match(e, { code: 'ENOMEM', message: /IOVA space of device 'tiny' exhausted/, details: { device: 'tiny', needed: 512 * KiB } });
  t.same((await c.info(b.handle)).registrations, []);
  t.equal((await c.info(b.handle)).refs.registrations, 0);
  const big = await c.alloc({ pool: 'default', size: 1 * MiB });
  t.match(await rejection(c.register(big.handle, 'tiny')), { code: 'ENOMEM', message: /'tiny'/ }, 'more than the whole space');
  await c.unregister(a.handle, 'tiny');
  const rb = await c.register(b.handle, 'tiny');
  t.equal(rb.iommu!.iovaSize, 512 * KiB, 'fits once the first is unregistered');
  t.match(await driverStatus(c, 'tiny'), { registrations: 1, iovaUsed: 512 * KiB, iommuEntries: { 4096: 128 } });
});
