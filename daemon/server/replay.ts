/**
 * `bufferd replay FILE`: re-run a journal (session/journal.ts) against a
 * fresh daemon in this process — the context server/context.ts builds, the
 * dispatcher server/dispatch.ts makes (same validation, same handlers), no
 * socket — and compare every response and event with the recorded one
 * (replay-compare.ts), or, with another config, summarise what changes
 * (replay-report.ts).
 *
 * Fidelity: each recorded client becomes a session with its recorded id
 * and peer credentials (pid/uid/gid); requests are issued in journal
 * order, and a recorded response waits for its replayed one, so what
 * happened before what on the daemon happens so again. The clock is the
 * recorded one (ctx.now() reads the time of the entry being replayed) and
 * the decay and token-expiry deadlines passed before each entry fire
 * before it. Bytes journaled as digests are replayed as a filler derived
 * from the digest (filler()). What cannot happen in one process is done as near as it can:
 * a map's descriptor goes nowhere (the fd socket is a stub), importFd is
 * skipped (the descriptor it names is gone) with its reason.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeValue, encodeValue, isPlainMap } from '../../protocol/codec.js';
import type { Config } from '../config/config.js';
import { createLogger } from '../lib/log.js';
import { digest } from '../lib/digest.js';
import { rng } from '../lib/rng.js';
import { newSession, type Session } from '../session/clients.js';
import type { FdBox } from '../session/fdbox.js';
import type { Cred } from '../lib/native.js';
import { readJournal, type Entry } from '../session/journal-read.js';
import { createContext, type DaemonContext } from './context.js';
import { createDispatcher, type Reply } from './dispatch.js';
import { firstDifference, journalForm, normalise, TokenNames, type NormalOptions } from './replay-compare.js';
import { Observer, type ReplaySummary } from './replay-report.js';

export interface ReplayOptions {
  file: string;
  /** Another configuration to replay with (null: the recorded one). */
  config: Config | null;
  /** Entries per recorded second: 1 is real time; 'max' does not wait. */
  speed: number | 'max';
}

export interface Divergence {
  kind: 'response' | 'event';
  /** The request's place among the journal's requests (1-based). */
  request: number;
  client: number;
  op: string;
  sent: unknown;
  path: string;
  recorded: unknown;
  replayed: unknown;
}

export interface ReplayResult {
  file: string;
  recordedWith: { version: string; config: string; wallTime: string; recordData: boolean };
  replayedWith: string;
  requests: number;
  compared: number;
  identical: boolean;
  divergence: Divergence | null;
  skipped: { request: number; client: number; op: string; reason: string }[];
  warnings: string[];
  summary: ReplaySummary;
}

/** Ops not replayed, and why (their recorded responses are not compared). */
const SKIPPED: Record<string, string> = {
  importFd: 'the descriptor it imports crossed an fd socket from another process: there is none in a replay',
  record: 'the replay does not record a journal',
};

interface Pending {
  index: number;
  op: string;
  sent: unknown;
  reply: Promise<Reply> | null;
}

/**
 * Bytes for a value journaled as a digest: a stream derived from the digest,
 * so the same bytes written twice are the same filler twice and different
 * bytes almost surely differ — what a coherency check compares (a stale
 * line, a lost write) keeps its outcome more often than with zeros.
 */
