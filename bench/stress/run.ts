/**
 * npm run stress [-- PART... [--short] [--seed N]]
 *
 * Runs the named stress parts (all when none is named) against the real
 * daemon. Each part prints its figures (JSON lines on stdout, text on
 * stderr) and ends with one line `PART: pass` or `PART: fail (reason)`;
 * the exit status is 1 when any part failed. Every process a part started
 * is stopped when it ends; anything left is SIGKILLed on exit.
 */
import { killAll, sleep, type PartOptions, type Verdict } from './common.js';

const PARTS: Record<string, () => Promise<{ run(o: PartOptions): Promise<Verdict> }>> = {
  fuzz: () => import('./fuzz.js'),
  killstorm: () => import('./killstorm.js'),
  hostile: () => import('./hostile.js'),
  soak: () => import('./soak.js'),
};

/** A part still running after this long is failed (and its processes killed). */
const PART_TIMEOUT_MS = { short: 5 * 60_000, full: 45 * 60_000 };

const USAGE = `Usage: npm run stress [-- PART... [--short] [--seed N]]\nParts: ${Object.keys(PARTS).join(', ')}\n`;

function parse(argv: string[]): { names: string[]; opts: PartOptions } | string {
  const names: string[] = [];
  const opts: PartOptions = { short: false, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--short') opts.short = true;
    else if (a === '--seed') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) return `--seed needs a non-negative integer, got ${argv[i]}`;
      opts.seed = n;
    } else if (a.startsWith('--seed=')) {
      const n = Number(a.slice(7));
      if (!Number.isInteger(n) || n < 0) return `--seed needs a non-negative integer, got ${a.slice(7)}`;
      opts.seed = n;
    } else if (a.startsWith('-')) return `unknown option ${a}`;
    else if (!(a in PARTS)) return `unknown part ${a}; available: ${Object.keys(PARTS).join(', ')}`;
    else names.push(a);
  }
  return { names: names.length > 0 ? names : Object.keys(PARTS), opts };
}

async function runPart(name: string, opts: PartOptions): Promise<Verdict> {
  const m = await PARTS[name]!();
  const ms = PART_TIMEOUT_MS[opts.short ? 'short' : 'full'];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Verdict>((resolve) => {
    timer = setTimeout(() => {
      process.stderr.write(`[${name}] still running after ${ms / 1000} s: killing its processes\n`);
      killAll();
      resolve({ pass: false, reason: `timed out after ${ms / 1000} s` });
    }, ms);
  });
  try {
    return await Promise.race([m.run(opts), timeout]);
  } catch (e) {
    return { pass: false, reason: `harness error: ${(e as Error)?.message ?? String(e)}` };
  } finally {
    clearTimeout(timer);
    // a part stops what it started; anything left over (a timeout, a bug) goes now
    if (killAll() > 0) await sleep(100);
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const p = parse(argv);
  if (typeof p === 'string') {
    process.stderr.write(`stress: ${p}\n${USAGE}`);
    return 2;
  }
  let failed = 0;
  for (const name of p.names) {
    process.stderr.write(`\n=== stress ${name}${p.opts.short ? ' (short)' : ''}, seed ${p.opts.seed}\n`);
    const v = await runPart(name, p.opts);
    const reason = (v.reason ?? '').replace(/\s+/g, ' ');
    process.stdout.write(v.pass ? `${name}: pass\n` : `${name}: fail (${reason})\n`);
    if (!v.pass) failed++;
  }
  return failed > 0 ? 1 : 0;
}

process.on('exit', () => killAll());
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

main(process.argv.slice(2)).then(
  (c) => process.exit(c),
  (e: unknown) => {
    process.stderr.write(`stress: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
