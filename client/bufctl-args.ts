/**
 * bufctl's command line: the options, reading argv into a command, its
 * arguments and options, and the usage errors — one line naming the
 * problem (with "did you mean" when a name is close to a real one) and one
 * line of usage or hint. Help texts. No I/O.
 */
import { TOPIC_NAMES } from '../protocol/ops/events.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** The argument as help shows it (" N"). */
  arg?: string;
  help?: string;
}

/** Every option of every command; `Command.options` says which apply where. */
export const OPTIONS: Record<string, OptionSpec> = {
  socket: { type: 'string', arg: ' PATH', help: 'daemon socket' },
  json: { type: 'boolean', help: 'print one JSON document instead of tables' },
  overcommit: { type: 'string', arg: ' N', help: 'also set nr_overcommit_hugepages' },
  pool: { type: 'string', arg: ' NAME', help: 'only this pool' },
  client: { type: 'string', arg: ' ID', help: 'only buffers this client id holds' },
  kind: { type: 'string', arg: ' KIND', help: 'only violations of this kind' },
  limit: { type: 'string', arg: ' N', help: 'at most N, newest' },
  interval: { type: 'string', arg: ' MS', help: 'status snapshot interval, 100 to 60000 ms (default 1000)' },
  topics: { type: 'string', arg: ' T,...', help: `activity topics (default all): ${TOPIC_NAMES.join(', ')}` },
  count: { type: 'string', arg: ' N', help: 'stop after N snapshots' },
  nth: { type: 'string', arg: ' N', help: 'inject: only every Nth matching call fails (default 1)' },
  probability: { type: 'string', arg: ' P', help: 'inject: percent chance a call fails (default 100)' },
  times: { type: 'string', arg: ' K', help: 'inject: fail at most K times (default no limit)' },
  seed: { type: 'string', arg: ' S', help: 'inject: seed of the probability RNG (default 1)' },
  format: { type: 'string', arg: ' FMT', help: 'graph format: text, dot, mermaid, json' },
  buffer: { type: 'string', arg: ' ID', help: 'only this buffer id' },
  'record-data': { type: 'boolean', help: 'journal the bytes clients write, not just their digests' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
  version: { type: 'boolean', help: "print bufctl's version" },
};

/** Options every command takes. */
export const GLOBAL_OPTIONS = ['socket', 'json', 'help'];

/** A usage error: exit 2. `hint` replaces the usage line when given. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Invocation {
  command: string | undefined;
  positionals: string[];
  values: Record<string, string | boolean>;
  /** Options not in OPTIONS, as written ("--bogus", "-x"); reported once the command is known. */
  unknown: string[];
}

const isNegativeNumber = (s: string) => /^-[0-9]/.test(s);

/**
 * Read argv: `--name`, `--name=value`, `--name value` for string options,
 * `-h`, `--` ending the options. A negative number is an argument, not an
 * option (`hugepages set 2M -1` is then refused as a count, not as "-1").
 */
export function parseArgv(argv: readonly string[]): Invocation {
  const positionals: string[] = [];
  const values: Record<string, string | boolean> = {};
  const unknown: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-' || isNegativeNumber(a)) {
      positionals.push(a);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      inline = eq < 0 ? undefined : a.slice(eq + 1);
    } else {
      const short = Object.entries(OPTIONS).find(([, o]) => o.short === a.slice(1));
      if (short === undefined) {
        unknown.push(a);
        continue;
      }
      name = short[0];
    }
    const spec = OPTIONS[name];
    if (spec === undefined) {
      unknown.push(`--${name}`);
      continue;
    }
    if (spec.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`option --${name} takes no value (got '--${name}=${inline}')`);
      values[name] = true;
      continue;
    }
    if (inline === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && !isNegativeNumber(next))) {
        throw new UsageError(`option --${name} needs a value (--${name}${spec.arg ?? ' VALUE'})`);
      }
      inline = next;
      i++;
    }
    values[name] = inline;
  }
  const [command, ...rest] = positionals;
  return { command, positionals: rest, values, unknown };
}

/**
 * Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of neighbours ("stauts" is 1 from "status").
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate a mistyped name most likely meant, or undefined when none is close. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const prefixed = candidates.filter((c) => w.length >= 2 && c.startsWith(w));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(w, c);
    if (dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  return bestD <= Math.max(1, Math.floor(w.length / 3)) ? best : undefined;
}

/** " (did you mean 'status'?)" or "". */
export function didYouMean(word: string, candidates: readonly string[], quote = (s: string) => `'${s}'`): string {
  const c = closest(word, candidates);
  return c === undefined ? '' : ` (did you mean ${quote(c)}?)`;
}

/** An integer option ≥ min, or undefined when absent; a usage error otherwise. */
export function intOption(values: Record<string, string | boolean | undefined>, name: string, min: number, what: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} '${String(v)}' is not ${what}`);
  return n;
}

/** A value that must be one of a list: the value, or a usage error with "did you mean" and the list as the hint. */
export function oneOf<T extends string>(option: string, noun: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${option} '${value}' is not a ${noun}${didYouMean(value, allowed)}`, `${noun[0]!.toUpperCase()}${noun.slice(1)}s: ${allowed.join(', ')}.`);
}

export interface CommandHelp {
  usage: string;
  summary: string;
  options: string[];
}

/** `bufctl --help`. */
export function usage(commands: Record<string, CommandHelp>): string {
  const cmds = Object.values(commands)
    .map((c) => `  ${c.usage}\n      ${c.summary}`)
    .join('\n');
  return `Usage: bufctl [--socket PATH] <command> [options]

Commands:
${cmds}

Global options:
  --socket PATH   daemon socket (default: $BUFFERD_SOCKET, else
                  $XDG_RUNTIME_DIR/bufferd.sock, else /tmp/bufferd-<uid>.sock)
  --json          print one JSON document instead of tables; errors too, as
                  {"error": {"code", "message", "details"}}
  -h, --help      show help (also: bufctl <command> --help)
  --version       print bufctl's version

Exit codes: 0 ok, 1 the daemon answered an error, 2 usage error, 3 cannot connect.
`;
}

/** `bufctl <command> --help`. */
export function commandHelp(c: CommandHelp): string {
  const opts = c.options.map((o) => `  --${`${o}${OPTIONS[o]?.arg ?? ''}`.padEnd(16)} ${OPTIONS[o]?.help ?? ''}`).join('\n');
  return `Usage: bufctl [--socket PATH] ${c.usage}\n\n${c.summary}\n\nOptions:\n${opts}\n  --socket PATH      daemon socket\n  -h, --help         this help\n`;
}