export function filler(digestText: string, len: number): Uint8Array {
  const h = createHash('sha256').update(digestText).digest();
  const next = rng(h.readUInt32LE(0));
  const out = new Uint8Array(len);
  const words = new Uint32Array(out.buffer, 0, len >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = next() * 2 ** 32;
  for (let i = words.length * 4; i < len; i++) out[i] = next() * 256;
  return out;
}

/** Recorded client secrets are digests; a replayed hello needs a secret the replay daemon resolves. */
function secrets(config: Config): Map<string, string> {
  const m = new Map<string, string>();
  const auth = config.auth as unknown as { tokens: { secret: string }[] };
  for (const t of [...auth.tokens, ...config.fileTokens]) {
    m.set(t.secret.startsWith('sha256:') ? t.secret : `sha256:${digest(t.secret)}`, t.secret);
  }
  return m;
}

/** A session as a connection makes one (server/connection.ts), its events kept. */
function syntheticSession(ctx: DaemonContext, id: number, peer: Cred | null, events: unknown[], streamed: { n: number }): Session {
  return newSession(id, ctx.now(), peer, ctx.log.child({ client: id }), {
    send: (ev) => events.push(ev),
    stream: () => void streamed.n++,
    dropStream: () => {},
    buffered: () => 0,
    eventsDropped: () => 0,
  });
}

export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const j = readJournal(opts.file);
  const recorded = j.header.config as unknown as Config;
  const config = opts.config ?? recorded;
  const same = opts.config === null;
  let vnow = j.entries[0]?.t ?? j.header.t;
  const log = createLogger('silent', 'json', process.stderr);
  const ctx = createContext(config, log, j.header.socket, () => vnow);
  // a descriptor sent on the fd socket goes nowhere: there is no process to take it
  ctx.fdbox = { path: '(replay)', send: () => {}, receive: () => 0, close: () => {} } as unknown as FdBox;
  const dispatch = createDispatcher(ctx);
  const tmp = mkdtempSync(join(tmpdir(), 'bufferd-replay-'));
  // the replay's own admin cookie stands in for the recorded daemon's
  const cookie = config.auth.cookie ? readFileSync(ctx.auth.writeCookie(join(tmp, 'cookie')), 'utf8').trim() : null;
  const secretOf = secrets(config);
  const norm: [NormalOptions, NormalOptions] = [
    { lengthsOnly: !j.header.recordData, tokens: new TokenNames() },
    { lengthsOnly: !j.header.recordData, tokens: new TokenNames() },
  ];
  /** Recorded export tokens → the replay's, for the imports that present them. */
  const tokenMap = new Map<string, string>();
  const sessions = new Map<number, Session>();
  const replayedEvents = new Map<number, unknown[]>();
  const recordedEvents = new Map<number, unknown[]>();
  const streamed = { n: 0 };
  const pending = new Map<number, Pending[]>();
  const observer = new Observer(ctx);
  const result: ReplayResult = {
    file: opts.file,
    recordedWith: { version: j.header.version, config: String((recorded as { source?: unknown }).source), wallTime: j.header.wallTime, recordData: j.header.recordData },
    replayedWith: config.source,
    requests: 0,
    compared: 0,
    identical: true,
    divergence: null,
    skipped: [],
    warnings: [...j.warnings],
    summary: observer.summary(),
  };
  const t0real = performance.now();
  const t0 = vnow;

  const sessionFor = (e: Entry): Session => {
    const c = e.c!;
    let s = sessions.get(c);
    if (s === undefined) {
      const evs: unknown[] = [];
      replayedEvents.set(c, evs);
      s = syntheticSession(ctx, c, (e['peer'] as Cred | null | undefined) ?? null, evs, streamed);
      sessions.set(c, s);
    }
    return s;
  };

  /** The request to send: digests of unjournaled bytes become a filler, tokens become the replay's. */
  const prepare = (body: Uint8Array, c: number): { body: Buffer; msg: unknown } => {
    let msg: unknown;
    try {
      msg = decodeValue(body);
    } catch {
      return { body: Buffer.from(body), msg: null };
    }
    const fix = (v: unknown, key: string): unknown => {
      if (Array.isArray(v)) return v.map((x) => fix(x, ''));
      if (isPlainMap(v)) {
        if (typeof v['$bin'] === 'string' && typeof v['len'] === 'number') return filler(v['$bin'], v['len']);
        if (typeof v['$token'] === 'string') {
          const d = v['$token'];
          const rec = pendingHelloPrincipal.get(c);
          return secretOf.get(d) ?? (rec === 'cookie' && cookie !== null ? cookie : d);
        }
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) out[k] = fix(x, k);
        return out;
      }
      if (key === 'token' && typeof v === 'string') return tokenMap.get(v) ?? v;
      return v;
    };
    const fixed = fix(msg, '');
    return { body: encodeValue(fixed), msg: fixed };
  };
  /** The principal each client's recorded hello got (a cookie's secret is the replay's own). */
  const pendingHelloPrincipal = new Map<number, string>();
  const answered = new Set<number>();
  for (const e of j.entries) {
    // the response to a client's first request is its hello's
    if (e.k !== 'res' || e.b === undefined || answered.has(e.c!)) continue;
    answered.add(e.c!);
    const r = decodeValue(e.b);
    if (isPlainMap(r) && isPlainMap(r['result']) && typeof r['result']['principal'] === 'string') pendingHelloPrincipal.set(e.c!, r['result']['principal']);
  }

  const diverged = (d: Divergence) => {
    result.identical = false;
    result.divergence ??= d;
    observer.diverged();
  };

  const settle = async (e: Entry): Promise<boolean> => {
    const q = pending.get(e.c!) ?? [];
    const p = q.shift();
    if (p === undefined) {
      result.warnings.push(`a response for client ${e.c} with no request before it: not compared`);
      return true;
    }
    if (p.reply === null) return true; // skipped: nothing to compare
    const reply = await p.reply;
    const rec = decodeValue(e.b!);
    const rep = journalForm(reply);
    observer.outcome(p.op, p.index, e.c!, rec, rep);
    // tokens handed out: the import that presents a recorded one gets the replay's
    const rt = isPlainMap(rec) && isPlainMap(rec['result']) ? rec['result']['token'] : undefined;
    const pt = isPlainMap(rep) && isPlainMap(rep['result']) ? rep['result']['token'] : undefined;
    if (typeof rt === 'string' && typeof pt === 'string') tokenMap.set(rt, pt);
    const a = normalise(rec, norm[0]);
    const b = normalise(rep, norm[1]);
    result.compared++;
    const path = firstDifference(a, b);
    if (path !== null) {
      diverged({ kind: 'response', request: p.index, client: e.c!, op: p.op, sent: p.sent, path, recorded: a, replayed: b });
      if (same) return false;
    }
    return true;
  };

  let ok = true;
  for (const e of j.entries) {
    if (!ok) break;
    if (opts.speed !== 'max') {
      const due = (e.t - t0) / opts.speed - (performance.now() - t0real);
      if (due > 1) await new Promise((r) => setTimeout(r, due));
    }
    vnow = e.t;
    // deadlines passed by now fire before the entry, as the daemon's timers did
    if ((ctx.machine.nextDecayDeadline() ?? Infinity) <= vnow) ctx.machine.purgeExpired();
    if ((ctx.tokens.nextExpiry() ?? Infinity) <= vnow) ctx.tokens.sweep();
    switch (e.k) {
      case 'conn': {
        const s = sessionFor(e);
        if (e['open'] === true) result.warnings.push(`client ${e.c} had said hello before the recording began: it is replayed without its earlier requests`);
        if (e['open'] === true) {
          const out = await dispatch(s, encodeValue({ id: 0, op: 'hello', version: 1, ...(typeof e['name'] === 'string' ? { name: e['name'] } : {}) }));
          if ('error' in out) result.warnings.push(`client ${e.c}: its synthetic hello failed: ${out.error.message}`);
        }
        break;
      }
      case 'req': {
        const s = sessionFor(e);
        const index = ++result.requests;
        const { body, msg } = prepare(e.b!, e.c!);
        const op = isPlainMap(msg) && typeof msg['op'] === 'string' ? msg['op'] : '(undecodable)';
        const q = pending.get(e.c!) ?? [];
        pending.set(e.c!, q);
        const skip = SKIPPED[op];
        if (skip !== undefined) {
          result.skipped.push({ request: index, client: e.c!, op, reason: skip });
          q.push({ index, op, sent: msg, reply: null });
          break;
        }
        const out = dispatch(s, body);
        q.push({ index, op, sent: msg, reply: Promise.resolve(out) });
        break;
      }
      case 'res':
        ok = await settle(e);
        break;
      case 'ev':
        (recordedEvents.get(e.c!) ?? recordedEvents.set(e.c!, []).get(e.c!)!).push(decodeValue(e.b!));
        break;
      case 'close': {
        const s = sessionFor(e);
        s.closed = true;
        ctx.clients.remove(s);
        ctx.sessionClosed(s);
        await ctx.background.idle();
        observer.sample();
        break;
      }
      case 'cpu':
        cpuWrite(ctx, e, result.warnings);
        break;
      case 'gap':
        result.warnings.push(`the journal lost ${String(e['dropped'])} entries here (the disk did not keep up): the replay stops at the gap`);
        ok = false;
        break;
      default:
        break;
    }
  }
  for (const q of pending.values()) for (const p of q) if (p.reply !== null) await p.reply;
  await ctx.background.idle();
  if (ok) compareEvents(recordedEvents, replayedEvents, norm, diverged);
  result.summary = observer.summary();
  for (const t of ctx.timers) t.stop();
  ctx.bus.close();
  ctx.auth.removeCookie();
  rmSync(tmp, { recursive: true, force: true });
  return result;
}

