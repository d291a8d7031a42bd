/**
 * Sizes in the client library: alloc's size and align, read's length and
 * setHugepages' page size take bytes or strings as the config does ("6M",
 * "64K", "0x3000"); bad strings and negative numbers (3 << 30) reject with
 * EINVAL naming the field, before anything is sent.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { client, KiB, MiB, GiB } from '../helpers/drivers.js';
import { readCookie, BufferdError } from '../../client/index.js';
import { bytes } from '../../client/sizes.js';

t.test('bytes(): the config units, and what it refuses', async (t) => {
  t.equal(bytes('6M', 'alloc', 'size'), 6 * MiB);
  t.equal(bytes('3G', 'alloc', 'size'), 3 * GiB, '3G is 3 * 2 ** 30, not 3 << 30');
  t.equal(bytes('64KiB', 'alloc', 'align'), 64 * KiB);
  t.equal(bytes('0x3000', 'alloc', 'size'), 0x3000);
  t.equal(bytes(' 100 ', 'alloc', 'size'), 100);
  t.equal(bytes(12345, 'alloc', 'size'), 12345, 'numbers pass as they are');
  t.throws(() => bytes('6Q', 'alloc', 'size'), { code: 'EINVAL', message: /alloc: size '6Q' is not a size/, details: { field: 'size', value: '6Q' } });
  t.throws(() => bytes(3 << 30, 'alloc', 'size'), { code: 'EINVAL', message: /alloc: size -1073741824 is negative .*3 \* 2 \*\* 30 or "3G"/ });
  t.throws(() => bytes('99999999999T', 'read', 'length'), { message: /read: length '99999999999T' is too large/ });
});

t.test('alloc, read and setHugepages take size strings', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'sizes');
  const h = await c.alloc({ pool: 'huge', size: '6M' });
  t.equal(h.size, 6 * MiB);
  t.equal(h.pool, 'huge');
  const a = await c.alloc({ pool: 'default', size: '0x3000', align: '64K' });
  t.equal(a.size, 0x3000);
  t.equal(a.align, 64 * KiB);
  t.equal(a.segments[0]!.addr % (64 * KiB), 0, 'aligned to 64 KiB');
  const f = await c.alloc({ for: ['gpu'], size: '1M' });
  t.equal(f.size, MiB);
  await c.write(h.handle, 0, Buffer.from('hello'));
  t.equal((await c.read(h.handle, 0, '4K')).length, 4 * KiB);

  // refused before sending: the daemon never sees them
  await t.rejects(c.alloc({ pool: 'huge', size: '6 MB!' }), { code: 'EINVAL', message: /alloc: size '6 MB!' is not a size/ });
  await t.rejects(c.alloc({ pool: 'huge', size: 3 << 30 }), { code: 'EINVAL', message: /negative/ });
  await t.rejects(c.alloc({ pool: 'huge', size: '1M', align: 'x' }), { code: 'EINVAL', details: { field: 'align' } });
  await t.rejects(c.read(h.handle, 0, 'lots'), { code: 'EINVAL', message: /read: length 'lots'/ });
  const e = await c.alloc({ pool: 'huge', size: -5 }).catch((x: unknown) => x);
  t.ok(e instanceof BufferdError, 'a BufferdError, as the daemon would answer');
  t.ok(c.closed === false, 'the connection is fine');
  t.equal((await c.info(h.handle)).size, 6 * MiB);

  const admin = await client(t, d.socket, 'sizes-admin', { token: readCookie(d.socket)! });
  const r = await admin.setHugepages('2M', 64);
  t.equal(r.size, 2 * MiB);
  t.equal(r.reached, 64);
  await t.rejects(admin.setHugepages('2 megs', 64), { code: 'EINVAL', message: /hugepages.set: size '2 megs'/ });
});
