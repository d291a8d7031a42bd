/**
 * The package's public contract: exports resolve by name, with types, and
 * the binaries are declared.
 */
import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { runNode, ROOT } from '../helpers/daemon.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  type: string;
  engines: { node: string };
  bin: Record<string, string>;
  exports: Record<string, { types: string; import: string }>;
  scripts: Record<string, string>;
};

t.test('package.json contract', async (t) => {
  t.equal(pkg.name, 'bufferd');
  t.equal(pkg.type, 'module');
  t.match(pkg.engines.node, '20');
  t.same(Object.keys(pkg.bin).sort(), ['bufctl', 'bufferd']);
  for (const k of ['./client', './protocol']) {
    t.ok(existsSync(join(ROOT, pkg.exports[k]!.import)), `${k} js`);
    t.ok(existsSync(join(ROOT, pkg.exports[k]!.types)), `${k} d.ts`);
  }
  for (const s of ['start', 'test', 'bench', 'prepare']) t.ok(pkg.scripts[s], s);
});

t.test('bufferd/client and bufferd/protocol import by name', async (t) => {
  const r = await runNode([
    '--input-type=module',
    '-e',
    `const c = await import('bufferd/client'); const p = await import('bufferd/protocol');
     console.log(JSON.stringify({ connect: typeof c.connect, err: typeof c.BufferdError, frame: typeof p.encodeFrame,
       codes: Object.keys(p.ERROR_CODES).length, ops: p.OP_NAMES.length, version: p.PROTOCOL_VERSION }));`,
  ]);
  t.equal(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout) as Record<string, unknown>;
  t.same(o, { connect: 'function', err: 'function', frame: 'function', codes: o['codes'], ops: o['ops'], version: 1 });
  t.ok((o['codes'] as number) >= 10);
});
