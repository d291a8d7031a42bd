/**
 * The benchmark harness runs and prints figures in the agreed JSON-lines
 * form. (Values are not asserted: speed is judged from ratios in `npm run
 * bench`, never by timed assertions in tests.)
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { runNode, ROOT } from '../helpers/daemon.js';
import { system } from '../../client/index.js';

const RUN = join(ROOT, 'dist', 'bench', 'run.js');

export function parseFigures(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

type Want = [string, string, string, string | undefined];

/** Every wanted (case, metric) figure is there, positive and finite, with its baseline fields when it has one. */
function checkFigures(t: Test, bench: string, figs: Record<string, unknown>[], want: Want[], sameRunBaselines = false): void {
  for (const [c, m, unit, baseline] of want) {
    const f = figs.find((x) => x['case'] === c && x['metric'] === m);
    t.ok(f, `${c} ${m}`);
    t.equal(f?.['bench'], bench);
    t.equal(f?.['unit'], unit);
    t.type(f?.['value'], 'number');
    t.ok((f?.['value'] as number) > 0 && Number.isFinite(f?.['value']), `${c} ${m} is positive and finite`);
    if (baseline === undefined) {
      t.notOk(f !== undefined && 'baseline' in f, `${c} ${m} has no baseline`);
      continue;
    }
    t.equal(f?.['baseline'], baseline);
    t.type(f?.['baselineValue'], 'number');
    t.type(f?.['ratio'], 'number');
    if (sameRunBaselines) {
      const base = figs.find((x) => x['case'] === baseline && x['metric'] === m);
      t.equal(f?.['baselineValue'], base?.['value'], `the ${c} baseline is the ${baseline} figure of the same run`);
    }
  }
}

