/**
 * Loader hooks for the test processes (see register.mjs): a relative
 * `./x.js` import resolves to `./x.ts` when that exists (as tsc's NodeNext
 * resolution and ts-node do), and a .ts file is transpiled with TypeScript's
 * transpileModule (isolated, no type check: what ts-node's transpile-only
 * mode does, which tap uses) with an inline source map, so stack traces and
 * tap's coverage point at the .ts lines. Results are cached by the file's
 * path, content, the compiler version and options.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CACHE = join(ROOT, '.tap', 'ts-cache');
const require = createRequire(import.meta.url);
const TS_VERSION = JSON.parse(readFileSync(require.resolve('typescript/package.json'), 'utf8')).version;
const COMPILER_OPTIONS = {
  target: 'ES2022',
  module: 'ESNext',
  sourceMap: false,
  inlineSourceMap: true,
  inlineSources: true,
  esModuleInterop: true,
};
const KEY_BASE = `${TS_VERSION}\0${JSON.stringify(COMPILER_OPTIONS)}\0`;

let ts;
function transpile(path, source) {
  ts ??= require('typescript');
  const options = ts.convertCompilerOptionsFromJson(COMPILER_OPTIONS, ROOT).options;
  return ts.transpileModule(source, { compilerOptions: options, fileName: path }).outputText;
}

const TS = /\.[cm]?ts$/;

export async function resolve(specifier, context, next) {
  if (specifier.endsWith('.js') && (specifier.startsWith('./') || specifier.startsWith('../')) && context.parentURL?.startsWith('file:')) {
    const ts = new URL(`${specifier.slice(0, -3)}.ts`, context.parentURL);
    if (existsSync(ts)) return { url: ts.href, format: 'module', shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !TS.test(new URL(url).pathname)) return next(url, context);
  const path = fileURLToPath(url);
  const source = readFileSync(path, 'utf8');
  const key = createHash('sha256').update(`${KEY_BASE}${path}\0${source}`).digest('hex');
  const file = join(CACHE, `${key}.js`);
  let out;
  try {
    out = readFileSync(file, 'utf8');
  } catch {
    out = transpile(path, source);
    mkdirSync(CACHE, { recursive: true });
    // written whole under another name first: test processes run side by side
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, out);
    renameSync(tmp, file);
  }
  return { format: 'module', source: out, shortCircuit: true };
}

