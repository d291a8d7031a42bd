/**
 * npm run bench [-- NAME... [--quick | --smoke]]
 *
 * Runs the named benchmarks (all when none is named). Each prints a table on
 * stderr and its figures as JSON lines on stdout.
 *
 * --smoke (implies --quick) runs every case once with the smallest
 * parameters that still go through each code path, and emits the same set
 * of figures as --quick (same cases, metrics, units, baselines); the values
 * mean nothing. For the tests, which only check that a bench runs end to end.
 */
import type { BenchArgs } from './harness.js';

const BENCHES: Record<string, () => Promise<{ run(a: BenchArgs): Promise<unknown> }>> = {
  coherency: () => import('./coherency.js'),
  drivers: () => import('./drivers.js'),
  events: () => import('./events.js'),
  handles: () => import('./handles.js'),
  history: () => import('./history.js'),
  ipc: () => import('./ipc.js'),
  memory: () => import('./memory.js'),
  suballoc: () => import('./suballoc.js'),
  zerocopy: () => import('./zerocopy.js'),
};

async function main(argv: string[]): Promise<number> {
  const smoke = argv.includes('--smoke');
  const quick = smoke || argv.includes('--quick');
  const names = argv.filter((a) => !a.startsWith('--'));
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`Usage: npm run bench [-- NAME... [--quick | --smoke]]\n  --smoke: every case once, smallest parameters (for tests; figures are not measurements)\nBenchmarks: ${Object.keys(BENCHES).join(', ')}\n`);
    return 0;
  }
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown benchmark ${unknown.join(', ')}; available: ${Object.keys(BENCHES).join(', ')}\n`);
    return 2;
  }
  for (const n of names.length > 0 ? names : Object.keys(BENCHES)) {
    const m = await BENCHES[n]!();
    if (smoke) process.stderr.write(`bench ${n}: smoke run: figures are not measurements\n`);
    await m.run({ quick, smoke });
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (c) => process.exit(c),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
