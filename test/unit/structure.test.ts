/**
 * The shape of the code: one folder per subsystem with dependencies pointing
 * one way, no import cycles (type-only imports included), files under ~400
 * lines, protocol/ free of sockets and daemon state, one build command.
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
const rel = (f: string) => relative(ROOT, f);

/**
 * Every relative module a file depends on: imports and re-exports (type-only
 * ones too), `import('…')` types and dynamic imports.
 */
export function dependencies(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out = new Set<string>();
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)) {
    out.add(resolve(dirname(file), (m[1] ?? m[2])!.replace(/\.js$/, '.ts')));
  }
  return [...out];
}

/**
 * The daemon's layers, lowest first. A folder may use the folders before it
 * in this list, never one after it; protocol/ is used by all and uses none.
 * daemon/main.ts (the entry) may use all of them.
 */
export const LAYERS = ['lib', 'memory', 'alloc', 'buffers', 'dma', 'config', 'session', 'ops', 'server'] as const;

/** "daemon/<layer>", "daemon/main", "protocol", "client", "bench" or "test". */
function unit(file: string): string {
  const parts = rel(file).split('/');
  if (parts[0] === 'daemon') return parts.length === 2 ? 'daemon/main' : `daemon/${parts[1]}`;
  return parts[0]!;
}

/** Why `from` may not depend on `to`, or null when it may. */
function forbidden(from: string, to: string): string | null {
  const a = unit(from);
  const b = unit(to);
  if (a === b) return null;
  if (a === 'protocol') return 'protocol/ uses nothing of the daemon, the client or the benchmarks';
  if (a === 'client' && b !== 'protocol' && b !== 'daemon/lib') return 'client/ uses only protocol/ and daemon/lib/ (it is what applications import)';
  if (a === 'bench' || a === 'daemon/main') return null;
  if (a.startsWith('daemon/')) {
    if (b === 'protocol') return null;
    if (!b.startsWith('daemon/') || b === 'daemon/main') return `${a}/ uses only lower daemon layers and protocol/`;
    const la = LAYERS.indexOf(a.slice(7) as (typeof LAYERS)[number]);
    const lb = LAYERS.indexOf(b.slice(7) as (typeof LAYERS)[number]);
    if (la < 0) return `${a}/ is not a known daemon layer (${LAYERS.join(', ')})`;
    if (lb > la) return `${a}/ is below ${b}/: dependencies point from ${LAYERS.slice().reverse().join(' → ')}`;
  }
  return null;
}

const graph = new Map(files.map((f) => [f, dependencies(f).filter((x) => files.includes(x))]));

t.test('every daemon file lives in a layer folder (or is the entry, daemon/main.ts)', async (t) => {
  for (const f of files.filter((x) => rel(x).startsWith('daemon/'))) {
    const u = unit(f);
    t.ok(u === 'daemon/main' ? rel(f) === 'daemon/main.ts' : LAYERS.includes(u.slice(7) as (typeof LAYERS)[number]), rel(f));
  }
});

t.test('dependencies point one way: server → ops → session → config → dma → buffers → alloc → memory → lib', async (t) => {
  const wrong: string[] = [];
  for (const [f, deps] of graph) {
    for (const d of deps) {
      const why = forbidden(f, d);
      if (why !== null) wrong.push(`${rel(f)} imports ${rel(d)}: ${why}`);
    }
  }
  t.same(wrong, [], 'no import against the direction');
});

t.test('no import cycles anywhere (type-only imports count)', async (t) => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map(rel).join(' → '));
      return;
    }
    state.set(f, 'open');
    for (const g of graph.get(f)!) visit(g, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  t.same(cycles, [], 'no cycles');
});

