/**
 * The test processes' TypeScript loader (package.json "tap": test-env sets
 * NODE_OPTIONS=--import=<this> and TAP_TYPE_STRIP_ONLY=1, which keeps
 * @tapjs/typescript from loading ts-node). ts-node loads the TypeScript
 * compiler (~0.5 s of CPU) and transpiles every source file again in each
 * of the suite's ~110 test processes; this loader transpiles a file once per
 * content and keeps the result in .tap/ts-cache, so a test process loads the
 * compiler only when it meets a file the cache does not hold yet.
 *
 * Only a process whose main script is TypeScript registers the hooks: the
 * daemons, bufctl and fixtures a test spawns inherit NODE_OPTIONS and run
 * plain JS from dist/ or test/fixtures/, and pay nothing but reading this.
 */
import { register } from 'node:module';

if (/\.[cm]?tsx?$/.test(process.argv[1] ?? '')) register('./hooks.mjs', import.meta.url);

// tap keeps node_modules out of the coverage data with the pattern ^<project>/node_modules, which
// misses a node_modules reached through a symlink (a git worktree sharing another checkout's): then
// every hooked process wrote megabytes of coverage of tap, playwright and the rest, never reported.
// Any node_modules directory is left out instead (processinfo's own default), here and in what the
// test spawns; for a checkout with its own node_modules nothing changes.
if (process.env._TAPJS_PROCESSINFO_COV_EXCLUDE_ !== undefined) process.env._TAPJS_PROCESSINFO_COV_EXCLUDE_ = String(/[\\/]node_modules[\\/]/);

// what a test spawns runs JS (from dist/, test/fixtures/), some of it in another
// directory, where this relative path would not resolve: it inherits NODE_OPTIONS without it
if (process.env.NODE_OPTIONS !== undefined) {
  process.env.NODE_OPTIONS = process.env.NODE_OPTIONS.replace(/(^|\s)"?--import[= ][^\s"]*test\/loader\/register\.mjs"?(?=\s|$)/g, '').trim();
}
