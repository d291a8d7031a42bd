/**
 * bufctl's commands: what each takes, its help line, and what it asks the
 * daemon and prints (a table, or with --json one JSON document).
 */
import type { BufferClient } from './client.js';
import { connect, readCookie } from './connect.js';
import { BufferdError } from '../protocol/errors.js';
import { statusView, poolsTable, hugepagesTable, hugepagesSetView, poolDetailView, clientsTable } from './views.js';
import { buffersView } from './views-buffers.js';
import { DEBUG_COMMANDS } from './bufctl-history.js';
import { driversTable, constraintsView, mergeView, violationsView } from './views-drivers.js';
import { parseSize } from '../protocol/units.js';
import { watch } from './watch.js';
import type { TerminalIo } from './watch-term.js';
import { TOPIC_NAMES } from '../protocol/ops/events.js';
import { VIOLATION_KINDS } from '../protocol/ops/coherency.js';
import type { ReloadInfo } from '../protocol/results.js';
import { UsageError, intOption, oneOf, didYouMean, type CommandHelp } from './bufctl-args.js';
import { INJECT_COMMAND } from './bufctl-inject.js';
import { RECORD_HELP, planRecord } from './bufctl-record.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Output is a terminal (watch redraws the screen). */
  tty?: boolean;
  /** The terminal's streams (watch: keys, size). */
  terminal?: TerminalIo;
}

export interface CommandArgs {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  json: boolean;
}

/** What a command does once connected: what it prints. */
export type Action = (c: BufferClient) => Promise<string>;

export interface Command extends CommandHelp {
  minArgs: number;
  maxArgs: number;
  /** Check the arguments (a UsageError before anything is asked of the daemon) and say what to do. */
  plan(a: CommandArgs, io: Io): Action;
}

const print = (json: boolean, value: unknown, human: () => string): string => (json ? `${JSON.stringify(value, null, 2)}\n` : human());

/** `reload` as text: what was applied and what was not (each entry says why). */
function reloadView(r: ReloadInfo): string {
  const applied = r.applied.length === 0 ? '  nothing changed\n' : r.applied.map((x) => `  applied: ${x}\n`).join('');
  return `reloaded ${r.source}\n${applied}${r.ignored.map((x) => `  not applied: ${x}\n`).join('')}`;
}

