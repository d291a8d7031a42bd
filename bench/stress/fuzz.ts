/**
 * fuzz: hostile frames against the real daemon, many connections at once.
 *
 * First the known killer on one connection (a map holding a 40-character
 * string, then the 12-byte frame `00000008 db ffffffff 616263`), and a
 * connection that sends a frame's 4-byte prefix and nothing more. Then
 * rounds: each round opens CONNS connections at once, about half of which
 * say hello first, and each sends a seeded stream of frames of one family
 * (fuzz-gen.ts; the last round family is 'mixed') — written at once, in a
 * few pieces, or trickled in small pieces — sometimes ending inside a frame.
 * What the daemon makes of each stream is mirrored on this side (its
 * framing: frames complete, a prefix over the limit, a stream ending inside
 * a frame), so each connection's due answers are known:
 *  - a clean stream: exactly one reply per complete frame, each a result or
 *    an error with a documented code, and the connection left open;
 *  - a prefix over the limit: an E2BIG error and a close;
 *  - a stream ending inside a frame: ETIMEDOUT within frameTimeoutMs, a close.
 * A bystander process pings all along. When the daemon dies (a crash), the
 * round's family and the signal are recorded, and a new daemon is started on
 * the same socket so the remaining families still run (MAX_CRASHES at most).
 *
 * Pass: no crash, the daemon alive at the end, every connection answered as
 * due, only documented error codes, no bystander ping failed.
 *
 * STRESS_DUMP=DIR writes the byte stream of each connection not answered as
 * due to DIR (to replay, e.g. `socat - UNIX-CONNECT:SOCK < FILE`).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { ERROR_CODES } from '../../protocol/errors.js';
import { OP_NAMES } from '../../protocol/requests.js';
import { Part, RawConn, Rand, MiB, sleep, startDaemon, startBystander, reportPings, type DaemonHandle, type Verdict, type PartOptions } from './common.js';
import { FAMILIES, MUTATED_OPS, genFrame, helloFrame, knownKiller, mirror, validReq, type Family } from './fuzz-gen.js';
import { pack, frame } from './rawpack.js';

const CONNS = { short: 16, full: 48 };
/** Rounds: one per family (short), or the families over and over (full). */
const ROUNDS = { short: FAMILIES.length, full: FAMILIES.length * 6 };
const FRAMES_PER_CONN = { short: [4, 16], full: [8, 48] } as const;
const MAX_CRASHES = { short: 6, full: 20 };
const MAX_FRAME_BYTES = 4 * MiB;
const FRAME_TIMEOUT_MS = 500;
/** Bytes one connection sends at most (the huge-values family reaches it). */
const STREAM_CAP = 8 * MiB;
const HELLO_FIRST_P = 0.5;
const END_INSIDE_FRAME_P = 0.15;
const TRICKLE_P = 0.15;
/** How long a connection may wait for the daemon's next answer (or its close) past the due time. */
const SLACK_MS = 2000;
/** The longest a connection's answers may take in all. */
const CAP_MS = 60_000;

const CONFIG = { ...DEFAULT_MACHINE, server: { ...DEFAULT_MACHINE.server, maxFrameBytes: MAX_FRAME_BYTES, frameTimeoutMs: FRAME_TIMEOUT_MS } };

interface ConnResult {
  frames: number;
  complete: number;
  replies: number;
  eio: number;
  untyped: number;
  /** Why the connection was not answered as due, or null. */
  bad: string | null;
  /** Closed for another documented reason (E2BIG, ETIMEDOUT) than the one due: accepted, counted. */
  otherReason: string | null;
}

function typedReplies(c: RawConn): { eio: number; untyped: number } {
  let eio = 0;
  let untyped = 0;
  for (const m of c.msgs) {
    if (!('id' in m)) continue;
    const err = m['error'] as { code?: unknown } | undefined;
    if (err === undefined) {
      if (!('result' in m)) untyped++;
    } else if (typeof err.code !== 'string' || !(err.code in ERROR_CODES)) untyped++;
    else if (err.code === 'EIO') eio++;
  }
  return { eio, untyped };
}

const ENDS = { 'in-prefix': "inside a frame's length prefix", 'after-prefix': "right after a frame's length prefix", 'in-body': "inside a frame's body" };

/** The connections of the running round. */
const ACTIVE = new Set<RawConn>();
const answersSoFar = () => [...ACTIVE].reduce((a, c) => a + c.msgs.length, 0);

