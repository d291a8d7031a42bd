/**
 * The package's public contract: exports resolve by name for import and
 * require, with types, and the binaries are declared. Then the package as a
 * user gets it: `npm pack` of this checkout ships the built JavaScript and
 * nothing built for one machine, installs into a scratch project and
 * globally, the installed bins run, and CommonJS, ES module and TypeScript
 * consumers use bufferd/client against the installed daemon.
 */
import t from 'tap';
import { readFileSync, existsSync, mkdirSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runNode, startDaemon, tempDir, ROOT } from '../helpers/daemon.js';
import { run, walk, isElf, danglingMaps, OFFLINE, type Ran } from '../helpers/pack.js';

interface Pkg {
  name: string;
  version: string;
  type: string;
  private?: boolean;
  license: string;
  engines: { node: string };
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string }>;
  files: string[];
  scripts: Record<string, string>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Pkg;

t.test('package.json contract', async (t) => {
  t.equal(pkg.name, 'bufferd');
  t.equal(pkg.type, 'module');
  t.notOk('private' in pkg, 'publishable: not private');
  t.equal(pkg.license, 'MIT');
  t.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 the bufferd authors\n/, 'LICENSE says what package.json does');
  // the versions where require() of an ES module is on by default
  t.equal(pkg.engines.node, '^20.19.0 || >=22.12.0');
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  t.ok((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22, `this Node (${process.versions.node}) is in engines`);
  t.same(Object.keys(pkg.bin).sort(), ['bufctl', 'bufferd']);
  for (const k of ['./client', './protocol']) {
    // "default" serves import and require alike; "types" comes first
    t.same(Object.keys(pkg.exports[k]!), ['types', 'default'], `${k} conditions`);
    t.ok(existsSync(join(ROOT, pkg.exports[k]!.default)), `${k} js`);
    t.ok(existsSync(join(ROOT, pkg.exports[k]!.types)), `${k} d.ts`);
  }
  for (const s of ['start', 'test', 'bench', 'prepare', 'prepack']) t.ok(pkg.scripts[s], s);
});

t.test('bufferd/client and bufferd/protocol import by name', async (t) => {
  const r = await runNode([
    '--input-type=module',
    '-e',
    `const c = await import('bufferd/client'); const p = await import('bufferd/protocol');
     console.log(JSON.stringify({ connect: typeof c.connect, err: typeof c.BufferdError, frame: typeof p.encodeFrame,
       codes: Object.keys(p.ERROR_CODES).length, ops: p.OP_NAMES.length, version: p.PROTOCOL_VERSION }));`,
  ], { unhooked: true });
  t.equal(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout) as Record<string, unknown>;
  t.same(o, { connect: 'function', err: 'function', frame: 'function', codes: o['codes'], ops: o['ops'], version: 1 });
  t.ok((o['codes'] as number) >= 10);
});

t.test('bufferd/client and bufferd/protocol require by name (CommonJS)', async (t) => {
  const r = await runNode([
    '--input-type=commonjs',
    '-e',
    `const c = require('bufferd/client'); const p = require('bufferd/protocol');
     console.log(JSON.stringify({ connect: typeof c.connect, same: c.BufferdError === p.BufferdError, version: p.PROTOCOL_VERSION }));`,
  ], { unhooked: true });
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { connect: 'function', same: true, version: 1 });
  t.equal(r.stderr, '', 'no warning');
});