/** What a process wrote through its mapping, written into the same buffer's CPU view. */
function cpuWrite(ctx: DaemonContext, e: Entry, warnings: string[]): void {
  if (typeof e['untracked'] === 'string') {
    warnings.push(`from here on, CPU writes through mappings were not journaled: ${e['untracked']}`);
    return;
  }
  const id = Number(e['buffer']);
  const b = ctx.buffers.get(id);
  const shm = b === undefined ? undefined : ctx.shared.of(b);
  if (!(e.b instanceof Uint8Array)) {
    warnings.push(`a CPU write through a mapping of buffer ${id} was journaled as a digest only (larger than maxDataBytes): not replayed`);
    return;
  }
  if (shm === undefined) {
    warnings.push(`a CPU write through a mapping of buffer ${id}: the replayed buffer is not mapped (or not live): not replayed`);
    return;
  }
  const off = Number(e['off']);
  for (let at = 0; at < e.b.length; at += 4096) shm.cpu.page((off + at) / 4096).set(e.b.subarray(at, at + 4096));
}

/** Each client's events, in order: the first that differs is a divergence. */
function compareEvents(recorded: Map<number, unknown[]>, replayed: Map<number, unknown[]>, norm: [NormalOptions, NormalOptions], diverged: (d: Divergence) => void): void {
  for (const c of new Set([...recorded.keys(), ...replayed.keys()])) {
    const a = recorded.get(c) ?? [];
    const b = (replayed.get(c) ?? []).map(journalForm);
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const x = i < a.length ? normalise(a[i], norm[0]) : '(no event)';
      const y = i < b.length ? normalise(b[i], norm[1]) : '(no event)';
      const path = firstDifference(x, y);
      if (path === null) continue;
      const ev = (v: unknown) => (isPlainMap(v) && typeof v['event'] === 'string' ? v['event'] : '?');
      diverged({ kind: 'event', request: 0, client: c, op: `event #${i + 1} (${ev(x)})`, sent: null, path, recorded: x, replayed: y });
      return;
    }
  }
}
