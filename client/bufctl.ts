#!/usr/bin/env node
/**
 * bufctl: look at and operate a running bufferd.
 *
 * Exit codes: 0 ok, 1 the daemon answered an error, 2 usage error,
 * 3 cannot connect.
 */
import { parseArgs } from 'node:util';
import { connect, ConnectError, readCookie } from './connect.js';
import type { BufferClient } from './client.js';
import { BufferdError } from '../protocol/errors.js';
import { statusView, poolsTable, hugepagesTable, hugepagesSetView, poolDetailView, clientsTable } from './views.js';
import { buffersView } from './views-buffers.js';
import { parseSize } from '../protocol/units.js';
import { driversTable, constraintsView, mergeView, violationsView } from './views-drivers.js';
import { watch } from './watch.js';
import { TOPIC_NAMES } from '../protocol/ops/events.js';

export const EXIT_OK = 0;
export const EXIT_DAEMON_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONNECT = 3;

interface CommandArgs {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  json: boolean;
}

interface Command {
  usage: string;
  summary: string;
  options: string[];
  minArgs: number;
  maxArgs: number;
  run(c: BufferClient, a: CommandArgs, io: Io): Promise<string>;
}

const print = (json: boolean, value: unknown, human: () => string): string =>
  json ? `${JSON.stringify(value, null, 2)}\n` : human();