t.test('the packed tarball', async (t) => {
  const dir = tempDir(t, 'bufferd-pack-');
  // --ignore-scripts: pack the dist/ that `npm test` just built; the
  // prepack/prepare rebuild would pull dist/ from under the tests running
  // beside this one.
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT });
  t.equal(packed.code, 0, 'npm pack', { stderr: packed.stderr });
  const tgz = join(dir, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
  t.equal(tgz, join(dir, `bufferd-${pkg.version}.tgz`), 'the name the README gives');
  const unpacked = join(dir, 'unpacked');
  mkdirSync(unpacked);
  t.equal((await run('tar', ['-xzf', tgz, '-C', unpacked], { cwd: dir })).code, 0, 'tar -xzf');
  const root = join(unpacked, 'package');
  const files = walk(root);

  t.test('ships the built JavaScript, its types, the docs and the licence', async (t) => {
    for (const f of ['LICENSE', 'README.md', 'PROTOCOL.md', 'package.json', pkg.bin['bufferd']!, pkg.bin['bufctl']!, 'dist/client/index.d.ts', 'dist/protocol/index.d.ts', 'systemd/bufferd.service', 'daemon/server/dashboard/index.html']) {
      t.ok(files.includes(f), f);
    }
    t.same(files.filter((f) => f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('dist/bench/') || /(?<!\.d)\.ts$/.test(f)), [], 'no tests, benchmarks or TypeScript sources');
    t.notOk('private' in (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as object), 'the packed package.json is publishable');
  });

  t.test('ships nothing built for one machine and no source map without its sources', async (t) => {
    t.same(files.filter((f) => isElf(join(root, f))), [], 'no ELF file');
    t.same(files.filter((f) => f.endsWith('.node')), [], 'no native addon');
    t.same(danglingMaps(root, files), [], 'no .map whose sources are missing');
  });

  t.test('the shipped types need nothing a consumer does not install', async (t) => {
    // the consumer below compiles with skipLibCheck (tsc --init's default, and
    // 4x faster), which would hide a .d.ts importing a devDependency
    const deps = Object.keys((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
    const bare = new Set<string>();
    for (const f of files.filter((f) => f.endsWith('.d.ts'))) {
      const code = readFileSync(join(root, f), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, ''); // comments may quote anything
      for (const m of code.matchAll(/(?:from |import\()['"]([^'".][^'"]*)['"]/g)) bare.add(m[1]!);
    }
    t.ok(bare.size > 0, `bare imports found: ${[...bare].join(' ')}`);
    for (const spec of bare) {
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      t.ok(spec.startsWith('node:') || deps.includes(name), `${spec}: a dependency (or node:)`);
    }
  });

  // The documented installs: into a project (the client library) and
  // global (the commands), from the tarball. Both in parallel; the registry
  // is asked only for what the npm cache lacks.
  const proj = join(dir, 'proj');
  const global = join(dir, 'global');
  mkdirSync(proj);
  const init = await run('npm', ['init', '-y'], { cwd: proj });
  t.equal(init.code, 0, 'npm init -y', { stderr: init.stderr });
  const npmInstall = ['install', '--prefer-offline', '--no-audit', '--no-fund'];
  const [local, glob] = await Promise.all([
    run('npm', [...npmInstall, tgz], { cwd: proj, timeoutMs: 150_000 }),
    run('npm', [...npmInstall, '-g', '--prefix', global, tgz], { cwd: dir, timeoutMs: 150_000 }),
  ]);
  t.comment(`npm install of the tarball: ${local.ms} ms into a project, ${glob.ms} ms global (in parallel)`);
  const offline = [local, glob].find((r) => r.code !== 0 && OFFLINE.test(r.stderr));
  const skip = offline === undefined ? false : `npm could not reach the registry for the dependencies: ${OFFLINE.exec(offline.stderr)![1]}`;
  if (skip === false) {
    t.equal(local.code, 0, 'npm install ./bufferd-<v>.tgz', { stderr: local.stderr });
    t.equal(glob.code, 0, 'npm install -g ./bufferd-<v>.tgz', { stderr: glob.stderr });
  }
  const installed = join(proj, 'node_modules', 'bufferd');
  const bin = (name: string) => join(proj, 'node_modules', '.bin', name);

  t.test('the installed commands run', { skip }, async (t) => {
    t.notOk(existsSync(join(installed, 'tsconfig.json')) || existsSync(join(installed, 'node_modules', 'typescript')), 'nothing to compile: no TypeScript on the consumer');
    const [version, ...helps] = await Promise.all([
      run(bin('bufferd'), ['--version'], { cwd: proj }),
      ...['bufferd', 'bufctl'].map((name) => run(bin(name), ['--help'], { cwd: proj })),
    ]);
    t.equal(version.stdout.trim(), `bufferd ${pkg.version}`, 'bufferd --version', { stderr: version.stderr });
    ['bufferd', 'bufctl'].forEach((name, i) => {
      t.equal(helps[i]!.code, 0, `${name} --help exits 0`, { stderr: helps[i]!.stderr });
      t.match(helps[i]!.stdout, new RegExp(`^Usage: ${name} `), `${name} --help prints its usage`);
    });
    // npm install -g: bins in <prefix>/bin, the package (and the systemd
    // files the README copies) in $(npm root -g)/bufferd
    const [g, groot] = await Promise.all([run(join(global, 'bin', 'bufferd'), ['--version'], { cwd: dir }), run('npm', ['root', '-g', '--prefix', global], { cwd: dir })]);
    t.equal(g.stdout.trim(), `bufferd ${pkg.version}`, 'global bufferd --version', { stderr: g.stderr });
    t.ok(statSync(join(global, 'bin', 'bufctl')).mode & 0o111, 'global bufctl is executable');
    for (const f of ['bufferd.service', 'bufferd.socket', 'bufferd.sysusers', 'bufferd.json']) {
      t.ok(existsSync(join(groot.stdout.trim(), 'bufferd', 'systemd', f)), `$(npm root -g)/bufferd/systemd/${f}`);
    }
  });

  t.test('CommonJS, ES module and TypeScript consumers use bufferd/client', { skip }, async (t) => {
    t.equal((JSON.parse(readFileSync(join(proj, 'package.json'), 'utf8')) as { type?: string }).type ?? 'commonjs', 'commonjs', 'npm init -y made a CommonJS project');
    const d = await startDaemon(t, { bin: bin('bufferd'), env: { NODE_OPTIONS: '' } });
    const use = (mod: string) => `
      const c = await connect({ socket: process.argv[2], name: ${JSON.stringify(mod)} });
      const ping = await c.ping();
      const err = await c.info(4242).catch((e) => e);
      await c.disconnect();
      console.log(JSON.stringify({ uptime: typeof ping.uptimeMs, error: err instanceof BufferdError && err.code, version: PROTOCOL_VERSION }));`;
    const expected = { uptime: 'number', error: 'EBADF', version: 1 };
    writeFileSync(join(proj, 'cjs.js'), `const { connect, BufferdError } = require('bufferd/client');\nconst { PROTOCOL_VERSION } = require('bufferd/protocol');\n(async () => {${use('cjs')}\n})();\n`);
    writeFileSync(join(proj, 'esm.mjs'), `import { connect, BufferdError } from 'bufferd/client';\nimport { PROTOCOL_VERSION } from 'bufferd/protocol';\n${use('esm')}\n`);
    // TypeScript: module nodenext in this CommonJS project compiles static
    // imports to require() (cts.ts) and keeps them in .mts; node16 knows
    // nothing of require(esm), so there the documented way is await import().
    const typed = (mod: string) => use(mod).replace('const err =', 'const err: unknown =').replace('(e) => e', '(e: unknown) => e');
    mkdirSync(join(proj, 'src'));
    mkdirSync(join(proj, 'src16'));
    writeFileSync(join(proj, 'src', 'cts.ts'), `import { connect, BufferdError, type HandleInfo } from 'bufferd/client';\nimport { PROTOCOL_VERSION } from 'bufferd/protocol';\nconst none: HandleInfo | null = null;\nvoid none;\n(async () => {${typed('ts-cjs')}\n})();\n`);
    writeFileSync(join(proj, 'src', 'esm.mts'), `import { connect, BufferdError } from 'bufferd/client';\nimport { PROTOCOL_VERSION } from 'bufferd/protocol';\n${typed('ts-esm')}\n`);
    writeFileSync(join(proj, 'src16', 'dyn.ts'), `(async () => {\nconst { connect, BufferdError } = await import('bufferd/client');\nconst { PROTOCOL_VERSION } = await import('bufferd/protocol');${typed('ts-node16')}\n})();\n`);
    const tsconfig = (module: string, src: string, out: string) => ({
      compilerOptions: { module, moduleResolution: module, target: 'ES2022', strict: true, skipLibCheck: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')], outDir: out, rootDir: src },
      include: [`${src}/**/*`],
    });
    writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify(tsconfig('nodenext', 'src', 'out')));
    writeFileSync(join(proj, 'tsconfig.node16.json'), JSON.stringify(tsconfig('node16', 'src16', 'out16')));
    const tsc = await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'tsconfig.json', 'tsconfig.node16.json'], { cwd: proj, timeoutMs: 120_000 });
    t.equal(tsc.code, 0, 'the consumers type-check', { output: tsc.stdout + tsc.stderr });
    t.comment(`tsc of the consumers: ${tsc.ms} ms`);
    t.match(readFileSync(join(proj, 'out', 'cts.js'), 'utf8'), /require\("bufferd\/client"\)/, 'compiled to require()');

    const consumers: [string, string][] = [['cjs.js', 'CommonJS require'], ['esm.mjs', 'ES module import'], ['out/cts.js', 'TypeScript (nodenext) compiled to CommonJS'], ['out/esm.mjs', 'TypeScript (nodenext) ES module'], ['out16/dyn.js', 'TypeScript (node16) CommonJS with await import()']];
    const results = await Promise.all(consumers.map(([f]) => run(process.execPath, [f, d.socket], { cwd: proj })));
    consumers.forEach(([f, what], i) => {
      const r: Ran = results[i]!;
      t.equal(r.code, 0, `${what} (${f}) exits 0`, { stderr: r.stderr });
      t.same(r.code === 0 ? JSON.parse(r.stdout) : null, expected, what);
      t.equal(r.stderr, '', `${what}: no warning`);
    });
  });
});
