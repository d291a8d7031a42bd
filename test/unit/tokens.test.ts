import t from 'tap';
import { createHash } from 'node:crypto';
import { TokenTable, TOKEN_BYTES, DEFAULT_TOKEN_TTL_MS, MAX_TOKEN_TTL_MS } from '../../daemon/buffers/tokens.js';
import { SharedBuffer, R_READ, R_ALL } from '../../daemon/buffers/handles.js';
import { errorOf } from '../helpers/machine.js';

function buf(id: number, released: number[]): SharedBuffer {
  return new SharedBuffer({ id } as never, 1, (b) => released.push(b.id));
}

/** A principal with room for every token these tests make. */
const OWNER = { name: 'test', usage: { bytes: 0, tokens: 0 }, maxTokens: 1 << 20 };

/** A table with a clock the test moves by hand. */
function table(start = 1_000_000) {
  const clock = { now: start };
  return { clock, tokens: new TokenTable(() => clock.now) };
}

t.test('tokens carry at least 128 bits of randomness and are all distinct', async (t) => {
  t.equal(TOKEN_BYTES, 24);
  t.ok(TOKEN_BYTES * 8 >= 128);
  const { tokens } = table();
  const b = buf(1, []);
  const seen = new Set<string>();
  let shapeOk = true;
  for (let i = 0; i < 10_000; i++) {
    const { token } = tokens.export(b, R_ALL, 1000, 1, null, OWNER);
    if (!/^[A-Za-z0-9_-]{32}$/.test(token) || Buffer.from(token, 'base64url').length !== 24) shapeOk = false;
    seen.add(token);
  }
  t.ok(shapeOk, 'every token is base64url of 24 bytes (32 characters)');
  t.equal(seen.size, 10_000, 'no two tokens alike');
  t.equal(tokens.size, 10_000);
  t.equal(tokens.issued, 10_000);
  t.equal(b.refs.inflight, 10_000, 'each token holds an inflight reference');
  // every character position varies (crude check that the bytes are random, not a counter)
  for (const pos of [0, 15, 31]) {
    const chars = new Set([...seen].map((s) => s[pos]));
    t.ok(chars.size > 32, `position ${pos}: ${chars.size} distinct characters`);
  }
});

t.test('a token is redeemed once, with what was exported', async (t) => {
  const { tokens } = table();
  const released: number[] = [];
  const b = buf(7, released);
  const r = tokens.export(b, R_READ, 5000, 42, 'alice', OWNER);
  t.equal(r.expiresInMs, 5000);
  t.equal(b.refs.inflight, 1, 'one token in flight for b');
  t.equal(tokens.size - b.refs.inflight, 0, 'none for any other buffer');
  const got = tokens.take(r.token);
  t.equal(got.buffer, b);
  t.equal(got.rights, R_READ);
  t.equal(got.from, 42);
  t.equal(got.fromName, 'alice');
  t.equal(tokens.size, 0);
  t.equal(tokens.imported, 1);
  t.equal(tokens.size, 0, 'no token left in flight for b');
  t.equal(b.refs.inflight, 1, 'the inflight reference passes to the taker');
  t.same(released, []);
  t.equal(errorOf(() => tokens.take(r.token)).code, 'ENOENT', 'second use');
  t.equal(tokens.imported, 1);
  t.equal(tokens.expired, 0, 'a used token is not counted as expired');
  t.equal(b.refs.inflight, 1, 'a refused take drops no reference');
  b.unref('inflight');
  t.same(released, [7]);
});

