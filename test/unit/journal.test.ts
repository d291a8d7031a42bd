/**
 * The journal alone: its entries (digests in place of bytes, a hello's token
 * redacted, responses to requests made before the recording left out), the
 * bounded queue (a gap entry for what was dropped), rotation (FILE, FILE.1,
 * …, at most maxFiles), reading it back (torn tails, foreign files), CPU
 * writes through mappings, and the replay's comparison helpers.
 */
import t from 'tap';
import fc from 'fast-check';
import { existsSync, readFileSync, writeFileSync, appendFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Journal, JOURNAL_DEFAULTS, type JournalOptions } from '../../daemon/session/journal.js';
import { binDigest, digestBins, mayHoldBin } from '../../daemon/session/journal-entries.js';
import { readJournal, type Entry } from '../../daemon/session/journal-read.js';
import { CpuTracker, type CpuView } from '../../daemon/session/journal-cpu.js';
import { SlabBacking } from '../../daemon/memory/backing.js';
import { decodeValue, encodeValue } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame.js';
import type { Session } from '../../daemon/session/clients.js';
import { firstDifference, journalForm, normalise, TokenNames } from '../../daemon/server/replay-compare.js';
import { at } from '../../daemon/server/replay-cli.js';
import { tempDir } from '../helpers/daemon.js';

const META = { version: 'test', config: { source: 'x' }, socket: '/s', pid: 1 };

function session(id: number, open = true): Session {
  return { id, open, peer: { pid: 10 + id, uid: 1000, gid: 100 }, name: null, principal: null } as unknown as Session;
}

function journal(dir: string, opts: Partial<JournalOptions> = {}, clock = { t: 0 }): Journal {
  return new Journal({ ...JOURNAL_DEFAULTS, file: join(dir, 'j'), ...opts }, META, () => clock.t);
}

const body = (v: unknown) => encodeValue(v);
const frame = (v: unknown) => encodeFrame(v);
const decoded = (e: Entry) => decodeValue(e.b!) as Record<string, unknown>;

t.test('entries: identities, request and response bodies, events, close; the file is 0600', async (t) => {
  const dir = tempDir(t);
  const clock = { t: 5 };
  const j = journal(dir, {}, clock);
  const a = session(1, false);
  j.request(a, body({ id: 1, op: 'hello', version: 1, token: 'sekrit', name: 'a' }));
  a.open = true;
  clock.t = 7;
  j.response(a, frame({ id: 1, result: { clientId: 1 } }));
  j.request(a, body({ id: 2, op: 'write', handle: 0, offset: 0, data: new Uint8Array([1, 2, 3]) }));
  j.response(a, frame({ id: 2, result: { written: 3 } }));
  j.event(a, frame({ event: 'handle', handle: 4 }), false);
  j.event(a, frame({ event: 'activity' }), true);
  j.gone(a);
  const st = await j.close();
  t.equal(st.entries, 10, 'header, conn, 2 requests, 2 responses, 2 events, close, end');
  t.equal(statSync(join(dir, 'j')).mode & 0o777, 0o600);
  const r = readJournal(join(dir, 'j'));
  t.same(r.warnings, []);
  t.equal(r.header.part, 0);
  t.same(r.header.config, { source: 'x' });
  t.same(r.entries.map((e) => e.k), ['conn', 'req', 'res', 'req', 'res', 'ev', 'sub', 'close', 'end']);
  t.same(r.entries[0]!['peer'], { pid: 11, uid: 1000, gid: 100 }, 'the peer credentials');
  const hello = decoded(r.entries[1]!);
  t.equal(hello['name'], 'a');
  t.notMatch(readFileSync(join(dir, 'j')).toString('latin1'), /sekrit/, 'the token is not in the file');
  t.match(hello['token'], { $token: /^sha256:/ }, 'its digest stands in');
  t.same(decoded(r.entries[3]!)['data'], { $bin: binDigest(new Uint8Array([1, 2, 3])), len: 3 }, 'bytes written: a digest without recordData');
  t.equal(r.entries[2]!.t, 7, 'times are the daemon clock');
});

t.test('with recordData bytes are kept up to maxDataBytes; responses are always digested', async (t) => {
  const dir = tempDir(t);
  const j = journal(dir, { recordData: true, maxDataBytes: 4 });
  const a = session(1);
  j.request(a, body({ id: 1, op: 'write', handle: 0, offset: 0, data: new Uint8Array([1, 2, 3]) }));
  j.request(a, body({ id: 2, op: 'write', handle: 0, offset: 0, data: new Uint8Array(5) }));
  j.response(a, frame({ id: 1, result: { data: new Uint8Array([9]) } }));
  await j.close();
  const e = readJournal(join(dir, 'j')).entries;
  t.same(decoded(e[1]!)['data'], new Uint8Array([1, 2, 3]));
  t.match(decoded(e[2]!)['data'], { $bin: /^sha256:/, len: 5 });
  t.match((decoded(e[3]!)['result'] as Record<string, unknown>)['data'], { $bin: /^sha256:/, len: 1 });
  t.same(digestBins([new Uint8Array(2)], 2), [new Uint8Array(2)]);
});

