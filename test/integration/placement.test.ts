/**
 * alloc {minAddress} through the daemon: a buffer placed at or above a
 * physical address (whole pages of its own), with `pool` or `for`, and every
 * refusal naming what it refused: a misaligned address, populate: false, a
 * pool that lies below it, drivers that could never reach it, not enough
 * memory there.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { rejection } from '../helpers/procs.js';
import { client, MiB } from '../helpers/drivers.js';
import type { HandleInfo } from '../../client/index.js';

const GiB = 2 ** 30;
const FOUR_GIB = 2 ** 32;
const above = (h: HandleInfo, min: number) => h.segments.length > 0 && h.segments.every((s) => s.addr >= min);

t.test('a buffer placed above 4 GiB: direct, every segment there, counted in whole pages', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'placer');
  const h = await c.alloc({ pool: 'huge', size: MiB, minAddress: FOUR_GIB });
  t.match(h, { pool: 'huge', kind: 'direct', size: MiB, usize: 2 * MiB, contiguous: true, populated: true });
  t.ok(above(h, FOUR_GIB), `at 0x${h.segments[0]!.addr.toString(16)}`);
  const small = await c.alloc({ pool: 'default', size: 100, minAddress: 6 * GiB });
  t.match(small, { kind: 'direct', usize: 4096 });
  t.ok(above(small, 6 * GiB));
  t.equal((await c.status()).clients.find((x) => x.id === c.id)!.bytes, 2 * MiB + 4096, 'the client is charged the whole pages');
  const reg = await c.register(h.handle, 'capture');
  t.equal(reg.bounced, MiB, 'the 32-bit capture device bounces it');
  await c.unregister(h.handle, 'capture');

  // for: only fitting pools with memory there; the placement says which
  const f = await c.alloc({ for: ['capture'], size: 64 * 1024, minAddress: FOUR_GIB });
  t.ok(above(f, FOUR_GIB));
  t.match(f.placement, { for: ['capture'] });
});

t.test('placement refusals say what they refused, and change nothing', async (t) => {
  const d = await startDaemon(t);
  const c = await client(t, d.socket, 'placer');
  const before = await c.status();
  const cases: [string, Record<string, unknown>, string, string | RegExp][] = [
    ['not a page multiple', { pool: 'default', size: 4096, minAddress: FOUR_GIB + 512 }, 'EINVAL', "field 'minAddress' must be a multiple of 4096 (a page) (got 0x100000200)"],
    ['with populate: false', { pool: 'huge', size: 4 * MiB, minAddress: FOUR_GIB, populate: false }, 'EINVAL', "field 'populate': false cannot be combined with 'minAddress': a placed buffer takes its pages at once"],
    ['a pool below 4 GiB', { pool: 'dma32', size: 4096, minAddress: FOUR_GIB }, 'EINVAL', "pool 'dma32' has no memory at or above minAddress 0x100000000: its maxAddress is 0x100000000"],
    ['a region below 4 GiB', { pool: 'contig', size: 4096, minAddress: FOUR_GIB }, 'EINVAL', "pool 'contig' has no memory at or above minAddress 0x100000000: region 'carveout' ends at 0x70000000"],
    ['drivers that cannot reach it', { for: ['jpeg'], size: 4096, minAddress: FOUR_GIB }, 'EINVAL', 'minAddress 0x100000000 is at or above what jpeg can reach without bouncing (below 0x100000000): such a buffer could never be registered'],
    ['not a number', { pool: 'default', size: 4096, minAddress: '4G' }, 'EINVAL', /minAddress/],
    ['negative', { pool: 'default', size: 4096, minAddress: -4096 }, 'EINVAL', /minAddress/],
    // the default machine keeps its 1 GiB hugepages at [5, 7) GiB (free ranges, lowest first): [9.5, 10) GiB is free, in 4 MiB blocks
    ['not enough free there', { pool: 'default', size: 2 * GiB, minAddress: 9.5 * GiB }, 'ENOMEM', "pool 'default': cannot allocate 2 GiB (2147483648 bytes) at or above 0x260000000: 512 MiB free in region 'dram' at or above 0x260000000, largest contiguous free block 4 MiB"],
  ];
  for (const [what, req, code, message] of cases) {
    const e = await rejection(c.request('alloc', req as never));
    t.equal(e.code, code, `${what}: ${code}`);
    if (typeof message === 'string') t.equal(e.message, message, what);
    else t.match(e.message, message, what);
  }
  const after = await c.status();
  t.same(after.memory, before.memory, 'memory unchanged');
  t.same(after.hugepages, before.hugepages, 'hugepages unchanged');
  t.equal(after.buffers.live, 0);
});
