/**
 * The memory benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('memory benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'memory', '--smoke'], { ...UNHOOKED, timeoutMs: 90_000 });
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
  t.notOk(figs.some((x) => x['case'] === 'touch1G'), 'smoke mode, as quick, touches 256 MiB, not 1 GiB');
  t.match(r.stderr, 'ratio', 'a readable table is printed');
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