t.test('a response to a request made before the recording began is left out', async (t) => {
  const dir = tempDir(t);
  const j = journal(dir);
  j.response(session(3), frame({ id: 9, result: {} }));
  await j.close();
  t.same(readJournal(join(dir, 'j')).entries.map((e) => e.k), ['end']);
});

t.test('a full queue drops entries and a gap entry says how many', async (t) => {
  const dir = tempDir(t);
  const j = journal(dir, { maxQueueBytes: 600 });
  const a = session(1);
  // all in one turn: nothing is written before the queue fills
  for (let i = 0; i < 40; i++) j.request(a, body({ id: i, op: 'ping' }));
  const before = j.stats;
  t.ok(before.dropped > 0, `dropped ${before.dropped}`);
  await j.drained();
  j.request(a, body({ id: 99, op: 'ping' }));
  const st = await j.close();
  t.equal(st.gaps, 1);
  const e = readJournal(join(dir, 'j')).entries;
  const gap = e.find((x) => x.k === 'gap')!;
  t.equal(gap['dropped'], before.dropped, 'the gap counts the dropped entries');
  t.ok((gap['bytes'] as number) > 0);
  t.equal(e.at(-1)!.k, 'end');
});

t.test('rotation keeps at most maxFiles files, each beginning with a header', async (t) => {
  const dir = tempDir(t);
  const j = journal(dir, { maxFileBytes: 2000, maxFiles: 3 });
  const a = session(1);
  for (let i = 0; i < 60; i++) {
    j.request(a, body({ id: i, op: 'info', handle: i, pad: 'x'.repeat(100) }));
    await new Promise((r) => setImmediate(r));
  }
  const st = await j.close();
  t.equal(st.files, 3);
  const f = join(dir, 'j');
  t.ok(existsSync(`${f}.1`) && existsSync(`${f}.2`) && !existsSync(`${f}.3`), 'FILE, FILE.1, FILE.2');
  for (const p of [f, `${f}.1`, `${f}.2`]) t.ok(statSync(p).size < 2000 + 3000, `${p} is bounded`);
  const r = readJournal(f);
  t.ok(r.header.part > 0, 'the oldest part kept is not the first');
  t.match(r.warnings.join('\n'), /rotated away/);
  const ids = r.entries.filter((e) => e.k === 'req').map((e) => decoded(e)['id'] as number);
  t.same(ids, ids.slice().sort((x, y) => x - y), 'entries in order across the parts');
  t.equal(ids.at(-1), 59);
});

t.test('reading: a torn last frame is a warning, a foreign file an error', async (t) => {
  const dir = tempDir(t);
  const j = journal(dir);
  j.request(session(1), body({ id: 1, op: 'ping' }));
  await j.close();
  const f = join(dir, 'j');
  appendFileSync(f, Buffer.from([0, 0, 0, 50, 1, 2]));
  const r = readJournal(f);
  t.match(r.warnings[0], /cut short/);
  t.same(r.entries.map((e) => e.k), ['conn', 'req', 'end']);
  writeFileSync(join(dir, 'short'), Buffer.concat([readFileSync(f).subarray(0, readFileSync(f).length - 7), Buffer.from([0, 0])]));
  t.ok(readJournal(join(dir, 'short')).warnings.length > 0, 'a tail shorter than a length prefix too');
  writeFileSync(join(dir, 'other'), encodeFrame({ hello: 1 }));
  t.throws(() => readJournal(join(dir, 'other')), /is not a bufferd journal/);
  t.throws(() => readJournal(join(dir, 'missing')), /no journal/);
  writeFileSync(join(dir, 'v9'), encodeFrame({ k: 'bufferd-journal', v: 9 }));
  t.throws(() => readJournal(join(dir, 'v9')), /version 9/);
  writeFileSync(join(dir, 'bad'), Buffer.concat([encodeFrame({ k: 'bufferd-journal', v: 1, part: 0 }), encodeFrame({ x: 1 })]));
  t.throws(() => readJournal(join(dir, 'bad')), /without a kind/);
});

t.test('a journal whose file cannot be created is refused at once', async (t) => {
  const dir = tempDir(t);
  t.throws(() => journal(join(dir, 'no', 'such')));
});

t.test('CPU writes through mappings: changed pages since the last scan, in runs', async (t) => {
  const cpu = new SlabBacking(4);
  const views: CpuView[] = [{ buffer: 7, cpu, bytes: 4 * 4096 }];
  const tr = new CpuTracker(() => views, 1 << 20);
  cpu.page(0)[0] = 1; // the daemon's content when the buffer is first seen: not a write
  t.same(tr.scan(true), []);
  cpu.page(1)[5] = 2;
  cpu.page(2)[9] = 3;
  const ch = tr.scan(true);
  t.not(ch, 'overflow');
  const list = ch as Exclude<typeof ch, 'overflow'>;
  t.equal(list.length, 1, 'pages 1 and 2 are one run');
  t.equal(list[0]!.off, 4096);
  t.equal(list[0]!.data.length, 8192);
  t.equal(list[0]!.data[5], 2);
  cpu.page(3)[0] = 4;
  t.same(tr.scan(false), [], 'a scan without collecting re-baselines');
  t.same(tr.scan(true), []);
  const big = new CpuTracker(() => views, 4096);
  t.equal(big.scan(true), 'overflow');
  t.same(big.scan(true), [], 'said once');
});

