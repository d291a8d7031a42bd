/**
 * The zerocopy benchmark runs and prints figures in the agreed JSON-lines form.
 * (Values are not asserted: speed is judged from ratios in `npm run bench`,
 * never by timed assertions in tests.)
 */
import t from 'tap';
import { RUN, parseFigures, checkFigures, type Want, UNHOOKED } from '../helpers/bench.js';
import { runNode } from '../helpers/daemon.js';
import { system } from '../../client/index.js';

t.test('zerocopy benchmark emits its figures as JSON lines', { skip: system() === null ? 'no native system calls here' : false }, async (t) => {
  const r = await runNode([RUN, 'zerocopy', '--smoke'], { ...UNHOOKED, timeoutMs: 120_000 });
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
  t.match(r.stderr, 'smoke run: figures are not measurements', 'the run says its figures mean nothing');
});
