/**
 * The history benchmark runs and prints figures in the agreed JSON-lines
 * form. (Values are not asserted: speed is judged from ratios in
 * `npm run bench`, never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, checkFigures, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('history benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'history', '--smoke'], { ...UNHOOKED, timeoutMs: 120_000 });
  t.equal(r.code, 0, r.stderr);
  const figs = parseFigures(r.stdout);
  checkFigures(
    t,
    'history',
    figs,
    [
      ['history off', 'livesPerSec', 'lives/s', undefined],
      ['history on', 'livesPerSec', 'lives/s', 'history off'],
      ['history off, again', 'livesPerSec', 'lives/s', 'history off'],
      ['history off', 'daemonCpuUsPerLife', 'us', undefined],
      ['history on', 'daemonCpuUsPerLife', 'us', 'history off'],
      ['history off, again', 'daemonCpuUsPerLife', 'us', 'history off'],
      ['history off, in-process', 'cpuUsPerLife', 'us', undefined],
      ['history on, in-process', 'cpuUsPerLife', 'us', 'history off, in-process'],
    ],
    true,
  );
  checkFigures(t, 'history', figs, [
    ['graph, 1000 buffers', 'latencyMs', 'ms', undefined],
    ['history, one buffer', 'latencyMs', 'ms', undefined],
    ['journal', 'heapBytesPerEvent', 'bytes', undefined],
    ['journal', 'recordNsPerEvent', 'ns', undefined],
  ]);
  t.match(r.stderr, 'ratio', 'a readable table is printed');
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
