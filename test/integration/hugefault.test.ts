/**
 * Hugepage faults through the real daemon: a populate: false buffer's
 * hugepages are backed one at a time by the accesses that touch them
 * (mm/hugetlb.c, hugetlb_no_page), and `status` shows Linux's counters:
 * a 1-byte write in the middle hugepage of a 3-hugepage buffer moves free
 * and reserved down by one each. What faults nothing (a refused access,
 * sync, a record-only map), what backs the whole buffer (a real mapping,
 * exportFd, register: mm/gup.c pins every page), and freeing a partly
 * backed buffer.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { client } from '../helpers/drivers.js';
import { rejection } from '../helpers/procs.js';
import { closeFd, type BufferClient } from '../../client/index.js';

const MiB = 2 ** 20;
const H = 2 * MiB;

const d = await startDaemon(t, {
  config: {
    memory: { regions: [{ name: 'ram', base: '0x40000000', size: '64M', kind: 'dram' }] },
    hugepages: [{ size: '2M', region: 'ram', nr: 10, overcommit: 0 }],
    pools: [
      { name: 'small', cache: 'writeback', region: 'ram' },
      { name: 'huge', cache: 'writeback', pageSize: '2M', region: 'ram' },
    ],
    drivers: [{ name: 'nic', description: 'coherent scatter-gather NIC', constraints: { coherent: true, dmaMask: 64 } }],
  },
});

/** The 2 MiB hugepage counters of `status`. */
async function hp(c: BufferClient) {
  const s = (await c.status()).hugepages.find((h) => h.size === H)!;
  return { total: s.total, free: s.free, reserved: s.reserved, inUse: s.inUse };
}

t.test('a 1-byte write in the middle hugepage backs that one only: free 7, reserved 2', async (t) => {
  const c = await client(t, d.socket, 'faulter');
  t.same(await hp(c), { total: 10, free: 10, reserved: 0, inUse: 0 });
  // 2 hugepages in use by a populated buffer: free 10 − 2 = 8
  const other = await c.alloc({ pool: 'huge', size: 2 * H });
  // populate: false, 3 hugepages: only reserved (hugetlb_reserve_pages): free 8, reserved 3
  const b = await c.alloc({ pool: 'huge', size: 3 * H, populate: false });
  t.match(b, { kind: 'direct', populated: false, reservedHugepages: 3, backedHugepages: 0, segments: [] });
  t.same(await hp(c), { total: 10, free: 8, reserved: 3, inUse: 2 });

  // refused accesses fault nothing
  t.equal((await rejection(c.write(b.handle, 3 * H, Buffer.from([1])))).code, 'EINVAL', 'a write past the end is refused');
  t.same(await hp(c), { total: 10, free: 8, reserved: 3, inUse: 2 }, '...and faulted nothing in');
  // sync and a record-only map fault nothing: no page, no cache lines to maintain
  await c.sync(b.handle, { phase: 'start', access: 'rw' });
  await c.sync(b.handle, { phase: 'end', access: 'rw' });
  const rec = await c.mapRemote(b.handle);
  t.same(await hp(c), { total: 10, free: 8, reserved: 3, inUse: 2 }, 'sync and map (no nonce) back nothing');

  // the example: one byte at 3 MiB, in the middle hugepage → free 8 − 1 = 7, reserved 3 − 1 = 2
  await c.write(b.handle, H + MiB, Buffer.from([0x5a]));
  t.same(await hp(c), { total: 10, free: 7, reserved: 2, inUse: 3 });
  const i1 = await c.info(b.handle);
  t.match(i1, { populated: false, contiguous: false, reservedHugepages: 2, backedHugepages: 1 });
  t.equal(i1.segments.length, 1);
  t.match(i1.segments[0], { offset: H, len: H }, 'the one backed piece, at offset 2 MiB');
  t.same([...(await c.read(b.handle, H + MiB - 1, 3))], [0, 0x5a, 0], 'the byte reads back, no further fault');
  t.same(await hp(c), { total: 10, free: 7, reserved: 2, inUse: 3 });

  // an access through the record-only mapping faults its hugepage: the first one
  await c.write({ mapping: rec.mapping }, 10, Buffer.from([0x33]));
  t.same(await hp(c), { total: 10, free: 6, reserved: 1, inUse: 4 });
  t.match(await c.info(b.handle), { reservedHugepages: 1, backedHugepages: 2 });
  await c.unmap(rec.mapping);

  // fill the whole buffer (1 MiB writes): the last hugepage faults, the earlier bytes are kept
  const chunk = Buffer.alloc(MiB, 0xee);
  for (let off = 0; off < 3 * H; off += MiB) if (off !== 0 && off !== H + MiB) await c.write(b.handle, off, chunk);
  t.same(await hp(c), { total: 10, free: 5, reserved: 0, inUse: 5 });
  const i2 = await c.info(b.handle);
  t.match(i2, { populated: true, reservedHugepages: 0, backedHugepages: 3 });
  t.equal(i2.segments.reduce((n, s) => n + s.len, 0), 3 * H);
  t.ok(i2.segments.every((s) => s.offset === undefined), 'a fully backed buffer lists its segments as before');
  t.same([...(await c.read(b.handle, 10, 1)), ...(await c.read(b.handle, H + MiB, 1))], [0x33, 0x5a]);

  // free: its 3 pages back to the pool; then the other's 2
  await c.close(b.handle);
  t.same(await hp(c), { total: 10, free: 8, reserved: 0, inUse: 2 });
  await c.close(other.handle);
  t.same(await hp(c), { total: 10, free: 10, reserved: 0, inUse: 0 });
});