t.test('expiry follows the injected clock', async (t) => {
  const { clock, tokens } = table(500);
  const released: number[] = [];
  const b = buf(1, released);
  const a = tokens.export(b, R_ALL, 1000, 1, null, OWNER); // expires at 1500
  const c = tokens.export(b, R_ALL, 1000, 1, null, OWNER);
  clock.now = 1499;
  t.equal(tokens.take(a.token).buffer, b, 'taken at expires - 1');
  clock.now = 1500;
  const e = errorOf(() => tokens.take(c.token));
  t.equal(e.code, 'ENOENT', 'refused at expires');
  t.equal(tokens.expired, 1);
  t.equal(tokens.size, 0, 'an expired token found by take is dropped');
  t.equal(b.refs.inflight, 1, "the expired token's reference is released; the taken one stays");
  clock.now = 0;
  t.equal(errorOf(() => tokens.take(c.token)).code, 'ENOENT', 'turning the clock back does not revive it');
  b.unref('inflight');
  t.same(released, [1]);
  // ttl 0 is expired at once
  const z = tokens.export(buf(2, released), R_ALL, 0, 1, null, OWNER);
  t.equal(errorOf(() => tokens.take(z.token)).code, 'ENOENT');
  t.same(released, [1, 2]);
  t.equal(DEFAULT_TOKEN_TTL_MS, 30_000);
  t.equal(MAX_TOKEN_TTL_MS, 86_400_000);
});

t.test('sweep() releases expired tokens and their references; nextExpiry()', async (t) => {
  const { clock, tokens } = table(0);
  const released: number[] = [];
  const only = buf(1, released); // referenced only by its token
  const held = buf(2, released); // also mapped
  held.ref('mappings');
  const late = buf(3, released);
  t.equal(tokens.nextExpiry(), null);
  t.equal(tokens.sweep(), 0);
  tokens.export(late, R_ALL, 300, 1, null, OWNER);
  tokens.export(only, R_ALL, 100, 1, null, OWNER);
  tokens.export(held, R_ALL, 200, 1, null, OWNER);
  t.equal(tokens.nextExpiry(), 100);
  clock.now = 99;
  t.equal(tokens.sweep(), 0, 'nothing due yet');
  t.same(released, []);
  clock.now = 100;
  t.equal(tokens.sweep(), 1);
  t.same(released, [1], 'the last reference went: release fired');
  t.ok(only.freed);
  t.equal(tokens.nextExpiry(), 200);
  clock.now = 250;
  t.equal(tokens.sweep(), 1);
  t.same(released, [1], 'a buffer still mapped lives on');
  t.equal(held.refs.inflight, 0);
  t.equal(held.refs.mappings, 1);
  t.equal(tokens.nextExpiry(), 300);
  t.equal(tokens.sweep(), 0, 'sweeping again is a no-op');
  clock.now = 10_000;
  t.equal(tokens.sweep(), 1);
  t.same(released, [1, 3]);
  t.equal(tokens.nextExpiry(), null);
  t.equal(tokens.size, 0);
  t.equal(tokens.expired, 3);
  t.equal(tokens.issued, 3);
  // several tokens on one buffer: released when the last one goes
  const multi = buf(4, released);
  tokens.export(multi, R_ALL, 10, 1, null, OWNER);
  tokens.export(multi, R_ALL, 20, 1, null, OWNER);
  t.equal(multi.refs.inflight, 2, 'two tokens in flight for multi');
  t.equal(tokens.size, 2);
  clock.now += 10;
  t.equal(tokens.sweep(), 1);
  t.same(released, [1, 3]);
  clock.now += 10;
  t.equal(tokens.sweep(), 1);
  t.same(released, [1, 3, 4]);
});

t.test('unknown, used and expired tokens give the same error', async (t) => {
  const { clock, tokens } = table(0);
  const b = buf(1, []);
  const used = tokens.export(b, R_ALL, 100, 1, 'x', OWNER).token;
  tokens.take(used);
  const old = tokens.export(b, R_ALL, 100, 1, 'x', OWNER).token;
  const forged = tokens.export(b, R_ALL, 100, 1, 'x', OWNER).token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
  clock.now = 100;
  const errors = {
    unknown: errorOf(() => tokens.take('A'.repeat(32))),
    empty: errorOf(() => tokens.take('')),
    forged: errorOf(() => tokens.take(forged)),
    used: errorOf(() => tokens.take(used)),
    expired: errorOf(() => tokens.take(old)),
  };
  const wire = Object.values(errors).map((e) => JSON.stringify([e.code, e.message, e.details, e.toWire()]));
  t.equal(new Set(wire).size, 1, 'indistinguishable');
  t.equal(errors.expired.code, 'ENOENT');
  t.equal(errors.expired.message, 'no such token (tokens are single use and expire)');
  t.equal(errors.expired.details, undefined);
  for (const [k, e] of Object.entries(errors)) t.notMatch(e.message, /expired|used|unknown/i, `${k}: the message does not say which`);
});

