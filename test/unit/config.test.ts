import t from 'tap';
import { buildConfig, loadConfig, ConfigError } from '../../daemon/config/config.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { parseSize, formatSize, formatAddress } from '../../protocol/units.js';

const base = () => JSON.parse(JSON.stringify(DEFAULT_MACHINE)) as Record<string, any>;

function msg(raw: unknown): string {
  try {
    buildConfig(raw, 'test');
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('config was accepted');
}

t.test('the embedded default machine is valid', async (t) => {
  const c = loadConfig();
  t.equal(c.source, '(embedded default machine)');
  t.equal(c.server.socketMode, 0o660);
  t.equal(c.server.maxFrameBytes, 4 * 1024 * 1024);
  t.equal(c.limits.maxHandles, 1024);
  const dram = c.machine.regions.find((r) => r.name === 'dram')!;
  t.ok(dram.base < 2 ** 32 && dram.base + dram.size > 2 ** 32, 'DRAM spans the 4 GiB boundary');
  t.ok(c.machine.regions.some((r) => r.kind === 'tcm'));
  t.ok(c.machine.regions.some((r) => r.kind === 'carveout'));
  t.same(c.machine.hugepages.map((h) => h.size).sort((a, b) => a - b), [2 ** 21, 2 ** 30]);
  for (const p of ['default', 'huge', 'wc', 'uncached', 'contig', 'dma32', 'tcm']) t.ok(c.machine.pools.some((x) => x.name === p), p);
  t.equal(c.machine.pools.find((p) => p.name === 'dma32')!.maxAddress, 2 ** 32);
});

t.test('schema errors name the JSON path of the bad field', async (t) => {
  let c = base();
  c.pools[2].cache = 'writethrough';
  t.match(msg(c), 'config /pools/2/cache');
  t.match(msg(c), '"writeback", "writecombine", "uncached"');
  c = base();
  c.server.maxFrameBytes = 'lots';
  t.match(msg(c), 'config /server/maxFrameBytes');
  c = base();
  c.memory.regions[0].colour = 'blue';
  t.match(msg(c), 'config /memory/regions/0/colour: unknown field');
  c = base();
  delete c.pools[0].region;
  t.match(msg(c), 'config /pools/0/region: required field missing');
  c = base();
  c.limits.maxHandles = 0;
  t.match(msg(c), 'config /limits/maxHandles');
  t.match(msg({}), 'config /memory: required field missing');
  t.match(msg([]), 'config /');
  c = base();
  c.server.socketMode = '999';
  t.match(msg(c), 'config /server/socketMode');
  c = base();
  c.server.maxFrameBytes = 100;
  t.match(msg(c), 'config /server/maxFrameBytes: must be between 1K and 1G');
});

t.test('machine errors: overlaps, alignment, references', async (t) => {
  let c = base();
  c.memory.regions.push({ name: 'extra', base: '0x60100000', size: '1M', kind: 'dram' });
  const m = msg(c);
  t.match(m, "'carveout'");
  t.match(m, "'extra'");
  t.match(m, 'overlap');
  c = base();
  c.memory.regions[0].base = '0x10000100';
  t.match(msg(c), "config /memory/regions/0/base: region 'tcm' base 0x10000100 is not aligned");
  c = base();
  c.memory.regions[0].size = 1000;
  t.match(msg(c), 'config /memory/regions/0/size');
  c = base();
  c.memory.regions[2].size = '300T';
  t.match(msg(c), "config /memory/regions/2/size: region 'dram' size 300 TiB is above the 256 TiB limit for one region");
  c = base();
  c.memory.regions[1].name = 'tcm';
  t.match(msg(c), "region name 'tcm' is used twice");
  c = base();
  c.pools[0].region = 'sram';
  t.match(msg(c), "config /pools/0/region: pool 'default' names no region 'sram'");
  c = base();
  c.hugepages[0].region = 'nowhere';
  t.match(msg(c), 'config /hugepages/0/region');
  c = base();
  c.hugepages[0].nr = 100000;
  t.match(msg(c), 'config /hugepages/0/nr');
  c = base();
  c.hugepages = [c.hugepages[0], { ...c.hugepages[0] }];
  t.match(msg(c), 'configured twice');
  c = base();
  c.hugepages = [];
  t.match(msg(c), "pool 'huge' uses 2M pages but no hugepage pool of that size");
  c = base();
  c.pools[1].region = 'carveout';
  t.match(msg(c), 'which live in region');
  c = base();
  c.pools[0].maxAddress = '1M';
  t.match(msg(c), 'config /pools/0/maxAddress');
  c = base();
  c.pools[1].name = 'default';
  t.match(msg(c), "pool name 'default' is used twice");
});

t.test('config files', async (t) => {
  const dir = t.testdir({ 'bad.json': '{ nope', 'ok.json': JSON.stringify(DEFAULT_MACHINE) });
  t.throws(() => loadConfig(`${dir}/bad.json`), ConfigError);
  t.match(() => loadConfig(`${dir}/bad.json`), Function);
  try {
    loadConfig(`${dir}/bad.json`);
  } catch (e) {
    t.equal((e as Error).message, `config file ${dir}/bad.json is not valid JSON: line 1, column 3: expected a property name in double quotes, found 'n'`);
  }
  try {
    loadConfig(`${dir}/missing.json`);
  } catch (e) {
    t.match((e as Error).message, 'cannot read config file');
  }
  t.equal(loadConfig(`${dir}/ok.json`).source, `${dir}/ok.json`);
});

t.test('sizes and addresses', async (t) => {
  t.equal(parseSize(4096, 'x'), 4096);
  t.equal(parseSize('4K', 'x'), 4096);
  t.equal(parseSize('2M', 'x'), 2 ** 21);
  t.equal(parseSize('1GiB', 'x'), 2 ** 30);
  t.equal(parseSize('64g', 'x'), 64 * 2 ** 30);
  t.equal(parseSize('0x80000000', 'x'), 2 ** 31);
  t.throws(() => parseSize('4Q', '/a'), /config \/a/);
  t.throws(() => parseSize(-1, '/a'));
  t.throws(() => parseSize('99999999999T', '/a'), /too large/);
  t.equal(formatSize(4096), '4 KiB');
  t.equal(formatSize(3 * 2 ** 30), '3 GiB');
  t.equal(formatSize(1536), '1.5 KiB');
  t.equal(formatSize(100), '100 B');
  t.equal(formatAddress(2 ** 32), '0x100000000');
});

t.test('bounce.maxMapping: at most the swiotlb segment (256 KiB), at least one slot', async (t) => {
  // kernel/dma/swiotlb.c swiotlb_find_slots: alloc_size > IO_TLB_SEGSIZE * IO_TLB_SIZE fails, whatever is free
  const withBounce = (maxMapping?: string) => {
    const c = structuredClone(DEFAULT_MACHINE) as Record<string, any>;
    c.bounce = { size: '1M', region: 'dram', ...(maxMapping !== undefined ? { maxMapping } : {}) };
    return c;
  };
  t.match(msg(withBounce('1M')), /config \/bounce\/maxMapping: 1 MiB is above the swiotlb limit of 256 KiB \(IO_TLB_SEGSIZE 128 slots × IO_TLB_SIZE 2 KiB/);
  t.match(msg(withBounce('257K')), 'config /bounce/maxMapping');
  t.match(msg(withBounce('1K')), 'config /bounce/maxMapping: must be at least one 2 KiB slot');
  t.equal(buildConfig(withBounce('256K'), 'test').machine.bounce!.maxMapping, 256 * 1024, 'exactly the segment is fine');
  t.equal(buildConfig(withBounce('64K'), 'test').machine.bounce!.maxMapping, 64 * 1024, 'a smaller limit is kept');
  t.equal(buildConfig(withBounce(), 'test').machine.bounce!.maxMapping, 256 * 1024, 'default: the segment');
});
