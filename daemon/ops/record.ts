/**
 * The record op (bufctl record start|stop|status) and the start of a
 * journal (also used by `bufferd --record`): session/journal.ts writes it,
 * server/connection.ts feeds it, server/replay.ts re-runs it.
 */
import { isAbsolute } from 'node:path';
import { BufferdError } from '../../protocol/errors.js';
import type { RequestOf } from '../../protocol/requests.js';
import type { RecordInfo } from '../../protocol/results.js';
import type { DaemonContext } from '../session/context.js';
import type { Session } from '../session/clients.js';
import { digest } from '../lib/digest.js';
import { ADMIN, requireCapability } from '../session/auth.js';
import type { CpuView } from '../session/journal-cpu.js';
import { Journal, JOURNAL_DEFAULTS, type JournalOptions, type JournalStats } from '../session/journal.js';

/** The config as the journal keeps it: token secrets replaced by their digests (a replay resolves hellos by digest). */
function redactedConfig(ctx: DaemonContext): unknown {
  const c = ctx.config;
  const hide = <T extends { secret: string }>(t: T): T => ({ ...t, secret: `sha256:${digest(t.secret)}` });
  return { ...c, auth: { ...c.auth, tokens: c.auth.tokens.map(hide) }, fileTokens: c.fileTokens.map(hide) };
}

/** The CPU views of mapped buffers (none: no scan at all). */
function cpuViews(ctx: DaemonContext): CpuView[] {
  if (ctx.shared.count === 0) return [];
  const out: CpuView[] = [];
  for (const b of ctx.buffers.values()) {
    const shm = ctx.shared.of(b);
    if (shm !== undefined) out.push({ buffer: b.id, cpu: shm.cpu, bytes: shm.bytes });
  }
  return out;
}

/** Start journaling to opts.file (created or truncated, mode 0600); throws the file system's error. */
export function startJournal(ctx: DaemonContext, opts: Partial<JournalOptions> & { file: string }): Journal {
  const j = new Journal({ ...JOURNAL_DEFAULTS, cpuViews: () => cpuViews(ctx), ...opts }, { version: ctx.version, config: redactedConfig(ctx), socket: ctx.socketPath, pid: process.pid }, ctx.now);
  ctx.journal = j;
  ctx.log.info({ file: opts.file, recordData: j.opts.recordData }, 'recording started');
  return j;
}

/** Stop journaling: what is queued is written, an end entry closes the file. */
export async function stopJournal(ctx: DaemonContext): Promise<JournalStats | null> {
  const j = ctx.journal;
  if (j === null) return null;
  ctx.journal = null;
  const st = await j.close();
  ctx.log.info({ ...st }, 'recording stopped');
  return st;
}

function info(st: JournalStats | null, recording: boolean, error: Error | null): RecordInfo {
  return {
    recording,
    file: st?.file ?? null,
    entries: st?.entries ?? 0,
    bytes: st?.bytes ?? 0,
    dropped: st?.dropped ?? 0,
    gaps: st?.gaps ?? 0,
    files: st?.files ?? 0,
    recordData: st?.recordData ?? false,
    error: error?.message ?? null,
  };
}

export function record(ctx: DaemonContext, s: Session, req: RequestOf<'record'>): RecordInfo | Promise<RecordInfo> {
  requireCapability(s.capabilities, ADMIN, 'record');
  const j = ctx.journal;
  if (req.action === 'status') return info(j?.stats ?? null, j !== null && j.failed === null, j?.failed ?? null);
  if (req.action === 'stop') {
    if (j === null) throw new BufferdError('EINVAL', "field 'action': 'stop' but the daemon is not recording");
    const failed = j.failed;
    return stopJournal(ctx).then((st) => info(st, false, failed));
  }
  if (req.file === undefined) throw new BufferdError('EINVAL', "field 'file': 'start' needs the journal file, an absolute path");
  if (!isAbsolute(req.file)) throw new BufferdError('EINVAL', `field 'file': '${req.file}' is not an absolute path (the daemon's working directory is not the client's)`);
  if (j !== null && j.failed === null) throw new BufferdError('EBUSY', `already recording to ${j.stats.file}: stop it first`, { file: j.stats.file });
  const opts: Partial<JournalOptions> & { file: string } = { file: req.file };
  if (req.recordData !== undefined) opts.recordData = req.recordData;
  if (req.maxFileBytes !== undefined) opts.maxFileBytes = req.maxFileBytes;
  if (req.maxFiles !== undefined) opts.maxFiles = req.maxFiles;
  const start = (): RecordInfo => {
    try {
      return info(startJournal(ctx, opts).stats, true, null);
    } catch (e) {
      throw new BufferdError('EIO', `field 'file': cannot write ${req.file}: ${(e as Error).message}`, { file: req.file });
    }
  };
  // a journal that failed on its own is replaced
  return j !== null ? stopJournal(ctx).then(start) : start();
}