/**
 * Wait until done(), as long as the daemon keeps answering: this connection
 * or any other of the round got something within the last idleMs (a daemon
 * busy with other connections' huge frames is slow, not wrong). CAP_MS in all.
 */
async function settle(c: RawConn, done: () => boolean, idleMs: number): Promise<boolean> {
  const end = Date.now() + CAP_MS;
  for (;;) {
    const seen = c.msgs.length;
    const seenAll = answersSoFar();
    await c.waitUntil(() => done() || c.msgs.length !== seen, idleMs);
    if (done()) return true;
    if (c.closed || Date.now() > end) return false;
    if (c.msgs.length === seen && answersSoFar() === seenAll) return false;
  }
}

async function runConn(d: DaemonHandle, r: Rand, fam: Family, span: readonly [number, number]): Promise<ConnResult> {
  const parts: Buffer[] = [];
  let total = 0;
  let frames = 0;
  if (r.chance(HELLO_FIRST_P)) {
    parts.push(helloFrame(r));
    frames++;
  }
  const n = r.range(span[0], span[1]);
  for (let i = 0; i < n && total < STREAM_CAP; i++) {
    const f = genFrame(r, fam, MAX_FRAME_BYTES);
    parts.push(f.bytes);
    total += f.bytes.length;
    frames++;
    if (f.tooBig) break;
  }
  if (r.chance(END_INSIDE_FRAME_P)) {
    const f = frame(pack(validReq(r)));
    parts.push(f.subarray(0, r.range(1, f.length - 1)));
    frames++;
  }
  const stream = Buffer.concat(parts);
  const ex = mirror(stream, MAX_FRAME_BYTES);
  const bytes = stream.subarray(0, ex.used);
  const res: ConnResult = { frames, complete: ex.frames, replies: 0, eio: 0, untyped: 0, bad: null, otherReason: null };
  let c: RawConn;
  try {
    c = await RawConn.open(d.socket);
  } catch (e) {
    res.bad = `connect failed: ${(e as Error).message}`;
    return res;
  }
  ACTIVE.add(c);
  try {
    if (r.chance(TRICKLE_P)) {
      let off = 0;
      while (off < bytes.length && off < 4096 && !c.closed) {
        const k = r.range(1, 64);
        c.write(bytes.subarray(off, off + k));
        off += k;
        await new Promise((x) => setImmediate(x));
      }
      if (off < bytes.length) c.write(bytes.subarray(off));
    } else {
      const cut = r.chance(0.5) ? r.int(bytes.length + 1) : bytes.length;
      c.write(bytes.subarray(0, cut));
      if (cut < bytes.length) {
        await sleep(r.int(20));
        c.write(bytes.subarray(cut));
      }
    }
    // deadlines run from the daemon's last sign of progress: a busy daemon is slow, not wrong
    // the connection-level error it was closed with, if any
    const closing = () => c.msgs.find((m) => m['id'] === null && ['E2BIG', 'ETIMEDOUT'].includes((m['error'] as { code?: string } | undefined)?.code ?? ''));
    const closingCode = () => (closing()?.['error'] as { code: string } | undefined)?.code;
    if (ex.e2big || ex.partial !== null) {
      const code = ex.e2big ? 'E2BIG' : 'ETIMEDOUT';
      const due = ex.e2big ? 'a prefix over the limit' : `the stream ends ${ENDS[ex.partial!]}`;
      await settle(c, () => c.replies >= ex.frames || c.closed, SLACK_MS);
      const waitMs = (ex.partial !== null ? FRAME_TIMEOUT_MS : 0) + SLACK_MS;
      const closed = await settle(c, () => c.closed, waitMs);
      if (!closed) res.bad = `${code} due (${due}): still open ${waitMs} ms after the last answer (${c.replies}/${ex.frames} replies)`;
      else if (closingCode() === undefined) res.bad = `${code} due (${due}): closed without it (${c.replies}/${ex.frames} replies, codes ${[...new Set(c.codes())].join(',')})`;
      else if (closingCode() !== code) res.otherReason = `${closingCode()} where ${code} was due`;
      else if (c.replies > ex.frames + 1) res.bad = `${c.replies} replies to ${ex.frames} frames`;
    } else {
      await settle(c, () => c.replies >= ex.frames || c.closed, SLACK_MS);
      await sleep(20); // nothing more may come
      if (c.closed && closingCode() !== undefined) res.otherReason = `${closingCode()} after a clean stream`;
      else if (c.replies !== ex.frames) res.bad = `${c.replies} replies to ${ex.frames} complete frames${c.closed ? ' (closed by the daemon)' : ` (no answer on any connection for ${SLACK_MS} ms)`}`;
      else if (c.closed) res.bad = 'closed by the daemon after a clean stream';
    }
    res.replies = c.replies;
    Object.assign(res, typedReplies(c));
    if (c.undecodable > 0) res.bad ??= `${c.undecodable} undecodable frames from the daemon`;
  } finally {
    ACTIVE.delete(c);
    c.destroy();
  }
  if (res.bad !== null && process.env['STRESS_DUMP'] !== undefined) {
    writeFileSync(join(process.env['STRESS_DUMP'], `fuzz-${Date.now()}-${r.int(1e6)}.bin`), bytes);
  }
  return res;
}