t.test('the table keeps only digests, never the token', async (t) => {
  const { tokens } = table();
  const b = buf(1, []);
  const issued = Array.from({ length: 20 }, () => tokens.export(b, R_ALL, 1000, 1, 'bob', OWNER).token);
  const live = (tokens as any).live as Map<string, unknown>;
  t.equal(live.size, 20);
  const keys = [...live.keys()];
  const dump = JSON.stringify([...live.entries()].map(([k, v]) => [k, { ...(v as object), buffer: undefined }]));
  for (const tok of issued) {
    t.notOk(keys.includes(tok), 'the token is not a key');
    t.notOk(dump.includes(tok), 'the token appears nowhere in the table');
    t.ok(keys.includes(createHash('sha256').update(tok).digest('base64')), 'its SHA-256 digest is');
  }
  t.notOk(JSON.stringify(tokens).includes(issued[0]!));
});

t.test('tokens in flight count against their principal, across connections, until imported or expired', async (t) => {
  const { clock, tokens } = table();
  const owner = { name: 'alpha', usage: { bytes: 0, tokens: 0 }, maxTokens: 3 };
  const b = buf(1, []);
  const a1 = tokens.export(b, R_ALL, 100, 1, null, owner);
  tokens.export(b, R_ALL, 100, 2, null, owner); // another connection, same principal
  tokens.export(b, R_ALL, 500, 1, null, owner);
  t.equal(owner.usage.tokens, 3);
  const e = errorOf(() => tokens.export(b, R_ALL, 100, 3, null, owner));
  t.equal(e.code, 'EMFILE');
  t.equal(e.message, "'alpha' already has 3 tokens in flight (maxTokens 3, counted across all its connections until each is imported or expires)");
  t.equal(tokens.size, 3, 'nothing issued');
  tokens.take(a1.token);
  t.equal(owner.usage.tokens, 2, 'an import gives the slot back');
  clock.now += 100;
  t.equal(tokens.sweep(), 1);
  t.equal(owner.usage.tokens, 1, 'so does an expiry');
  t.doesNotThrow(() => tokens.export(b, R_ALL, 100, 3, null, owner));
});

t.test('the next deadline is the earliest live token, and expiry takes exactly what is due (a heap with removal)', async (t) => {
  const { clock, tokens } = table(0);
  const b = buf(1, []);
  const ttl = (i: number) => 1 + ((i * 7919) % 100_000);
  const issued: string[] = [];
  for (let i = 0; i < 100_000; i++) issued.push(tokens.export(b, R_ALL, ttl(i), 1, null, OWNER).token);
  t.equal(tokens.nextExpiry(), 1);
  // take every other token: the heap drops them at once
  for (let i = 0; i < issued.length; i += 2) tokens.take(issued[i]!);
  t.equal(tokens.size, 50_000);
  let expected = Infinity;
  for (let i = 1; i < 100_000; i += 2) expected = Math.min(expected, ttl(i));
  t.equal(tokens.nextExpiry(), expected, 'the earliest of those left');
  // sweeping in steps expires exactly the tokens due, in order
  let expired = 0;
  for (const at of [10, 1000, 50_000, 100_001]) {
    clock.now = at;
    expired += tokens.sweep();
    let due = 0;
    for (let i = 1; i < 100_000; i += 2) if (ttl(i) <= at) due++;
    t.equal(expired, due, `by ${at} ms: ${due} expired`);
  }
  t.equal(tokens.size, 0);
  t.equal(tokens.nextExpiry(), null);
});