export const COMMANDS: Record<string, Command> = {
  status: {
    usage: 'status [--pool NAME] [--json]',
    summary: "show memory, hugepages, pools, clients and drivers; --pool: one pool's arenas and bins",
    options: ['json', 'pool'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a) => async (c) => {
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
    plan: (a) => async (c) => {
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
    plan: (a) => {
      if (a.positionals.length === 0) {
        if (a.values['overcommit'] !== undefined) throw new UsageError('--overcommit applies to hugepages set');
        return async (c) => {
          const st = await c.status();
          return print(a.json, st.hugepages, () => hugepagesTable(st.hugepages));
        };
      }
      const [verb, sz, n] = a.positionals;
      if (verb !== 'set') throw new UsageError(`unknown hugepages action '${verb!}'${didYouMean(verb!, ['set'])}: only 'set' changes anything`);
      if (sz === undefined || n === undefined) throw new UsageError(`hugepages set needs a page size and a count (e.g. hugepages set 2M 128)`);
      let size: number;
      try {
        size = parseSize(sz, 'size');
      } catch {
        throw new UsageError(`'${sz}' is not a hugepage size (2M or 1G)`);
      }
      const nr = Number(n);
      if (n.trim() === '' || !Number.isSafeInteger(nr) || nr < 0) throw new UsageError(`'${n}' is not a page count: nr_hugepages is a whole number, 0 or more`);
      const overcommit = intOption(a.values, 'overcommit', 0, 'a page count (0 or more)');
      return async (c) => {
        const r = await c.setHugepages(size, nr, overcommit);
        return print(a.json, r, () => hugepagesSetView(r));
      };
    },
  },
  buffers: {
    usage: 'buffers [--client ID] [--pool NAME] [--json]',
    summary: 'list live buffers: who holds them, drivers, totals (all for admins, your own otherwise)',
    options: ['json', 'client', 'pool'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a) => {
      const opts: { client?: number; pool?: string } = {};
      const cl = intOption(a.values, 'client', 0, 'a client id');
      if (cl !== undefined) opts.client = cl;
      if (a.values['pool'] !== undefined) opts.pool = a.values['pool'] as string;
      return async (c) => {
        const r = await c.buffers(opts);
        return print(a.json, r.buffers, () => buffersView(r.buffers));
      };
    },
  },
  clients: {
    usage: 'clients [--json]',
    summary: 'list connected clients: principal, handles, bytes against quota, capabilities',
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a) => async (c) => {
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
    plan: (a) => async (c) => {
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
    plan: (a) => async (c) => {
      const r = await c.constraints(a.positionals[0]!);
      return print(a.json, r, () => constraintsView(r));
    },
  },
  merge: {
    usage: 'merge <driver>... [--json]',
    summary: "merge several drivers' constraints and show the pools that satisfy them",
    options: ['json'],
    minArgs: 1,
    maxArgs: 32,
    plan: (a) => async (c) => {
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
    plan: (a) => {
      const opts: Parameters<BufferClient['violations']>[0] = {};
      if (a.values['kind'] !== undefined) opts.kind = oneOf('--kind', 'violation kind', String(a.values['kind']), VIOLATION_KINDS);
      const limit = intOption(a.values, 'limit', 1, 'a positive count');
      if (limit !== undefined) opts.limit = limit;
      return async (c) => {
        const r = await c.violations(opts);
        return print(a.json, r, () => violationsView(r));
      };
    },
  },
  watch: {
    usage: 'watch [--interval MS] [--topics T,...] [--count N] [--json]',
    summary: 'live status and activity, pushed by the daemon, until Ctrl-C (--json: one event per line)',
    options: ['json', 'interval', 'topics', 'count'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a, io) => {
      const intervalMs = intOption(a.values, 'interval', 100, 'an interval of at least 100 ms') ?? 1000;
      if (intervalMs > 60_000) throw new UsageError('--interval is at most 60000 ms');
      const count = intOption(a.values, 'count', 1, 'a positive count');
      let topics: string[] | undefined;
      if (a.values['topics'] !== undefined) {
        topics = String(a.values['topics']).split(',').filter((t) => t !== '');
        const bad = topics.filter((t) => !(TOPIC_NAMES as readonly string[]).includes(t));
        if (bad.length > 0 || topics.length === 0) {
          throw new UsageError(`--topics: unknown topic '${bad[0] ?? ''}'${didYouMean(bad[0] ?? '', TOPIC_NAMES)} (topics: ${TOPIC_NAMES.join(', ')})`);
        }
      }
      const o: Parameters<typeof watch>[1] = { intervalMs, json: a.json, tty: io.tty === true && !a.json, out: io.out, err: io.err };
      if (o.tty && io.terminal !== undefined) o.terminal = io.terminal;
      if (count !== undefined) o.count = count;
      if (topics !== undefined) o.topics = topics;
      return async (c) => {
        // when the daemon restarts, a session like this one again
        o.reconnect = () => connect({ socket: c.socketPath, name: c.session.name ?? undefined, admin: 'if-readable' });
        await watch(c, o);
        return '';
      };
    },
  },
  reload: {
    usage: 'reload [--json]',
    summary: "reload the daemon's config file (as SIGHUP); an invalid file is rejected and nothing changes",
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a) => async (c) => {
      const r = await c.reload();
      return print(a.json, r, () => reloadView(r));
    },
  },
  inject: INJECT_COMMAND,
  record: { ...RECORD_HELP, plan: planRecord },
  dashboard: {
    usage: 'dashboard [--json]',
    summary: "print the web dashboard's address, with the admin cookie as its token when readable",
    options: ['json'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a) => async (c) => {
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
  ...DEBUG_COMMANDS,
};
