/**
 * The coherency benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, checkFigures, type Want, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';

t.test('coherency benchmark emits its figures as JSON lines', async (t) => {
  const r = await runNode([RUN, 'coherency', '--smoke'], { ...UNHOOKED, timeoutMs: 90_000 });
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
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
