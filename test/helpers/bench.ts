/** Shared checks for the benchmark tests: each bench has its own test file so a file stays well inside tap's per-file timeout on a slow CI machine. */
import type { Test } from 'tap';
import { join } from 'node:path';
import { ROOT } from './daemon.js';

export const RUN = join(ROOT, 'dist', 'bench', 'run.js');

/** A bench runs without tap's per-process hook (helpers/daemon.ts unhookedNode), in it and every daemon and client it starts. */
export const UNHOOKED = { unhooked: true } as const;

export function parseFigures(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export type Want = [string, string, string, string | undefined];

/** Every wanted (case, metric) figure is there, positive and finite, with its baseline fields when it has one. */
export function checkFigures(t: Test, bench: string, figs: Record<string, unknown>[], want: Want[], sameRunBaselines = false): void {
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
