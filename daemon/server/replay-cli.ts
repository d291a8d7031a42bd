/**
 * `bufferd replay FILE [--config OTHER] [--speed N|max] [--json]`: the
 * command line of server/replay.ts, and its report.
 *
 * Exit status: 0 when the replay matched (same config) or ran to its end
 * (another config: the report says what changed); 1 when a replay with the
 * recorded config diverged, or the journal or config cannot be read; 2 for
 * a bad command line.
 */
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config/config.js';
import { replay, type ReplayResult } from './replay.js';
import type { ReplaySummary } from './replay-report.js';

export const REPLAY_USAGE = `Usage: bufferd replay FILE [--config OTHER] [--speed N|max] [--json]

Re-runs a journal written by 'bufferd --record FILE' (or 'bufctl record start')
against a fresh daemon in this process and compares every response and event.

Options:
  --config OTHER   replay with this config instead of the recorded one and
                   report what changes (requests now failing, peak hugepage
                   and pool use, fragmentation at the end)
  --speed N|max    N times the recorded pace (1: real time); max (default):
                   no waiting
  --json           the result as JSON
`;

const hexOrNum = (n: number) => (n >= 0x10000 ? `0x${n.toString(16)}` : String(n));
const show = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && Number.isInteger(x) && x >= 2 ** 32 ? hexOrNum(x) : x));
const mib = (n: number) => `${(n / 2 ** 20).toFixed(n % 2 ** 20 === 0 ? 0 : 1)} MiB`;

/** The part of a value at a path firstDifference gave (".a.b[2]"). */
export function at(v: unknown, path: string): unknown {
  let cur = v;
  for (const m of path.matchAll(/\.([^.[]+)|\[(\d+)\]/g)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = m[1] !== undefined ? (cur as Record<string, unknown>)[m[1]] : (cur as unknown[])[Number(m[2])];
  }
  return cur;
}

/** `baseline`: the same journal replayed with its recorded config, for the peaks side by side. */
export function formatReport(r: ReplayResult, other: boolean, baseline: ReplaySummary | null = null): string {
  const out: string[] = [];
  out.push(`journal ${r.file}: recorded ${r.recordedWith.wallTime} by bufferd ${r.recordedWith.version} with ${r.recordedWith.config}${r.recordedWith.recordData ? ' (with data)' : ''}`);
  out.push(`replayed with ${r.replayedWith}: ${r.requests} requests, ${r.compared} responses compared, ${r.skipped.length} skipped`);
  for (const w of r.warnings) out.push(`warning: ${w}`);
  for (const s of r.skipped) out.push(`skipped request ${s.request} (client ${s.client}, ${s.op}): ${s.reason}`);
  if (r.identical) out.push('IDENTICAL: every response and event is the same (fields not compared: see PROTOCOL.md "Replay")');
  else if (r.divergence !== null) {
    const d = r.divergence;
    out.push(`DIVERGED at ${d.kind === 'response' ? `request ${d.request}` : 'an event'} of client ${d.client} (${d.op}), first difference at ${d.path}`);
    if (d.sent !== null) out.push(`  request:  ${show(d.sent)}`);
    out.push(`  recorded ${d.path}: ${show(at(d.recorded, d.path))}`);
    out.push(`  replayed ${d.path}: ${show(at(d.replayed, d.path))}`);
    out.push('  (--json shows both whole responses)');
    if (!r.recordedWith.recordData) out.push('  (recorded without --record-data: the replay wrote a filler where clients wrote bytes, so what depends on those very bytes may differ)');
  }
  if (other) {
    const s = r.summary;
    out.push(`${s.divergences} responses or events differ`);
    if (s.nowFail.length === 0) out.push('no request that succeeded fails now');
    for (const f of s.nowFail) out.push(`now failing: ${f.count} × ${f.op} ${f.code} (first: request ${f.first.request}, client ${f.first.client}: ${f.first.message})`);
    for (const f of s.nowSucceed) out.push(`now succeeding: ${f.count} × ${f.op} (was ${f.code}; first: request ${f.first.request}, client ${f.first.client})`);
    const was = <T extends { name?: string; region?: string; size?: number }>(list: T[] | undefined, x: T): T | undefined =>
      list?.find((y) => y.name === x.name && y.region === x.region && (x.name !== undefined || y.size === x.size));
    const recorded = (v: number | undefined) => (baseline === null || v === undefined ? '' : ` (with the recorded config: ${v})`);
    for (const h of s.peaks.hugepages) out.push(`peak hugepages ${mib(h.size)} in ${h.region}: ${h.peakInUse} in use of ${h.total}${recorded(was(baseline?.peaks.hugepages, h)?.peakInUse)}`);
    for (const p of s.peaks.pools) {
      const b = was(baseline?.peaks.pools, p)?.peakAllocated;
      if (p.peakAllocated > 0 || (b ?? 0) > 0) out.push(`peak pool ${p.name}: ${p.peakAllocated} bytes allocated${p.maxBytes !== null ? ` (maxBytes ${p.maxBytes})` : ''}${recorded(b)}`);
    }
    for (const g of s.end.regions) out.push(`end region ${g.name}: ${g.free} bytes free, largest free block ${g.largestFree} (fragmentation ${g.fragmentation})${recorded(was(baseline?.end.regions, g)?.fragmentation)}`);
  }
  return out.join('\n') + '\n';
}

export async function replayMain(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, speed: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    process.stderr.write(`bufferd replay: ${(e as Error).message}\n\n${REPLAY_USAGE}`);
    return 2;
  }
  if (args.values.help === true) {
    process.stdout.write(REPLAY_USAGE);
    return 0;
  }
  if (args.positionals.length !== 1) {
    process.stderr.write(`bufferd replay: expected one journal FILE, got ${args.positionals.length} arguments\n\n${REPLAY_USAGE}`);
    return 2;
  }
  const sp = args.values.speed ?? 'max';
  const speed = sp === 'max' ? 'max' : Number(sp);
  if (speed !== 'max' && !(Number.isFinite(speed) && speed > 0 && speed <= 1000)) {
    process.stderr.write(`bufferd replay: --speed '${sp}' is not 'max' or a number above 0 and at most 1000\n`);
    return 2;
  }
  let config: Config | null = null;
  try {
    if (args.values.config !== undefined) config = loadConfig(args.values.config);
    const r = await replay({ file: args.positionals[0]!, config, speed });
    // with another config, the recorded one's peaks beside it (a second replay, at full speed)
    const baseline = config === null ? null : (await replay({ file: args.positionals[0]!, config: null, speed: 'max' })).summary;
    process.stdout.write(args.values.json === true ? `${JSON.stringify({ ...r, baseline }, null, 2)}\n` : formatReport(r, config !== null, baseline));
    return config === null && !r.identical ? 1 : 0;
  } catch (e) {
    process.stderr.write(`bufferd replay: ${(e as Error).message}\n`);
    return 1;
  }
}
