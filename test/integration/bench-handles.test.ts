/**
 * The handles benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, checkFigures, type Want, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('handles benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'handles', '--smoke'], { ...UNHOOKED, timeoutMs: 90_000 });
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
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});

t.test('drivers benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'drivers', '--smoke'], { ...UNHOOKED, timeoutMs: 60_000 });
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
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
