/**
 * bufctl's debugging commands: `history <buffer>` (one buffer's life) and
 * `graph` (who holds, passed, registered, maps and exported what). Merged
 * into bufctl-commands.ts's table.
 */
import type { BufferClient } from './client.js';
import type { ParamsOf } from '../protocol/requests.js';
import { UsageError, intOption, oneOf, type CommandHelp } from './bufctl-args.js';
import { historyView } from './views-history.js';
import { GRAPH_FORMATS, renderGraph } from './views-graph.js';

interface Args {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  json: boolean;
}

interface DebugCommand extends CommandHelp {
  minArgs: number;
  maxArgs: number;
  plan(a: Args): (c: BufferClient) => Promise<string>;
}

/** A buffer id as `bufctl buffers` shows it. */
function bufferId(s: string, what: string): number {
  const n = Number(s);
  if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(n)) throw new UsageError(`'${s}' is not a buffer id: ${what} is a whole number, as 'bufctl buffers' lists it`);
  return n;
}

export const DEBUG_COMMANDS: Record<string, DebugCommand> = {
  history: {
    usage: 'history <buffer> [--limit N] [--json]',
    summary: "one buffer's life: allocation, passes, maps, registrations, syncs, device accesses, violations, refusals, free (--json: one object per event)",
    options: ['json', 'limit'],
    minArgs: 1,
    maxArgs: 1,
    plan: (a) => {
      const buffer = bufferId(a.positionals[0]!, 'the buffer');
      const limit = intOption(a.values, 'limit', 1, 'a positive count');
      if (limit !== undefined && limit > 4096) throw new UsageError('--limit is at most 4096 events');
      return async (c) => {
        const r = await c.history(buffer, limit === undefined ? {} : { limit });
        return a.json ? r.events.map((e) => `${JSON.stringify({ buffer: r.buffer, ...e })}\n`).join('') : historyView(r);
      };
    },
  },
  graph: {
    usage: 'graph [--format text|dot|mermaid|json] [--client NAME] [--buffer ID] [--limit N] [--json]',
    summary: 'the ownership graph: clients, buffers, drivers; holds, passed-to, registered-with, mapped-by, token-in-flight edges',
    options: ['json', 'format', 'client', 'buffer', 'limit'],
    minArgs: 0,
    maxArgs: 0,
    plan: (a) => {
      const format = a.json ? 'json' : oneOf('--format', 'graph format', String(a.values['format'] ?? 'text'), GRAPH_FORMATS);
      const opts: ParamsOf<'graph'> = {};
      const cl = a.values['client'];
      if (typeof cl === 'string') opts.client = /^[0-9]+$/.test(cl) ? Number(cl) : cl;
      if (typeof a.values['buffer'] === 'string') opts.buffer = bufferId(a.values['buffer'], '--buffer');
      const limit = intOption(a.values, 'limit', 1, 'a positive count');
      if (limit !== undefined) {
        if (limit > 5000) throw new UsageError('--limit is at most 5000 buffers');
        opts.limit = limit;
      }
      return async (c) => renderGraph(await c.graph(opts), format);
    },
  },
};