t.test('comparison: volatile fields, tokens by order of appearance, bytes by length without data', async (t) => {
  const o = () => ({ lengthsOnly: false, tokens: new TokenNames() });
  const a = normalise({ pid: 1, uptimeMs: 5, result: { token: 'AAA', again: [{ token: 'AAA' }], addr: 4096 } }, o());
  const b = normalise({ pid: 2, uptimeMs: 9, result: { token: 'BBB', again: [{ token: 'BBB' }], addr: 4096 } }, o());
  t.equal(firstDifference(a, b), null);
  const c = normalise({ result: { token: 'BBB', again: [{ token: 'CCC' }], addr: 8192 } }, o());
  t.equal(firstDifference(a, c), '.pid');
  t.equal(firstDifference({ x: [1, 2] }, { x: [1] }), '.x[1]');
  t.equal(firstDifference(1, 2), '(the whole value)');
  t.equal(firstDifference({ r: { addr: 1 } }, { r: { addr: 2 } }), '.r.addr');
  const bytes = journalForm({ data: new Uint8Array([1]) });
  const zeros = journalForm({ data: new Uint8Array([0]) });
  t.not(firstDifference(normalise(bytes, o()), normalise(zeros, o())), null, 'bytes compare with data');
  const lo = { lengthsOnly: true, tokens: new TokenNames() };
  t.equal(firstDifference(normalise(bytes, lo), normalise(zeros, lo)), null, 'and by length only without');
  t.same(at({ a: { b: [1, { c: 2 }] } }, '.a.b[1].c'), 2);
  t.equal(at({ a: 1 }, '.a.b'), undefined);
});

t.test('entries larger than a chunk are written whole, in order', async (t) => {
  const dir = tempDir(t);
  const j = journal(dir, { recordData: true, maxDataBytes: 4 << 20 });
  const a = session(1);
  const big = new Uint8Array(600 * 1024).fill(7);
  for (let i = 0; i < 3; i++) {
    j.request(a, body({ id: i, op: 'write', handle: 0, offset: 0, data: big }));
    j.request(a, body({ id: 100 + i, op: 'ping' }));
  }
  await j.close();
  const r = readJournal(join(dir, 'j'));
  t.same(r.warnings, []);
  const reqs = r.entries.filter((e) => e.k === 'req').map(decoded);
  t.same(reqs.map((x) => x['id']), [0, 100, 1, 101, 2, 102]);
  for (const x of reqs.filter((x) => x['op'] === 'write')) t.equal(Buffer.compare(x['data'] as Uint8Array, big), 0, 'the bytes, whole');
});

t.test('mayHoldBin walks the encoding: bytes that look like a bin marker inside numbers or strings are not one', async (t) => {
  const cases: [unknown, boolean][] = [
    [{ id: 0xc4c5, op: 'ping' }, false],
    [{ x: 1.0000000000000002, y: -0xc6, s: '\u00c4\u00c5', big: 2 ** 40 + 0xc4 }, false],
    [{ a: [1, 'two', null, true, false, { b: 3.5 }], long: 'x'.repeat(300), arr: new Array(20).fill(0xc4) }, false],
    [{ data: new Uint8Array(3) }, true],
    [[1, [2, [new Uint8Array(0)]]], true],
    [{ s: 'y'.repeat(70000), data: new Uint8Array(1) }, true],
  ];
  for (const [v, want] of cases) t.equal(mayHoldBin(encodeValue(v)), want, JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? `bin(${x.length})` : typeof x === 'string' && x.length > 20 ? `str(${x.length})` : x)));
  t.equal(mayHoldBin(Buffer.from([0xc1])), true, 'what it cannot walk: yes');
  t.equal(mayHoldBin(Buffer.from([0xd9])), true, 'a cut-short header: yes');
  t.equal(mayHoldBin(Buffer.from([0, 0, 0, 1, 0xc0]), 4), false, 'from an offset');
});

t.test('mayHoldBin agrees with the value for any encodable value (property)', async (t) => {
  const hasBytes = (v: unknown): boolean =>
    v instanceof Uint8Array || (Array.isArray(v) ? v.some(hasBytes) : v !== null && typeof v === 'object' && Object.values(v).some(hasBytes));
  const value = fc.letrec((tie) => ({
    leaf: fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.double({ noNaN: true }), fc.string({ maxLength: 300 }), fc.boolean(), fc.constant(null), fc.uint8Array({ maxLength: 40 })),
    node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 5 }), fc.dictionary(fc.string({ maxLength: 8 }), tie('node'), { maxKeys: 5 })),
  })).node;
  t.doesNotThrow(() => fc.assert(fc.property(value, (v) => mayHoldBin(encodeValue(v)) === hasBytes(v)), { numRuns: 500 }));
});
