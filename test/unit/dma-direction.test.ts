/**
 * DMA direction (daemon/dma/direction.ts through the coherency model):
 * every sync of every registration direction gives exactly what
 * kernel/dma/debug.c's check_sync reports — the table is computed here by
 * debug.c's conditions over include/linux/dma-direction.h's enum, with
 * drivers/dma-buf/dma-buf.c's mapping of DMA_BUF_SYNC_* to directions —
 * and device accesses against the direction are reported; dma-debug only
 * warns, so in warn mode everything is still performed, and swiotlb does
 * not copy a to-device mapping back at unmap.
 */
import t from 'tap';
import { world, A, BOUNCE, C1, DEV } from '../helpers/coherency-world.js';
import { DMA_DIRECTIONS, DIR2NAME, type DmaDirection } from '../../daemon/dma/direction.js';
import { BufferdError } from '../../protocol/errors.js';

// include/linux/dma-direction.h
const DMA_BIDIRECTIONAL = 0;
const DMA_TO_DEVICE = 1;
const DMA_FROM_DEVICE = 2;
const ENUM: Record<DmaDirection, number> = { bidirectional: DMA_BIDIRECTIONAL, 'to-device': DMA_TO_DEVICE, 'from-device': DMA_FROM_DEVICE };
// dma_buf_ioctl: DMA_BUF_SYNC_READ → DMA_FROM_DEVICE, _WRITE → DMA_TO_DEVICE, _RW → DMA_BIDIRECTIONAL
const IOCTL = { read: DMA_FROM_DEVICE, write: DMA_TO_DEVICE, rw: DMA_BIDIRECTIONAL } as const;

/** check_sync's direction checks (entry: the mapping, ref: the sync), as debug.c states them: the messages it prints. */
function debugCheckSync(entry: number, ref: number, toCpu: boolean): string[] {
  const out: string[] = [];
  if (entry === DMA_BIDIRECTIONAL) return out;
  if (ref !== entry) out.push('device driver syncs DMA memory with different direction');
  if (toCpu && !(entry === DMA_FROM_DEVICE) && !(ref === DMA_TO_DEVICE)) out.push('device driver syncs device read-only DMA memory for cpu');
  if (!toCpu && !(entry === DMA_TO_DEVICE) && !(ref === DMA_FROM_DEVICE)) out.push('device driver syncs device write-only DMA memory to device');
  return out;
}

