#!/usr/bin/env node
/**
 * bufctl: look at and operate a running bufferd.
 *
 * Exit codes: 0 ok, 1 the daemon answered an error, 2 usage error,
 * 3 cannot connect. With --json, stdout holds exactly one JSON document
 * whatever happens — the result, or {"error": {code, message, details}} —
 * except `watch --json`, a stream of one JSON document per line (its error,
 * if any, is the last line).
 */
import { connect, ConnectError } from './connect.js';
import type { BufferClient } from './client.js';
import { BufferdError } from '../protocol/errors.js';
import { VERSION } from '../daemon/lib/version.js';
import { parseArgv, UsageError, usage, commandHelp, didYouMean, OPTIONS, GLOBAL_OPTIONS, type Invocation } from './bufctl-args.js';
import { COMMANDS, type Action, type Command, type Io } from './bufctl-commands.js';
import { connectFailure, errorDocument, errorText, type CliError } from './bufctl-errors.js';

export const EXIT_OK = 0;
export const EXIT_DAEMON_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONNECT = 3;

export type { Io };

const NAMES = Object.keys(COMMANDS);

/** The usage error as a CliError: the command's usage line as the hint unless the error has its own. */
function usageError(e: UsageError, cmd: Command | undefined, name: string | undefined): CliError {
  const line = cmd !== undefined ? `bufctl ${cmd.usage}` : undefined;
  const details: Record<string, unknown> = {};
  if (name !== undefined && cmd !== undefined) details['command'] = name;
  if (line !== undefined) details['usage'] = line;
  const hint = e.hint ?? (line !== undefined ? `Usage: ${line}  (bufctl ${name!} --help for more)` : "See 'bufctl --help'.");
  return { exit: EXIT_USAGE, code: 'EINVAL', message: e.message, details, hint };
}

/** The command line checked against the command: its options and the number of its arguments. */
function check(inv: Invocation, name: string, cmd: Command): void {
  const allowed = [...GLOBAL_OPTIONS, ...cmd.options, 'version'];
  const u = inv.unknown[0];
  if (u !== undefined) {
    const known = allowed.filter((o) => o !== 'version').map((o) => `--${o}`);
    throw new UsageError(`unknown option '${u}' for '${name}'${didYouMean(u, known)}`);
  }
  for (const k of Object.keys(inv.values)) {
    if (!allowed.includes(k)) throw new UsageError(`option --${k} does not apply to '${name}'`);
  }
  const n = inv.positionals.length;
  if (n > cmd.maxArgs) {
    const extra = inv.positionals[cmd.maxArgs]!;
    throw new UsageError(cmd.maxArgs === 0 ? `'${name}' takes no arguments (got '${extra}')` : `too many arguments for '${name}' (from '${extra}')`);
  }
  if (n < cmd.minArgs) throw new UsageError(`'${name}' needs ${cmd.usage.split(' ').filter((w) => w.startsWith('<')).join(' ')}`);
}

/** Run bufctl with argv; returns the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  // known before parsing, so that even a bad command line answers in JSON
  const end = argv.indexOf('--');
  const json = (end < 0 ? argv : argv.slice(0, end)).includes('--json');
  let streaming = false; // watch --json: one document per line
  const fail = (e: CliError): number => {
    if (json) io.out(errorDocument(e, streaming));
    io.err(errorText(e));
    return e.exit;
  };

  let inv: Invocation;
  try {
    inv = parseArgv(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      // the command it was for, if one is named: its usage line goes with the error
      const named = argv.find((a) => Object.prototype.hasOwnProperty.call(COMMANDS, a));
      return fail(usageError(e, named === undefined ? undefined : COMMANDS[named], named));
    }
    throw e;
  }
  const name = inv.command;
  const values = inv.values;
  if (values['version'] === true) {
    io.out(json ? `${JSON.stringify({ version: VERSION }, null, 2)}\n` : `bufctl ${VERSION}\n`);
    return EXIT_OK;
  }
  if (name === undefined || name === 'help') {
    const topic = name === 'help' ? inv.positionals[0] : undefined;
    if (topic !== undefined && COMMANDS[topic] !== undefined) {
      io.out(commandHelp(COMMANDS[topic]));
      return EXIT_OK;
    }
    if (topic !== undefined) {
      return fail(usageError(new UsageError(`no help for '${topic}': not a command${didYouMean(topic, NAMES)}`, `Commands: ${NAMES.join(', ')}. See 'bufctl --help'.`), undefined, undefined));
    }
    if (values['help'] === true || name === 'help') {
      io.out(usage(COMMANDS));
      return EXIT_OK;
    }
    const u = inv.unknown[0];
    const problem = u !== undefined ? `unknown option '${u}'${didYouMean(u, Object.keys(OPTIONS).map((o) => `--${o}`))}` : 'no command given';
    return fail(usageError(new UsageError(problem, `Commands: ${NAMES.join(', ')}. See 'bufctl --help'.`), undefined, undefined));
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    return fail(usageError(new UsageError(`unknown command '${name}'${didYouMean(name, NAMES)}`, `Commands: ${NAMES.join(', ')}. See 'bufctl --help'.`), undefined, undefined));
  }
  if (values['help'] === true) {
    io.out(commandHelp(cmd));
    return EXIT_OK;
  }
  streaming = json && name === 'watch';
  let action: Action;
  try {
    check(inv, name, cmd);
    action = cmd.plan({ positionals: inv.positionals, values, json }, io);
  } catch (e) {
    if (e instanceof UsageError) return fail(usageError(e, cmd, name));
    throw e;
  }

  let client: BufferClient;
  try {
    // bufctl is the admin tool: it presents the admin cookie when it can read it
    client = await connect({ socket: values['socket'] as string | undefined, name: `bufctl:${process.pid}`, admin: 'if-readable' });
  } catch (e) {
    if (e instanceof ConnectError) return fail(connectFailure(e));
    if (e instanceof BufferdError) {
      return fail({ exit: EXIT_DAEMON_ERROR, code: e.code, message: `the daemon refused the session: ${e.message}`, details: e.details ?? {} });
    }
    throw e;
  }
  try {
    io.out(await action(client));
    return EXIT_OK;
  } catch (e) {
    if (e instanceof BufferdError) return fail({ exit: EXIT_DAEMON_ERROR, code: e.code, message: e.message, details: e.details ?? {} });
    throw e;
  } finally {
    await client.disconnect();
  }
}

const isMain = process.argv[1] !== undefined && /bufctl(\.js)?$/.test(process.argv[1]);
if (isMain) {
  const argv = process.argv.slice(2);
  run(argv, {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    tty: process.stdout.isTTY,
    terminal: { input: process.stdin, output: process.stdout },
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      const err = e as Error;
      if (argv.includes('--json')) process.stdout.write(errorDocument({ exit: 1, code: 'EIO', message: `internal error in bufctl: ${err?.message ?? String(e)}`, details: {} }));
      process.stderr.write(`bufctl: internal error: ${err?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