export async function run(opts: PartOptions): Promise<Verdict> {
  const part = new Part('fuzz', opts);
  const mode = opts.short ? 'short' : 'full';
  part.log(`seed ${opts.seed}, ${ROUNDS[mode]} rounds of ${CONNS[mode]} connections, frameTimeoutMs ${FRAME_TIMEOUT_MS}`);
  try {
    let d = await startDaemon(part, { config: CONFIG, logLevel: 'error' });
    const dir = d.dir;
    const crashes: string[] = [];
    const errorLogs: string[] = [];
    const restart = async (what: string) => {
      await sleep(100);
      crashes.push(`${what} (${d.exit?.signal ?? `exit ${d.exit?.code}`})`);
      part.log(`daemon died: ${what}, ${d.exit?.signal ?? d.exit?.code}; stderr: ${d.stderr().trim().split('\n').slice(0, 3).join(' ').slice(0, 300) || '(none)'}`);
      errorLogs.push(...d.errorLines);
      d = await startDaemon(part, { config: CONFIG, logLevel: 'error', dir });
    };

    // the known killer, as a client would send it: the first frame, its answer, then the 12 bytes
    // (before the bystander starts: nothing else is decoded in between)
    const k = await RawConn.open(d.socket);
    const [first, killer] = knownKiller();
    k.write(first!);
    await k.waitUntil(() => k.replies >= 1 || k.closed, 3000);
    k.write(killer!);
    await k.waitUntil(() => k.replies >= 2 || k.closed, 3000);
    await sleep(300);
    const killerCodes = k.codes();
    k.destroy();
    const killerCrashed = !d.alive();
    part.fig('known killer', 'crashed', killerCrashed ? 1 : 0, 'bool');
    part.check('known killer (40-char string, then 00000008 db ffffffff 616263)', !killerCrashed, killerCrashed ? `the daemon died (${d.exit?.signal ?? d.exit?.code})` : `answered ${killerCodes.join(',') || 'nothing'}; alive`);
    if (killerCrashed) await restart('known killer');

    // a frame whose 4-byte prefix arrives and whose body never does is a started frame too
    const p = await RawConn.open(d.socket);
    p.write(frame(pack({ id: 1, op: 'ping' })).subarray(0, 4));
    const t1 = Date.now();
    const closed = await p.waitUntil(() => p.closed, FRAME_TIMEOUT_MS + SLACK_MS);
    const ok = closed && p.codes().includes('ETIMEDOUT');
    p.destroy();
    part.fig('prefix only', 'closedAfter', closed ? p.closedAt! - t1 : -1, 'ms');
    part.check(
      'prefix without a body: ETIMEDOUT within frameTimeoutMs',
      ok,
      ok ? `closed after ${p.closedAt! - t1} ms` : closed ? `closed without ETIMEDOUT (${p.codes().join(',')})` : `still open after ${FRAME_TIMEOUT_MS + SLACK_MS} ms`,
    );

    const bystander = await startBystander(part, d.socket);
    let frames = 4;
    let complete = 2;
    let conns = 2;
    let replies = 0;
    let eio = 0;
    let untyped = 0;
    /** Why connections were not answered as due in rounds without a crash (a crash explains the rest), by kind. */
    const kinds = new Map<string, { n: number; example: string }>();
    const others = new Map<string, number>();
    let unanswered = 0;
    let unansweredInCrashRounds = 0;
    let otherReasons = 0;
    const t0 = Date.now();
    for (let round = 0; round < ROUNDS[mode] && crashes.length < MAX_CRASHES[mode]; round++) {
      const fam = FAMILIES[round % FAMILIES.length]!;
      const rr = new Rand(opts.seed * 1_000_003 + round);
      const tr = Date.now();
      const results = await Promise.all(Array.from({ length: CONNS[mode] }, () => runConn(d, new Rand(rr.int(2 ** 31)), fam, FRAMES_PER_CONN[mode])));
      await sleep(100);
      const dead = !d.alive();
      const roundBad = results.filter((x) => x.bad !== null);
      for (const x of results) {
        frames += x.frames;
        complete += x.complete;
        replies += x.replies;
        eio += x.eio;
        untyped += x.untyped;
        if (x.otherReason !== null) {
          otherReasons++;
          others.set(x.otherReason, (others.get(x.otherReason) ?? 0) + 1);
        }
        if (x.bad !== null && !dead) {
          const k = `${fam}: ${x.bad.replace(/\d+/g, 'N')}`;
          const e = kinds.get(k) ?? { n: 0, example: `${fam}: ${x.bad}` };
          e.n++;
          kinds.set(k, e);
        }
      }
      unanswered += roundBad.length;
      conns += results.length;
      part.log(`round ${round} ${fam}: ${results.reduce((a, x) => a + x.frames, 0)} frames, ${roundBad.length} connections not answered as due, ${Date.now() - tr} ms${dead ? ', DAEMON DIED' : ''}`);
      if (dead) {
        unansweredInCrashRounds += roundBad.length;
        await restart(`round ${round} (${fam})`);
      }
    }
    const bad = [...kinds.values()].sort((a, b) => b.n - a.n).map((e) => `${e.n}× ${e.example}`);
    for (const b of bad) part.log(`not answered as due: ${b}`);
    for (const [k, n] of others) part.log(`closed for another documented reason (accepted): ${n}× ${k}`);
    const secs = (Date.now() - t0) / 1000;
    const stats = await bystander.stop();
    const alive = d.alive();
    errorLogs.push(...d.errorLines);

    part.fig('all', 'framesSent', frames, 'count');
    part.fig('all', 'framesComplete', complete, 'count');
    part.fig('all', 'connections', conns, 'count');
    part.fig('all', 'replies', replies, 'count');
    part.fig('all', 'framesPerSec', frames / secs, 'frames/s');
    part.fig('all', 'opsMutated', MUTATED_OPS.size, 'count');
    part.fig('all', 'ops', OP_NAMES.length, 'count');
    part.fig('all', 'crashes', crashes.length, 'count');
    part.fig('all', 'connectionsNotAnsweredAsDue', unanswered, 'count');
    part.fig('all', 'notAnsweredInRoundsWithoutCrash', unanswered - unansweredInCrashRounds, 'count');
    part.fig('all', 'closedForAnotherDocumentedReason', otherReasons, 'count');
    part.fig('all', 'untypedReplies', untyped, 'count');
    part.fig('all', 'eioReplies', eio, 'count');
    part.fig('all', 'daemonErrorLogLines', errorLogs.length, 'count');
    part.fig('all', 'daemonAliveAtEnd', alive ? 1 : 0, 'bool');
    reportPings(part, 'bystander', stats);
    if (errorLogs.length > 0) part.log(`daemon error log, first: ${errorLogs[0]}`);

    part.check('crashes', crashes.length === 0, crashes.length === 0 ? 'none' : `${crashes.length}: ${crashes.join('; ')}`);
    part.check('daemon alive at the end', alive, alive ? 'yes' : `no (${d.exit?.signal ?? d.exit?.code})`);
    part.check('every connection answered as due', unanswered === 0, unanswered === 0 ? `${conns} connections, ${replies} replies` : `${unanswered} not, ${unanswered - unansweredInCrashRounds} of them in rounds without a crash${bad.length > 0 ? ` (${bad.slice(0, 3).join(' | ')})` : ''}`);
    part.check('only documented error codes', untyped === 0, `${untyped} replies without a result or a documented code; ${eio} EIO`);
    part.check('bystander pings', stats.failures === 0, `${stats.failures} failed of ${stats.pings + stats.failures}`);
  } finally {
    await part.close();
  }
  part.rep.table('fuzz');
  return part.verdict();
}