t.test('every sync of every mapping direction reports what debug.c check_sync prints', async (t) => {
  let reported = 0;
  for (const dir of DMA_DIRECTIONS) {
    for (const access of ['read', 'write', 'rw'] as const) {
      for (const phase of ['start', 'end'] as const) {
        const { coh, buffer, register } = world();
        const b = buffer([{ addr: A, len: 256 }]);
        register(b, 'dev', false, undefined, dir);
        // an end needs its start: the start's own reports are left out
        if (phase === 'end') coh.sync(C1, b, 'start', access);
        const before = coh.total;
        coh.sync(C1, b, phase, access);
        const got = coh.violations().slice(before);
        const want = debugCheckSync(ENUM[dir], IOCTL[access], phase === 'start');
        const label = `${dir} mapping, sync ${phase} ${access}`;
        t.same(got.map((v) => v.message.slice(v.message.indexOf('device driver syncs')).replace(/ \[mapped with.*$/, '')), want, label);
        for (const v of got) {
          t.match(v.message, `[mapped with ${DIR2NAME[dir]}] [synced with ${['DMA_BIDIRECTIONAL', 'DMA_TO_DEVICE', 'DMA_FROM_DEVICE'][IOCTL[access]]}]`, `${label}: dir2name tags`);
          t.match(v, { driver: 'dev', op: `sync ${phase}`, client: C1 });
        }
        reported += got.length;
      }
    }
  }
  t.ok(reported >= 6, `reports were made (${reported}), not only silence`);
});

t.test('the kinds name debug.c\'s messages', async (t) => {
  const { coh, buffer, register } = world();
  const b = buffer();
  register(b, 'dev', false, undefined, 'to-device');
  coh.sync(C1, b, 'start', 'read');
  t.same(coh.violations().map((v) => v.kind), ['sync-different-direction', 'sync-read-only-for-cpu']);
  const w = world();
  const c = w.buffer();
  w.register(c, 'dev', false, undefined, 'from-device');
  w.coh.sync(C1, c, 'start', 'rw');
  w.coh.sync(C1, c, 'end', 'rw');
  t.same(w.coh.violations().map((v) => v.kind), ['sync-different-direction', 'sync-different-direction', 'sync-write-only-to-device']);
});

t.test('a device writing a to-device mapping or reading a from-device one is reported and still performed (warn)', async (t) => {
  const { coh, store, buffer, register, devRead, devWrite, kinds } = world();
  const b = buffer();
  const tx = register(b, 'tx', false, undefined, 'to-device');
  devRead(tx, 0, 8);
  t.same(kinds(), [], 'reading a to-device mapping is its purpose');
  devWrite(tx, 0, Buffer.from('oops'));
  t.same(kinds(), ['device-write-to-read-only']);
  t.same(store.read(A, 4), Buffer.from('oops'), 'dma-debug only warns: the write landed');
  t.match(coh.violations()[0], { driver: 'tx', op: 'device.write', range: { offset: 0, length: 4 }, client: DEV });
  t.match(coh.violations()[0]!.message, "device 'tx' wrote buffer 1, registered as to-device: the device wrote device read-only DMA memory [mapped with DMA_TO_DEVICE]");
  const c = buffer([{ addr: A + 4096, len: 256 }]);
  const rx = register(c, 'rx', false, undefined, 'from-device');
  devWrite(rx, 0, Buffer.from('frame'));
  t.equal(kinds().length, 1, 'writing a from-device mapping is its purpose');
  t.same(devRead(rx, 0, 5), Buffer.from('frame'), 'the read is performed');
  t.same(kinds(), ['device-write-to-read-only', 'device-read-of-write-only']);
  const bi = register(buffer([{ addr: A + 8192, len: 64 }]), 'bi', false);
  devWrite(bi, 0, Buffer.from('x'));
  devRead(bi, 0, 1);
  t.equal(kinds().length, 2, 'a bidirectional mapping allows both');
});

t.test('strict: a sync against the direction is refused before anything changes', async (t) => {
  const { coh, buffer, register, devWrite } = world({ mode: 'strict' });
  const b = buffer();
  const rx = register(b, 'rx', false, undefined, 'from-device');
  devWrite(rx, 0, Buffer.from('frame'));
  const e = t.throws(() => coh.sync(C1, b, 'start', 'write')) as unknown as BufferdError;
  t.match(e, { code: 'ECOHERENCY', message: /^sync-different-direction: .*\[mapped with DMA_FROM_DEVICE\] \[synced with DMA_TO_DEVICE\]/ });
  t.doesNotThrow(() => coh.sync(C1, b, 'start', 'read'), 'the right direction is fine: no bracket was opened by the refused one');
  t.same(coh.cpuRead(C1, b, 0, 5), Buffer.from('frame'));
});

t.test('swiotlb: a to-device mapping is not copied back at unmap; from-device and bidirectional are', async (t) => {
  for (const dir of DMA_DIRECTIONS) {
    const { store, buffer, register, unregister, devWrite } = world();
    const b = buffer([{ addr: A, len: 128 }]);
    const r = register(b, 'cap', false, BOUNCE, dir);
    devWrite(r, 0, Buffer.from('bounce'));
    t.same(store.read(A, 6), Buffer.alloc(6), `${dir}: the device wrote the slots only`);
    unregister(C1, r);
    t.same(store.read(A, 6), dir === 'to-device' ? Buffer.alloc(6) : Buffer.from('bounce'), `${dir}: swiotlb_tbl_unmap_single ${dir === 'to-device' ? 'does not copy' : 'copies'} back`);
  }
});
