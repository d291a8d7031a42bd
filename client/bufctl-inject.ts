/**
 * `bufctl inject`: arm, list and clear fault points (admin; PROTOCOL.md,
 * "Fault injection"). Kept apart from bufctl-commands.ts, which lists it.
 */
import type { BufferClient } from './client.js';
import { FAULT_POINTS, type ArmedFault, type FaultPoint, type FaultSpec, type FaultStatus } from '../protocol/ops/inject.js';
import { UsageError, intOption, oneOf } from './bufctl-args.js';

interface Args {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  json: boolean;
}

const SPEC_OPTIONS = ['nth', 'probability', 'times', 'client', 'pool', 'seed'] as const;

function armedLine(a: ArmedFault): string {
  const filter = [a.client !== null ? `client ${a.client}` : null, a.pool !== null ? `pool ${a.pool}` : null].filter((x) => x !== null).join(', ');
  return (
    `  ${a.point.padEnd(10)} nth ${a.nth}, probability ${a.probability}%, ${a.times === null ? 'no limit' : `${a.times} left`}` +
    `${filter !== '' ? `, ${filter}` : ''}, seed ${a.seed} (${a.source}): ${a.calls} calls, ${a.fired} failed\n`
  );
}

/** inject.list as text: the armed points, then the failures injected per point since start. */
export function faultsView(f: FaultStatus): string {
  const armed = f.armed.length === 0 ? '  none\n' : f.armed.map(armedLine).join('');
  const injected = FAULT_POINTS.filter((p) => f.injected[p] > 0).map((p) => `${p} ${f.injected[p]}`);
  return `armed fault points:\n${armed}injected since start: ${f.total}${injected.length > 0 ? ` (${injected.join(', ')})` : ''}\n`;
}

/** The spec from --nth, --probability, --times, --client, --pool, --seed. */
function specOf(v: Args['values']): FaultSpec {
  const spec: FaultSpec = {};
  const nth = intOption(v, 'nth', 1, 'a call count (1 or more)');
  const times = intOption(v, 'times', 1, 'a number of failures (1 or more)');
  const seed = intOption(v, 'seed', 0, 'a seed (0 or more)');
  if (nth !== undefined) spec.nth = nth;
  if (times !== undefined) spec.times = times;
  if (seed !== undefined) spec.seed = seed;
  if (v['probability'] !== undefined) {
    const p = Number(v['probability']);
    if (typeof v['probability'] !== 'string' || v['probability'].trim() === '' || !Number.isFinite(p) || p < 0 || p > 100) {
      throw new UsageError(`--probability '${String(v['probability'])}' is not a percentage from 0 to 100`);
    }
    spec.probability = p;
  }
  if (typeof v['client'] === 'string') spec.client = v['client'];
  if (typeof v['pool'] === 'string') spec.pool = v['pool'];
  return spec;
}

export const INJECT_COMMAND = {
  usage: 'inject [list | set POINT [--nth N] [--probability P] [--times K] [--client NAME] [--pool NAME] [--seed S] | clear [POINT]] [--json]',
  summary: `arm, list or clear fault points (admin): ${FAULT_POINTS.join(', ')}`,
  options: ['json', ...SPEC_OPTIONS],
  minArgs: 0,
  maxArgs: 2,
  plan: (a: Args) => {
    const [verb = 'list', point] = a.positionals;
    const action = oneOf('inject', 'subcommand', verb, ['list', 'set', 'clear'] as const);
    const given = SPEC_OPTIONS.filter((o) => a.values[o] !== undefined);
    if (action !== 'set' && given.length > 0) throw new UsageError(`--${given[0]!} applies to inject set`);
    if (action === 'list') {
      if (point !== undefined) throw new UsageError('inject list takes no point');
      return async (c: BufferClient) => {
        const r = await c.faults.list();
        return a.json ? `${JSON.stringify(r, null, 2)}\n` : faultsView(r);
      };
    }
    if (action === 'set' && point === undefined) throw new UsageError('inject set needs a point (e.g. inject set alloc --nth 3 --times 1)');
    const p = point === undefined ? undefined : oneOf('point', 'fault point', point, FAULT_POINTS);
    if (action === 'set') {
      const spec = specOf(a.values);
      return async (c: BufferClient) => {
        const r = await c.faults.set(p as FaultPoint, spec);
        return a.json ? `${JSON.stringify(r, null, 2)}\n` : `armed:\n${armedLine(r)}`;
      };
    }
    return async (c: BufferClient) => {
      const r = await c.faults.clear(p);
      return a.json ? `${JSON.stringify(r, null, 2)}\n` : `cleared: ${r.cleared.length === 0 ? 'nothing was armed' : r.cleared.join(', ')}\n`;
    };
  },
};
