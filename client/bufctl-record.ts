/**
 * `bufctl record start FILE [--record-data] | stop | status`: the daemon's
 * journal (bufferd replay FILE re-runs it).
 */
import { resolve } from 'node:path';
import type { RecordInfo } from '../protocol/results.js';
import type { BufferClient } from './client.js';
import { UsageError, oneOf } from './bufctl-args.js';

const ACTIONS = ['start', 'stop', 'status'] as const;

export function recordView(r: RecordInfo): string {
  const what = r.file === null ? 'not recording' : `${r.recording ? 'recording to' : 'recorded'} ${r.file}`;
  const lines = [`${what}${r.recordData ? ' (with data)' : ''}`];
  if (r.file !== null) lines.push(`  ${r.entries} entries, ${r.bytes} bytes in ${r.files} file(s); ${r.dropped} dropped in ${r.gaps} gap(s)`);
  if (r.error !== null) lines.push(`  stopped on its own: ${r.error}`);
  if (!r.recording && r.file !== null) lines.push(`  replay it: bufferd replay ${r.file}`);
  return `${lines.join('\n')}\n`;
}

export const RECORD_HELP = {
  usage: 'record start FILE [--record-data] | record stop | record status [--json]',
  summary: 'journal every request, response and event to FILE (admin); bufferd replay FILE re-runs it',
  options: ['json', 'record-data'],
  minArgs: 1,
  maxArgs: 2,
};

/** Check the arguments (UsageError before the daemon is asked) and say what to do. */
export function planRecord(a: { positionals: string[]; values: Record<string, string | boolean | undefined>; json: boolean }): (c: BufferClient) => Promise<string> {
  const action = oneOf('action', 'record action', a.positionals[0]!, ACTIONS);
  const file = a.positionals[1];
  if (action === 'start' && file === undefined) throw new UsageError("'record start' needs the journal FILE");
  if (action !== 'start' && file !== undefined) throw new UsageError(`'record ${action}' takes no FILE`);
  if (action !== 'start' && a.values['record-data'] === true) throw new UsageError("--record-data goes with 'record start'");
  return async (c) => {
    const r = await c.record(action, action === 'start' ? { file: resolve(file!), recordData: a.values['record-data'] === true } : {});
    return a.json ? `${JSON.stringify(r, null, 2)}\n` : recordView(r);
  };
}