t.test('the checker sees what it must (it can fail)', async (t) => {
  t.ok(forbidden(join(ROOT, 'daemon/memory/x.ts'), join(ROOT, 'daemon/alloc/y.ts')), 'memory may not use alloc');
  t.ok(forbidden(join(ROOT, 'daemon/ops/x.ts'), join(ROOT, 'daemon/server/y.ts')), 'ops may not use server');
  t.ok(forbidden(join(ROOT, 'client/x.ts'), join(ROOT, 'daemon/memory/y.ts')), 'the client may not use the daemon');
  t.equal(forbidden(join(ROOT, 'client/x.ts'), join(ROOT, 'daemon/lib/y.ts')), null, 'but it may use its generic building blocks (the system calls)');
  t.ok(forbidden(join(ROOT, 'protocol/x.ts'), join(ROOT, 'client/y.ts')), 'protocol uses nothing');
  t.equal(forbidden(join(ROOT, 'daemon/server/x.ts'), join(ROOT, 'daemon/memory/y.ts')), null, 'server may use memory');
  t.ok(graph.get(join(ROOT, 'daemon/server/context.ts'))!.length > 3, 'the import parser finds imports');
});

/** Each layer's main file, whose header says what the folder owns and what it may use. */
const MAIN: Record<(typeof LAYERS)[number], string> = {
  lib: 'slices.ts',
  memory: 'physmem.ts',
  alloc: 'machine.ts',
  buffers: 'handles.ts',
  dma: 'drivers.ts',
  config: 'config.ts',
  session: 'context.ts',
  ops: 'index.ts',
  server: 'server.ts',
};

t.test("each layer's main file opens with what the folder owns and what it may use", async (t) => {
  for (const layer of LAYERS) {
    const head = /^\/\*\*[\s\S]*?\*\//.exec(readFileSync(join(ROOT, 'daemon', layer, MAIN[layer]), 'utf8'))?.[0] ?? '';
    t.match(head, `daemon/${layer}/`, `daemon/${layer}/${MAIN[layer]} names its folder`);
    const below = LAYERS.slice(0, LAYERS.indexOf(layer));
    t.match(head, /may use/, `daemon/${layer}/${MAIN[layer]} says what the layer may use`);
    for (const b of below) t.match(head, `${b}/`, `daemon/${layer}/${MAIN[layer]} names ${b}/ among what it may use`);
  }
});

t.test('source files stay under ~400 lines', async (t) => {
  for (const f of files) {
    const n = readFileSync(f, 'utf8').split('\n').length;
    t.ok(n <= 420, `${rel(f)}: ${n} lines`);
  }
});

t.test('protocol/ has no sockets and no daemon imports', async (t) => {
  for (const f of files.filter((x) => rel(x).startsWith('protocol'))) {
    const text = readFileSync(f, 'utf8');
    t.notMatch(text, /from 'node:net'/, `${rel(f)} opens no sockets`);
    t.notMatch(text, /from '\.\.\/daemon\//, `${rel(f)} does not import the daemon`);
  }
});

t.test("nothing imports msgpackr's bare entry (it would load the native decoder)", async (t) => {
  const all = [...files, ...sources(join(ROOT, 'test'))].filter((f) => !f.endsWith('structure.test.ts'));
  for (const f of all) {
    const text = readFileSync(f, 'utf8');
    t.notMatch(text, /from 'msgpackr'|import\('msgpackr'\)|require\('msgpackr'\)/, rel(f));
  }
});

t.test('the build command is written once', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  // -b: an incremental build that returns at once when dist/ is current
  t.match(pkg.scripts['build'], /^tsc -b tsconfig\.json/);
  for (const [name, cmd] of Object.entries(pkg.scripts)) {
    if (name === 'build') continue;
    t.notMatch(cmd, /tsc -[bp] tsconfig\.json(?! --noEmit)/, `${name} calls npm run build instead of repeating it`);
  }
  for (const s of ['prepare', 'prestart', 'test', 'demo', 'bench', 'stress']) t.match(pkg.scripts[s], /npm run build/, `${s} builds with npm run build`);
});
