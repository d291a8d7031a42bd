/**
 * The shape of the code: no import cycles, files under ~400 lines, and
 * protocol/ free of sockets and daemon state.
 */
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname, resolve, relative } from 'node:path';
import { ROOT } from '../helpers/daemon.js';

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const files = ['protocol', 'daemon', 'client', 'bench'].flatMap((d) => sources(join(ROOT, d)));

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)[^'"]*?from\s+'(\.[^']+)'/gm)) {
    out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  return out;
}

t.test('no import cycles (runtime imports)', async (t) => {
  const graph = new Map(files.map((f) => [f, imports(f).filter((x) => files.includes(x))]));
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((x) => relative(ROOT, x)).join(' → '));
      return;
    }
    state.set(f, 'open');
    for (const g of graph.get(f)!) visit(g, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  t.same(cycles, [], 'no cycles');
});

t.test('source files stay under ~400 lines', async (t) => {
  for (const f of files) {
    const n = readFileSync(f, 'utf8').split('\n').length;
    t.ok(n <= 420, `${relative(ROOT, f)}: ${n} lines`);
  }
});

t.test('protocol/ has no sockets and no daemon imports', async (t) => {
  for (const f of files.filter((x) => relative(ROOT, x).startsWith('protocol'))) {
    const text = readFileSync(f, 'utf8');
    t.notMatch(text, /from 'node:net'/, `${relative(ROOT, f)} opens no sockets`);
    t.notMatch(text, /from '\.\.\/daemon\//, `${relative(ROOT, f)} does not import the daemon`);
  }
});

t.test("nothing imports msgpackr's bare entry (it would load the native decoder)", async (t) => {
  const all = [...files, ...sources(join(ROOT, 'test'))].filter((f) => !f.endsWith('structure.test.ts'));
  for (const f of all) {
    const text = readFileSync(f, 'utf8');
    t.notMatch(text, /from 'msgpackr'|import\('msgpackr'\)|require\('msgpackr'\)/, relative(ROOT, f));
  }
});