t.test('ipc benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'ipc', '--quick'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want = [
    ['unpipelined', 'p50LatencyUs'],
    ['unpipelined', 'p99LatencyUs'],
    ['pipelined', 'requestsPerSec'],
  ];
  for (const [c, m] of want) {
    const f = figs.find((x) => x['case'] === c && x['metric'] === m);
    t.ok(f, `${c} ${m}`);
    t.equal(f?.['bench'], 'ipc');
    t.equal(f?.['baseline'], 'echo');
    t.type(f?.['value'], 'number');
    t.ok((f?.['value'] as number) > 0);
    t.type(f?.['baselineValue'], 'number');
    t.type(f?.['ratio'], 'number');
    t.type(f?.['unit'], 'string');
  }
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('bench harness usage', async (t) => {
  const r = await runNode([RUN, 'nosuch']);
  t.equal(r.code, 2);
  t.match(r.stderr, 'unknown benchmark nosuch');
  const h = await runNode([RUN, '--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, 'ipc');
});

t.test('memory benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'memory', '--quick'], { timeoutMs: 90_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: [string, string, string | undefined, number | undefined][] = [
    ['order0', 'pairsPerSec', 'bitmap-first-fit', undefined],
    ['order4', 'pairsPerSec', 'bitmap-first-fit', undefined],
    ['order9', 'pairsPerSec', 'bitmap-first-fit', undefined],
    ['start64G', 'startMs', 'daemon-64MiB', undefined],
    ['start64G', 'rssBytes', 'daemon-64MiB', undefined],
    ['touch256M', 'touchMs', undefined, undefined],
    ['touch256M', 'rssGrowthBytes', 'touched-bytes', 256 * 1024 * 1024],
    ['touch256M', 'readBackMs', undefined, undefined],
  ];
  for (const [c, m, baseline, baselineValue] of want) {
    const f = figs.find((x) => x['case'] === c && x['metric'] === m);
    t.ok(f, `${c} ${m}`);
    t.equal(f?.['bench'], 'memory');
    t.type(f?.['value'], 'number');
    t.ok(Number.isFinite(f?.['value']), `${c} ${m} is finite`);
    t.type(f?.['unit'], 'string');
    if (baseline === undefined) {
      t.notOk(f !== undefined && 'baseline' in f, `${c} ${m} has no baseline`);
      continue;
    }
    t.equal(f?.['baseline'], baseline);
    t.type(f?.['baselineValue'], 'number');
    t.type(f?.['ratio'], 'number');
    if (baselineValue !== undefined) t.equal(f?.['baselineValue'], baselineValue);
  }
  t.notOk(figs.some((x) => x['case'] === 'touch1G'), 'quick mode touches 256 MiB, not 1 GiB');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('suballoc benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'suballoc', '--quick'], { timeoutMs: 90_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: [string, string, boolean][] = [];
  for (const c of ['larson', 'mstress', 'glibc-simple', 'large']) {
    for (const s of ['', 'FirstFit', ...(c === 'large' ? ['Hugepage2M'] : [])]) {
      for (const m of ['opsPerSec', 'peakFootprint', 'activeOverAllocated', 'allocFailures']) want.push([c, `${m}${s}`, true]);
    }
  }
  want.push(['million', 'hostBytesPerAllocation', false], ['million', 'metadataBytesPerAllocation', false]);
  for (const [c, m, withBaseline] of want) {
    const f = figs.find((x) => x['case'] === c && x['metric'] === m);
    t.ok(f, `${c} ${m}`);
    t.equal(f?.['bench'], 'suballoc');
    t.type(f?.['value'], 'number');
    t.ok(Number.isFinite(f?.['value']), `${c} ${m} is finite`);
    t.type(f?.['unit'], 'string');
    if (!withBaseline) {
      t.notOk(f !== undefined && 'baseline' in f, `${c} ${m} has no baseline`);
      continue;
    }
    t.equal(f?.['baseline'], '@thi.ng/malloc');
    t.type(f?.['baselineValue'], 'number');
    t.type(f?.['ratio'], 'number');
  }
  for (const c of ['larson', 'mstress', 'glibc-simple', 'large']) {
    const ops = figs.find((x) => x['case'] === c && x['metric'] === 'opsPerSec');
    t.ok((ops?.['value'] as number) > 0, `${c} opsPerSec > 0`);
    t.equal(ops?.['unit'], 'ops/s');
  }
  t.ok((figs.find((x) => x['metric'] === 'hostBytesPerAllocation')?.['value'] as number) > 0, 'host bytes per allocation > 0');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('handles benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'handles', '--quick'], { timeoutMs: 90_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: Want[] = [
    ['4KiB', 'sendLatencyUs', 'us', undefined],
    ['4KiB', 'exportImportLatencyUs', 'us', undefined],
    ['1GiB', 'sendLatencyUs', 'us', '4KiB'],
    ['1GiB', 'exportImportLatencyUs', 'us', '4KiB'],
    ['data', 'writeBytesPerSec', 'bytes/s', 'raw-socket'],
    ['data', 'readBytesPerSec', 'bytes/s', 'raw-socket'],
  ];
  checkFigures(t, 'handles', figs, want);
  const small = figs.find((x) => x['case'] === '4KiB' && x['metric'] === 'sendLatencyUs');
  const big = figs.find((x) => x['case'] === '1GiB' && x['metric'] === 'sendLatencyUs');
  t.equal(big?.['baselineValue'], small?.['value'], 'the 1 GiB baseline is the 4 KiB figure of the same run');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('drivers benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'drivers', '--quick'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: Want[] = [
    ['4KiB', 'registerPairsPerSec', 'pairs/s', undefined],
    ['64MiB-sg', 'registerPairsPerSec', 'pairs/s', '4KiB'],
    ['64MiB-sg', 'segments', 'segments', undefined],
    ['4KiB', 'pipelinedPairsPerSec', 'pairs/s', undefined],
    ['fill10', 'mapUnmapUs', 'us', undefined],
    ['fill50', 'mapUnmapUs', 'us', 'fill10'],
    ['fill90', 'mapUnmapUs', 'us', 'fill10'],
    ['fill99', 'mapUnmapUs', 'us', 'fill10'],
    ['fragmented90', 'mapUnmapUs', 'us', 'fill90'],
  ];
  checkFigures(t, 'drivers', figs, want, true);
  const segs = figs.find((x) => x['case'] === '64MiB-sg' && x['metric'] === 'segments');
  t.ok((segs?.['value'] as number) > 1, 'the 64 MiB buffer is scatter-gathered');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('coherency benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'coherency', '--quick'], { timeoutMs: 90_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: Want[] = [];
  for (const m of ['writeBytesPerSec', 'readBytesPerSec']) {
    want.push(['off', m, 'bytes/s', undefined]);
    for (const c of ['warn', 'strict', 'unregistered']) want.push([c, m, 'bytes/s', 'off']);
  }
  for (const m of ['syncEndUs', 'syncStartUs']) want.push(['4KiB', m, 'us', undefined], ['64MiB', m, 'us', '4KiB']);
  want.push(['idle', 'pingP99Ms', 'ms', undefined], ['idle', 'pingMaxMs', 'ms', undefined], ['bystander', 'pingP99Ms', 'ms', 'idle'], ['bystander', 'pingMaxMs', 'ms', 'idle'], ['bystander', 'syncPairMs', 'ms', undefined], ['bystander', 'fillMs', 'ms', undefined]);
  checkFigures(t, 'coherency', figs, want, true);
  t.equal(figs.length, want.length, 'exactly the expected figures');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('events benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'events', '--quick'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const base = '0 subscribers';
  const every = '0 subscribers, every event';
  const k64 = '0 subscribers, maxBuffered 64K';
  const sameRun: Want[] = [
    [base, 'pairsPerSec', 'pairs/s', undefined],
    [base, 'daemonCpuUsPerPair', 'us', undefined],
    [base, 'pingsPerSec', 'req/s', undefined],
    ['10 subscribers', 'pingsPerSec', 'req/s', base],
    [every, 'pairsPerSec', 'pairs/s', base],
    [k64, 'pairsPerSec', 'pairs/s', every],
    ['never-reading, 64K', 'pairsPerSec', 'pairs/s', k64],
    ['never-reading, 64K', 'daemonCpuUsPerPair', 'us', k64],
  ];
  const other: Want[] = [
    ['never-reading, 64K', 'dropped', 'subscribers/run', undefined],
    ['never-reading, 64K', 'bytesQueued', 'bytes', 'maxBuffered'],
  ];
  for (const [c, b] of [['1 subscriber', base], ['10 subscribers', base], ['1 subscriber, every event', every], ['10 subscribers, every event', every]] as const) {
    sameRun.push([c, 'pairsPerSec', 'pairs/s', b], [c, 'daemonCpuUsPerPair', 'us', b]);
    other.push([c, 'allocEventsReceived', 'events', 'alloc+free']);
  }
  checkFigures(t, 'events', figs, sameRun, true);
  checkFigures(t, 'events', figs, other);
  // CPU in 10 ms ticks and RSS growth over a short run may be 0 (or, for RSS, negative)
  for (const [c, m] of [['1 subscriber', 'subscribersCpuUsPerPair'], ['10 subscribers, every event', 'subscribersCpuUsPerPair'], [every, 'rssGrowthMB'], [k64, 'rssGrowthMB'], ['never-reading, 64K', 'rssGrowthMB']]) {
    const f = figs.find((x) => x['case'] === c && x['metric'] === m);
    t.ok(Number.isFinite(f?.['value']), `${c} ${m} is finite`);
  }
  t.notOk(figs.some((x) => x['case'] === 'never-reading, 8M'), 'quick mode skips the 8 MiB never-reading run');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});

t.test('zerocopy benchmark emits its figures as JSON lines', { skip: system() === null ? 'no native system calls here' : false }, async (t) => {
  const r = await runNode([RUN, 'zerocopy', '--quick'], { timeoutMs: 120_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: Want[] = [
    ['map', 'writeBytesPerSec', 'bytes/s', 'memcpy'],
    ['map', 'readBytesPerSec', 'bytes/s', 'memcpy'],
    ['cross-process', 'framesPerSec', 'frames/s', 'rpc'],
    ['fd', 'exportMapLatencyUs', 'us', 'send'],
    ['alloc-map', 'latencyUs', 'us', 'memfd'],
    ['alloc-map', 'fourPingsLatencyUs', 'us', 'memfd'],
  ];
  checkFigures(t, 'zerocopy', figs, want);
  t.match(r.stderr, 'ratio', 'a readable table is printed');
});