const COMMANDS: Record<string, Command> = {
  status: {
    usage: 'status [--pool NAME] [--json]',
    summary: 'show memory, hugepages, pools, clients and drivers; --pool: one pool\'s arenas and bins',
    options: ['json', 'pool'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const pool = a.values['pool'] as string | undefined;
      const st = await c.status(pool === undefined ? {} : { pool });
      if (pool !== undefined) {
        const p = st.pools.find((x) => x.name === pool)!;
        return print(a.json, { ...p, ...st.pool }, () => poolDetailView(p, st.pool!));
      }
      return print(a.json, st, () => statusView(st));
    },
  },
  pools: {
    usage: 'pools [--json]',
    summary: 'list pools: cache policy, page size, region, use',
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const r = await c.pools();
      return print(a.json, r.pools, () => poolsTable(r.pools));
    },
  },
  hugepages: {
    usage: 'hugepages [set <size> <n> [--overcommit N]] [--json]',
    summary: 'show hugepage pools, or resize one (size 2M or 1G)',
    options: ['json', 'overcommit'],
    minArgs: 0,
    maxArgs: 3,
    run: async (c, a) => {
      if (a.positionals.length === 0) {
        if (a.values['overcommit'] !== undefined) throw new UsageError('--overcommit applies to hugepages set');
        const st = await c.status();
        return print(a.json, st.hugepages, () => hugepagesTable(st.hugepages));
      }
      const [verb, sz, n] = a.positionals;
      if (verb !== 'set' || sz === undefined || n === undefined) throw new UsageError('expected: hugepages set <size> <n>');
      let size: number;
      try {
        size = parseSize(sz, 'size');
      } catch {
        throw new UsageError(`'${sz}' is not a size (use 2M or 1G)`);
      }
      const nr = Number(n);
      if (!Number.isSafeInteger(nr) || nr < 0) throw new UsageError(`'${n}' is not a page count`);
      const r = await c.setHugepages(size, nr, intOption(a, 'overcommit', 0, 'a page count'));
      return print(a.json, r, () => hugepagesSetView(r));
    },
  },
  buffers: {
    usage: 'buffers [--client ID] [--pool NAME] [--json]',
    summary: 'list live buffers: who holds them, drivers, totals (all for admins, your own otherwise)',
    options: ['json', 'client', 'pool'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const opts: { client?: number; pool?: string } = {};
      const cl = intOption(a, 'client', 0, 'a client id');
      if (cl !== undefined) opts.client = cl;
      if (a.values['pool'] !== undefined) opts.pool = a.values['pool'] as string;
      const r = await c.buffers(opts);
      return print(a.json, r.buffers, () => buffersView(r.buffers));
    },
  },
  clients: {
    usage: 'clients [--json]',
    summary: 'list connected clients: principal, handles, bytes against quota, capabilities',
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const st = await c.status();
      return print(a.json, st.clients, () => clientsTable(st.clients));
    },
  },
  drivers: {
    usage: 'drivers [--json]',
    summary: 'list drivers: registrations, IOVA, IOMMU entries by page size, bounce slots, leaks',
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const r = await c.drivers();
      return print(a.json, r.drivers, () => driversTable(r.drivers));
    },
  },
  constraints: {
    usage: 'constraints <driver> [--json]',
    summary: "show a driver's constraints",
    options: ['json'],
    minArgs: 1,
    maxArgs: 1,
    run: async (c, a) => {
      const r = await c.constraints(a.positionals[0]!);
      return print(a.json, r, () => constraintsView(r));
    },
  },
  merge: {
    usage: 'merge <driver>... [--json]',
    summary: 'merge several drivers\' constraints and show the pools that satisfy them',
    options: ['json'],
    minArgs: 1,
    maxArgs: 32,
    run: async (c, a) => {
      const r = await c.merge(a.positionals);
      return print(a.json, r, () => mergeView(r));
    },
  },
  violations: {
    usage: 'violations [--kind KIND] [--limit N] [--json]',
    summary: 'coherency violations recorded by the checker, newest last, and counts by kind',
    options: ['json', 'kind', 'limit'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const opts: Parameters<BufferClient['violations']>[0] = {};
      if (a.values['kind'] !== undefined) opts.kind = a.values['kind'] as NonNullable<typeof opts.kind>;
      const limit = intOption(a, 'limit', 1, 'a positive count');
      if (limit !== undefined) opts.limit = limit;
      const r = await c.violations(opts);
      return print(a.json, r, () => violationsView(r));
    },
  },
  watch: {
    usage: 'watch [--interval MS] [--topics T,...] [--count N] [--json]',
    summary: 'live status and activity, pushed by the daemon, until Ctrl-C (--json: one event per line)',
    options: ['json', 'interval', 'topics', 'count'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a, io) => {
      const intervalMs = intOption(a, 'interval', 100, 'an interval of at least 100 ms') ?? 1000;
      if (intervalMs > 60_000) throw new UsageError('--interval is at most 60000 ms');
      const count = intOption(a, 'count', 1, 'a positive count');
      let topics: string[] | undefined;
      if (a.values['topics'] !== undefined) {
        topics = String(a.values['topics']).split(',').filter((t) => t !== '');
        const bad = topics.filter((t) => !(TOPIC_NAMES as readonly string[]).includes(t));
        if (bad.length > 0 || topics.length === 0) throw new UsageError(`--topics: unknown topic '${bad[0] ?? ''}' (topics: ${TOPIC_NAMES.join(', ')})`);
      }
      const o: Parameters<typeof watch>[1] = { intervalMs, json: a.json, tty: io.tty === true && !a.json, out: io.out };
      if (count !== undefined) o.count = count;
      if (topics !== undefined) o.topics = topics;
      await watch(c, o);
      return '';
    },
  },
  reload: {
    usage: 'reload [--json]',
    summary: 'reload the daemon\'s config file (as SIGHUP); an invalid file is rejected and nothing changes',
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const r = await c.reload();
      return print(a.json, r, () =>
        `reloaded ${r.source}\n` +
        (r.applied.length === 0 ? '  nothing changed\n' : r.applied.map((x) => `  applied: ${x}\n`).join('')) +
        r.ignored.map((x) => `  not applied: ${x}\n`).join(''),
      );
    },
  },
  dashboard: {
    usage: 'dashboard [--json]',
    summary: 'print the web dashboard\'s address, with the admin cookie as its token when readable',
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    run: async (c, a) => {
      const st = await c.status();
      if (st.dashboard === null) {
        throw new BufferdError('ENOTSUP', 'the dashboard is off: start bufferd with --http 127.0.0.1:PORT (or server.http in the config)');
      }
      const token = readCookie(c.socketPath) ?? null;
      const url = token === null ? st.dashboard : `${st.dashboard}#token=${token}`;
      // url: what to open; address: the dashboard without a token; token: the one in the url (null: none readable, the page asks)
      return print(a.json, { url, address: st.dashboard, token }, () =>
        token === null ? `${url}\n(no admin cookie readable: add #token=<a token with the 'monitor' capability>)\n` : `${url}\n`,
      );
    },
  },
};

class UsageError extends Error {}

