/**
 * The swiotlb rules of kernel/dma/swiotlb.c as the daemon applies them:
 * a bounce mapping never crosses a 128-slot segment (IO_TLB_SEGSIZE), so
 * it is at most 256 KiB and a config asking for more is refused at load;
 * a mapping of a page or more starts on a page of the pool. A refusal reads
 * as Linux's ("swiotlb buffer is full (sz: …)") and names the reason.
 */
import t from 'tap';
import { DAEMON, runNode, startDaemon, tempDir, writeJson } from '../helpers/daemon.js';
import { rejection } from '../helpers/procs.js';
import { client, driverStatus, KiB, GiB } from '../helpers/drivers.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

const SLOT = 2 * KiB;

t.test('bounce.maxMapping above 256 KiB: the daemon refuses the config at load, naming the limit', async (t) => {
  const dir = tempDir(t);
  const cfg = writeJson(dir, 'config.json', { ...DEFAULT_MACHINE, bounce: { size: '64M', region: 'dram', maxMapping: '1M' } });
  const r = await runNode([DAEMON, '--socket', `${dir}/s.sock`, '--config', cfg]);
  t.equal(r.code, 1);
  t.match(r.stderr, 'config /bounce/maxMapping: 1 MiB is above the swiotlb limit of 256 KiB (IO_TLB_SEGSIZE 128 slots × IO_TLB_SIZE 2 KiB');
});

t.test('a 512 KiB segment is refused as Linux refuses it; 256 KiB bounces', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  // a device with no segment limit of its own: only swiotlb's applies
  await c.attachDriver('wide', { dmaMask: 32, bounce: true });
  const big = await c.alloc({ pool: 'huge', size: 512 * KiB, minAddress: 4 * GiB });
  t.same(big.segments.length, 1, 'one physically contiguous 512 KiB segment above 4 GiB');
  const e = await rejection(c.register(big.handle, 'wide'));
  t.match(e, { code: 'ENOMEM', details: { device: 'wide', len: 512 * KiB, maxMapping: 256 * KiB } });
  t.match(e.message, /^swiotlb buffer is full \(sz: 524288 bytes\), total 32768 \(slots\), used 0 \(slots\): device 'wide' needs a 512 KiB bounce mapping; a mapping may not cross a 128-slot segment, so it is at most 256 KiB/);
  t.match(await driverStatus(c, 'wide'), { registrations: 0, refused: 1, bounceSlots: { used: 0 } }, 'counted as refused, nothing held');
  const ok = await c.alloc({ pool: 'huge', size: 256 * KiB, minAddress: 4 * GiB });
  const r = await c.register(ok.handle, 'wide');
  t.equal(r.bounced, 256 * KiB, 'exactly one segment bounces');
  const base = (await c.status()).dma.bounce!.base;
  t.equal((r.deviceAddress - base) % (128 * SLOT), 0, 'it takes a whole segment');
  await c.unregister(ok.handle, 'wide');
});

t.test('capture: a run that would cross a segment goes to the next one; a page or more starts on a page', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'app');
  const base = (await c.status()).dma.bounce!.base;
  const slotOf = (addr: number) => (addr - base) / SLOT;
  const reg = async (size: number) => {
    const h = await c.alloc({ pool: 'default', size, minAddress: 4 * GiB });
    const r = await c.register(h.handle, 'capture');
    t.same(r.segments.length, 1, `${size} bytes: one bounced piece`);
    return slotOf(r.deviceAddress);
  };
  t.equal(await reg(200 * KiB), 0, '100 slots from the start of the pool');
  // 64 more slots would reach slot 164, across slot 128: the search moves on to the next segment
  t.equal(await reg(128 * KiB), 128, 'not slot 100');
  t.equal(await reg(4 * KiB), 192, 'next fit after the last run, on a page (even slot)');
  t.match((await c.status()).dma.bounce, { used: 100 + 64 + 2 });
});