t.test('freeing a partly backed buffer gives back its page and its reservations', async (t) => {
  const c = await client(t, d.socket, 'partial');
  const b = await c.alloc({ pool: 'huge', size: 4 * H, populate: false });
  await c.write(b.handle, 4 * H - 1, Buffer.from([1]));
  t.same(await hp(c), { total: 10, free: 9, reserved: 3, inUse: 1 });
  await c.close(b.handle);
  t.same(await hp(c), { total: 10, free: 10, reserved: 0, inUse: 0 }, 'free 9 + 1, reserved 3 − 3');
  // a client that goes away with a partly backed buffer leaves nothing either
  const gone = await client(t, d.socket, 'leaver');
  const g = await gone.alloc({ pool: 'huge', size: 2 * H, populate: false });
  await gone.write(g.handle, 0, Buffer.from([1]));
  t.same(await hp(c), { total: 10, free: 9, reserved: 1, inUse: 1 });
  await gone.disconnect();
  const end = Date.now() + 30_000;
  let s = await hp(c);
  while ((s.reserved !== 0 || s.inUse !== 0) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    s = await hp(c);
  }
  t.same(s, { total: 10, free: 10, reserved: 0, inUse: 0 });
});

t.test('register, a real mapping and exportFd back the whole buffer', async (t) => {
  const c = await client(t, d.socket, 'pinner');
  // register pins every page for DMA (get_user_pages faults them all in)
  const r = await c.alloc({ pool: 'huge', size: 3 * H, populate: false });
  await c.register(r.handle, 'nic');
  t.same(await hp(c), { total: 10, free: 7, reserved: 0, inUse: 3 });
  t.match(await c.info(r.handle), { populated: true, backedHugepages: 3, registrations: ['nic'] });
  await c.unregister(r.handle, 'nic');
  await c.close(r.handle);
  // a real mapping: the client's own loads and stores never reach the daemon, so it is backed at once
  const m = await c.alloc({ pool: 'huge', size: 2 * H, populate: false });
  const map = await c.map(m.handle);
  t.same(await hp(c), { total: 10, free: 8, reserved: 0, inUse: 2 });
  map.bytes[H + 7] = 0x42;
  t.same([...(await c.read(m.handle, H + 7, 1))], [0x42], 'a store through the mapping is the buffer');
  await map.unmap();
  await c.close(m.handle);
  // exportFd
  const e = await c.alloc({ pool: 'huge', size: 2 * H + 1, populate: false });
  const fd = await c.exportFd(e.handle);
  t.teardown(() => closeFd(fd.fd));
  t.same(await hp(c), { total: 10, free: 7, reserved: 0, inUse: 3 });
  t.match(await c.info(e.handle), { populated: true, reservedHugepages: 0, backedHugepages: 3 });
  await c.close(e.handle);
});
