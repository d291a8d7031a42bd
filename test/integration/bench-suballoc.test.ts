/**
 * The suballoc benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('suballoc benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'suballoc', '--smoke'], { ...UNHOOKED, timeoutMs: 90_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  const want: [string, string, boolean][] = [];
  for (const c of ['larson', 'mstress', 'glibc-simple', 'large']) {
    for (const s of ['', 'FirstFit', ...(c === 'large' ? ['DecayOn', 'Hugepage2M'] : [])]) {
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
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
