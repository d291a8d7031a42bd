/**
 * bufctl's driver views: `drivers` (registrations, IOVA, IOMMU entries by
 * page size, bounce slots, leaks), `constraints <driver>` and `merge
 * <driver>...` (merged attributes and the pools that fit, or the conflict
 * on stderr with exit 1), their --json forms, and usage errors (exit 2).
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client, KiB, MiB } from '../helpers/drivers.js';
import type { DriverStatus, MergeResult } from '../../client/index.js';

/** The table row starting with a name. */
const row = (out: string, name: string) => out.split('\n').find((l) => new RegExp(`^\\s*${name}\\s`).test(l)) ?? '';

t.test('bufctl drivers, constraints, merge', async (t) => {
  const d = await startDaemon(t);
  const app = await client(t, d.socket, 'app');
  const drv = await client(t, d.socket, 'drv');
  await drv.attachDriver('mycam', { dmaMask: 32 });
  const wc = await app.alloc({ pool: 'wc', size: 4 * MiB });
  await app.register(wc.handle, 'gpu');
  const hi = await app.alloc({ pool: 'default', size: 64 * KiB });
  await app.register(hi.handle, 'capture');
  await app.register((await app.alloc({ pool: 'default', size: 4 * KiB })).handle, 'gpu').catch(() => null); // refused: writeback

  // every bufctl run at once (each is a process start); checked below
  const run = (...a: string[]) => bufctlHere(d.socket, ...a);
  const [dr, dj, cg, cjr, cmy, cn, mg, mj, mc, mcj, mu, mcn, u1, u2, u3, u4, u5, st] = await Promise.all([
    run('drivers'),
    run('drivers', '--json'),
    run('constraints', 'gpu'),
    run('constraints', 'jpeg', '--json'),
    run('constraints', 'mycam'),
    run('constraints', 'nosuch'),
    run('merge', 'gpu', 'jpeg'),
    run('merge', 'gpu', 'jpeg', '--json'),
    run('merge', 'display', 'nic'),
    run('merge', 'display', 'nic', '--json'),
    run('merge', 'gpu', 'nosuch'),
    run('merge', 'capture', 'nic'),
    run('constraints'),
    run('merge'),
    run('drivers', 'extra'),
    run('constraints', 'gpu', 'jpeg'),
    run('drivers', '--pool', 'x'),
    run('status'),
  ]);

  // drivers: the table
  t.equal(dr.code, 0, dr.stderr);
  t.match(dr.stdout, /DRIVER\s+KIND\s+COHERENT\s+IOMMU\s+REGS\s+BYTES\s+IOVA USED\/TOTAL\s+IOMMU ENTRIES\s+BOUNCE SLOTS\s+REFUSED\s+LEAKS/);
  for (const n of ['gpu', 'jpeg', 'capture', 'video', 'display', 'dsp', 'nic', 'mycam']) t.not(row(dr.stdout, n), '', `a row for ${n}`);
  t.match(row(dr.stdout, 'gpu'), /builtin\s+no\s+yes\s+1\s+4 MiB\s+4 MiB\/4 GiB\s+2 MiB×2\s+-\s+1\s+0/, 'gpu: one registration, two 2 MiB entries, one refusal');
  t.match(row(dr.stdout, 'capture'), /\s32\/32768\s/, 'capture: 32 of 32768 bounce slots');
  t.match(row(dr.stdout, 'nic'), /builtin\s+yes\s+no/, 'nic: coherent, no IOMMU');
  t.match(row(dr.stdout, 'mycam'), new RegExp(`client ${drv.id}`), 'a client driver and its owner');
  t.equal(dj.code, 0);
  const list = JSON.parse(dj.stdout) as DriverStatus[];
  t.same(list.map((x) => x.name), ['gpu', 'jpeg', 'capture', 'video', 'display', 'dsp', 'nic', 'mycam']);
  t.match(list.find((x) => x.name === 'gpu'), { registrations: 1, bytes: 4 * MiB, iommuEntries: { [2 * MiB]: 2 }, refused: 1 });
  t.match(list.find((x) => x.name === 'capture'), { registrations: 1, bounceSlots: { used: 32 } });
  t.match(list.find((x) => x.name === 'mycam'), { kind: 'client', owner: drv.id });

  // constraints
  t.equal(cg.code, 0, cg.stderr);
  t.match(cg.stdout, /^gpu \(builtin\): GPU/);
  t.match(cg.stdout, /align\s+4 KiB/);
  t.match(cg.stdout, /cache\s+writecombine, uncached/);
  t.match(cg.stdout, /dmaMask\s+40 bits/);
  t.match(cg.stdout, /iommu\s+pages 4 KiB\/64 KiB\/2 MiB, IOVA 4 GiB/);
  const cj = JSON.parse(cjr.stdout) as Record<string, unknown>;
  t.match(cj, { driver: 'jpeg', kind: 'builtin', description: /JPEG/ });
  t.same(cj['constraints'], { align: 64 * KiB, contiguous: true, coherent: false, dmaMask: 32 });
  t.match(cmy.stdout, /^mycam \(client\)/);
  t.equal(cn.code, 1, 'unknown driver: exit 1');
  t.match(cn.stderr, /ENOENT.*nosuch/);

  // merge: 64 KiB, contiguous, and contig and tcm fit
  t.equal(mg.code, 0, mg.stderr);
  t.match(mg.stdout, /Merged constraints of gpu \+ jpeg/);
  t.match(mg.stdout, /align\s+64 KiB/);
  t.match(mg.stdout, /contiguous\s+required/);
  t.match(mg.stdout, /dmaMask\s+32 bits/);
  t.match(mg.stdout, /via IOMMU\s+gpu/);
  t.match(mg.stdout, /\n  segments\s+one \(contiguous\), any size\n/, 'segments said in words, not "max -, size ≤ -"');
  t.notMatch(mg.stdout, 'max -');
  t.match(row(mg.stdout, 'contig'), /contig\s+yes\s+yes/);
  t.match(row(mg.stdout, 'tcm'), /tcm\s+yes\s+yes/);
  t.match(row(mg.stdout, 'default'), /default\s+no\s+yes\s+cache/);
  const m = JSON.parse(mj.stdout) as MergeResult;
  t.match(m.merged, { align: 64 * KiB, contiguous: true, dmaMask: 32 });
  t.same(m.pools.filter((p) => p.fits).map((p) => p.name), ['contig', 'tcm']);

  // merge conflict: exit 1, the conflict on stderr; --json prints the error object
  t.equal(mc.code, 1);
  t.equal(mc.stdout, '');
  t.match(mc.stderr, /EINVAL.*display.*nic.*cache/);
  t.match(mc.stderr, /writecombine/);
  t.match(mc.stderr, /writeback/);
  t.equal(mcj.code, 1);
  t.match(JSON.parse(mcj.stdout), { error: { code: 'EINVAL', details: { conflicts: [{ attribute: 'cache' }] } } });
  t.match(mcn.stdout, /\n  segments\s+at most 64, each ≤ 256 KiB\n/, 'capture + nic: the tighter of each');
  t.equal(mu.code, 1);
  t.match(mu.stderr, /ENOENT/);

  // usage errors
  t.equal(u1.code, 2, 'constraints without a driver: exit 2');
  t.match(u1.stderr, /Usage: bufctl constraints <driver>/);
  t.equal(u2.code, 2, 'merge without drivers');
  t.equal(u3.code, 2);
  t.equal(u4.code, 2);
  t.equal(u5.code, 2, 'an option that does not apply');

  // status lists the drivers too
  t.match(st.stdout, /Drivers \(0 leaked registrations; bounce pool \d+\/32768 slots; details: bufctl drivers\)\n\s*DRIVER\s+KIND\s+COHERENT\s+IOMMU\s+REGISTRATIONS/);
  t.match(row(st.stdout.slice(st.stdout.indexOf('Drivers (')), 'gpu'), /gpu\s+builtin\s+no\s+yes\s+1\s/);
});

t.test('bufctl drivers: IOVA totals print in one unit', async (t) => {
  const d = await startDaemon(t);
  const dr = await bufctlHere(d.socket, 'drivers');
  t.match(row(dr.stdout, 'gpu'), /0 B\/4 GiB/);
  t.notMatch(row(dr.stdout, 'video'), /1024 MiB/, 'no "1024 MiB": either 1 GiB or the exact figure');
});
