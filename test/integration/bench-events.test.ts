/**
 * The events benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, checkFigures, type Want, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('events benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'events', '--smoke'], { ...UNHOOKED, timeoutMs: 60_000 });
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
  t.notOk(figs.some((x) => x['case'] === 'never-reading, 8M'), 'smoke mode, as quick, skips the 8 MiB never-reading run');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
