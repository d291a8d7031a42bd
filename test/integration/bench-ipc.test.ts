/**
 * The ipc benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('ipc benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'ipc', '--smoke'], { ...UNHOOKED, timeoutMs: 60_000 });
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
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});

t.test('bench harness usage', async (t) => {
  const r = await runNode([RUN, 'nosuch'], UNHOOKED);
  t.equal(r.code, 2);
  t.match(r.stderr, 'unknown benchmark nosuch');
  const h = await runNode([RUN, '--help'], UNHOOKED);
  t.equal(h.code, 0);
  t.match(h.stdout, 'ipc');
  t.match(h.stdout, '--smoke', 'the usage names --smoke');
});