/** An integer option ≥ min, or undefined when absent; a usage error otherwise. */
function intOption(a: CommandArgs, name: string, min: number, what: string): number | undefined {
  const v = a.values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} '${String(v)}' is not ${what}`);
  return n;
}

/** Every option: its parseArgs type, and for per-command help its argument and what it does. */
const OPTIONS: Record<string, { type: 'string' | 'boolean'; short?: string; arg?: string; help?: string }> = {
  socket: { type: 'string' },
  json: { type: 'boolean', help: 'print one JSON document instead of tables' },
  overcommit: { type: 'string', arg: ' N', help: 'also set nr_overcommit_hugepages' },
  pool: { type: 'string', arg: ' NAME', help: 'only this pool' },
  client: { type: 'string', arg: ' ID', help: 'only buffers this client id holds' },
  kind: { type: 'string', arg: ' KIND', help: 'only violations of this kind' },
  limit: { type: 'string', arg: ' N', help: 'at most N, newest' },
  interval: { type: 'string', arg: ' MS', help: 'status snapshot interval, 100 to 60000 ms (default 1000)' },
  topics: { type: 'string', arg: ' T,...', help: `activity topics (default all): ${TOPIC_NAMES.join(', ')}` },
  count: { type: 'string', arg: ' N', help: 'stop after N snapshots' },
  help: { type: 'boolean', short: 'h' },
};

function usage(): string {
  const cmds = Object.values(COMMANDS)
    .map((c) => `  ${c.usage}\n      ${c.summary}`)
    .join('\n');
  return `Usage: bufctl [--socket PATH] <command> [options]

Commands:
${cmds}

Global options:
  --socket PATH   daemon socket (default: $BUFFERD_SOCKET, else
                  $XDG_RUNTIME_DIR/bufferd.sock, else /tmp/bufferd-<uid>.sock)
  --json          print one JSON document instead of tables
  -h, --help      show help (also: bufctl <command> --help)

Exit codes: 0 ok, 1 the daemon answered an error, 2 usage error, 3 cannot connect.
`;
}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Output is a terminal (watch redraws the screen). */
  tty?: boolean;
}

/** Run bufctl with argv; returns the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    io.err(`bufctl: ${(e as Error).message}\n\n${usage()}`);
    return EXIT_USAGE;
  }
  const [name, ...rest] = parsed.positionals;
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (name === undefined) {
    if (values['help'] === true) {
      io.out(usage());
      return EXIT_OK;
    }
    io.err(`bufctl: no command given\n\n${usage()}`);
    return EXIT_USAGE;
  }
  if (name === 'help') {
    io.out(usage());
    return EXIT_OK;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    io.err(`bufctl: unknown command '${name}'\n\n${usage()}`);
    return EXIT_USAGE;
  }
  if (values['help'] === true) {
    const opts = cmd.options.map((o) => `  --${`${o}${OPTIONS[o]?.arg ?? ''}`.padEnd(16)} ${OPTIONS[o]?.help ?? ''}`).join('\n');
    io.out(`Usage: bufctl [--socket PATH] ${cmd.usage}\n\n${cmd.summary}\n\nOptions:\n${opts}\n  --socket PATH      daemon socket\n  -h, --help         this help\n`);
    return EXIT_OK;
  }
  for (const k of Object.keys(values)) {
    if (k !== 'socket' && k !== 'help' && !cmd.options.includes(k)) {
      io.err(`bufctl: option --${k} does not apply to '${name}'\nUsage: bufctl ${cmd.usage}\n`);
      return EXIT_USAGE;
    }
  }
  if (rest.length < cmd.minArgs || rest.length > cmd.maxArgs) {
    io.err(`bufctl: wrong number of arguments for '${name}'\nUsage: bufctl ${cmd.usage}\n`);
    return EXIT_USAGE;
  }
  let client: BufferClient;
  try {
    client = await connect({ socket: values['socket'] as string | undefined, name: `bufctl:${process.pid}` });
  } catch (e) {
    if (e instanceof ConnectError) {
      io.err(
        `bufctl: ${e.message}\n` +
          `Is the daemon running? Start it with 'npx bufferd' (or 'npm start' in a checkout),\n` +
          `or point bufctl at it with --socket PATH or BUFFERD_SOCKET.\n`,
      );
      return EXIT_CONNECT;
    }
    if (e instanceof BufferdError) {
      io.err(`bufctl: the daemon refused the session: ${e.code}: ${e.message}\n`);
      return EXIT_DAEMON_ERROR;
    }
    throw e;
  }
  try {
    io.out(await cmd.run(client, { positionals: rest, values, json: values['json'] === true }, io));
    return EXIT_OK;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`bufctl: ${e.message}\nUsage: bufctl ${cmd.usage}\n`);
      return EXIT_USAGE;
    }
    if (e instanceof BufferdError) {
      if (values['json'] === true) io.out(`${JSON.stringify({ error: { code: e.code, message: e.message, details: e.details } }, null, 2)}\n`);
      io.err(`bufctl: ${e.code}: ${e.message}\n`);
      return EXIT_DAEMON_ERROR;
    }
    throw e;
  } finally {
    await client.disconnect();
  }
}

const isMain = process.argv[1] !== undefined && /bufctl(\.js)?$/.test(process.argv[1]);
if (isMain) {
  run(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    tty: process.stdout.isTTY,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`bufctl: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
