import t, { type Test } from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Authenticator, hasCapability, requireCapability, ADMIN } from '../../daemon/session/auth.js';
import { AuthError, readTokenFile, type AuthConfig, type TokenSpec } from '../../daemon/config/auth.js';
import { buildConfig, loadConfig, ConfigError } from '../../daemon/config/config.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import { BufferdError } from '../../protocol/errors.js';

const base = () => JSON.parse(JSON.stringify(DEFAULT_MACHINE)) as Record<string, any>;
const SECRET_A = 'alpha-secret-0123456789';
const SECRET_B = 'bravo-secret-0123456789';

function authCfg(over: Partial<AuthConfig> = {}): AuthConfig {
  return {
    anonymous: { capabilities: ['alloc:uncached'], maxBytes: 1 << 20, maxHandles: null, maxTokens: null },
    tokens: [
      { name: 'alpha', secret: SECRET_A, capabilities: ['driver'], maxBytes: null, maxHandles: 7, maxTokens: 3 },
      { name: 'bravo', secret: SECRET_B, capabilities: [ADMIN], maxBytes: 4096, maxHandles: null, maxTokens: null },
    ],
    tokenFile: null,
    cookie: true,
    names: {},
    users: {},
    groups: {},
    ...over,
  };
}

const lim = (maxHandles: number, maxTokens = 4096) => ({ maxHandles, maxTokens });

function fail(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}

/** A config file beside a token file; returns the config's path. */
function withTokenFile(t: Test, tokenFile: string, mode: number, rel = 'tokens.json'): string {
  const dir = t.testdir({ 'sub': {} });
  const c = base();
  c.auth.tokenFile = rel;
  writeFileSync(join(dir, 'bufferd.json'), JSON.stringify(c));
  writeFileSync(join(dir, 'tokens.json'), tokenFile);
  chmodSync(join(dir, 'tokens.json'), mode);
  return join(dir, 'bufferd.json');
}

t.test('anonymous and config tokens resolve to their principals', async (t) => {
  const a = new Authenticator(authCfg(), lim(1024));
  const anon = a.resolve(undefined);
  t.equal(anon.name, 'anonymous');
  t.same([...anon.capabilities], ['alloc:uncached']);
  t.equal(anon.maxBytes, 1 << 20);
  t.equal(anon.maxHandles, 1024, 'maxHandles defaults to the limits figure');
  t.equal(new Authenticator(authCfg({ anonymous: { capabilities: [], maxBytes: null, maxHandles: 3, maxTokens: null } }), lim(1024)).resolve(undefined).maxHandles, 3);
  const alpha = a.resolve(SECRET_A);
  t.equal(alpha.name, 'alpha');
  t.same([...alpha.capabilities], ['driver']);
  t.equal(alpha.maxBytes, null);
  t.equal(alpha.maxHandles, 7);
  const bravo = a.resolve(SECRET_B);
  t.equal(bravo.name, 'bravo');
  t.equal(bravo.maxBytes, 4096);
  t.equal(bravo.maxHandles, 1024);
  for (const bad of ['nope', '', 'alpha', SECRET_A + ' ', SECRET_A.toUpperCase()]) {
    const e = fail(() => a.resolve(bad)) as BufferdError;
    t.equal(e.code, 'EPERM', JSON.stringify(bad));
    t.match(e.message, 'unknown token');
    t.notMatch(e.message, bad || 'x-never', 'the message does not echo the token');
  }
  const f = new Authenticator(authCfg({ tokens: [] }), lim(64), [{ name: 'file', secret: 'file-secret-0123456789', capabilities: ['x'], maxBytes: null, maxHandles: null, maxTokens: null }]);
  t.equal(f.resolve('file-secret-0123456789').name, 'file', 'token-file tokens resolve too');
  t.equal(f.resolve('file-secret-0123456789').maxHandles, 64);
  t.notOk(JSON.stringify([...(f as any).bySecret.keys()]).includes('file-secret'), 'only digests are kept');
});

t.test('readTokenFile: only files its owner alone can read', async (t) => {
  const dir = t.testdir({ 'tokens.json': JSON.stringify({ tokens: [] }) });
  const p = join(dir, 'tokens.json');
  const parse = (raw: unknown, where: string): TokenSpec[] => {
    t.equal(where, p);
    return (raw as { tokens: TokenSpec[] }).tokens;
  };
  chmodSync(p, 0o600);
  t.same(readTokenFile(p, parse), []);
  chmodSync(p, 0o400);
  t.same(readTokenFile(p, parse), []);
  for (const mode of [0o640, 0o644, 0o604, 0o660]) {
    chmodSync(p, mode);
    const e = fail(() => readTokenFile(p, parse));
    t.type(e, AuthError);
    t.match(e.message, `token file ${p} has mode 0${mode.toString(8)}`);
    t.match(e.message, 'chmod 600');
  }
  const missing = fail(() => readTokenFile(join(dir, 'none.json'), parse));
  t.type(missing, AuthError);
  t.match(missing.message, `cannot read token file ${join(dir, 'none.json')}`);
});

t.test('a token file named in the config, relative to the config file', async (t) => {
  const good = JSON.stringify({ tokens: [{ name: 'ci', secret: 'ci-secret-0123456789', capabilities: ['driver'], maxBytes: '1M', maxHandles: 5 }] });
  const cfg = withTokenFile(t, good, 0o600);
  const c = loadConfig(cfg);
  t.equal(c.auth.tokenFile, join(cfg, '..', 'tokens.json'), 'resolved against the config file directory');
  t.same(c.fileTokens, [{ name: 'ci', secret: 'ci-secret-0123456789', capabilities: ['driver'], maxBytes: 1 << 20, maxHandles: 5, maxTokens: null }]);
  const a = new Authenticator(c.auth, c.limits, c.fileTokens);
  t.equal(a.resolve('ci-secret-0123456789').maxBytes, 1 << 20);

  for (const mode of [0o640, 0o644]) {
    const p = withTokenFile(t, good, mode);
    const e = fail(() => loadConfig(p));
    t.type(e, ConfigError);
    t.match(e.message, `config /auth/tokenFile: token file ${join(p, '..', 'tokens.json')} has mode 0${mode.toString(8)}`);
  }
  const bad = withTokenFile(t, '{ "tokens": [', 0o600);
  const e = fail(() => loadConfig(bad));
  t.type(e, ConfigError);
  t.match(e.message, `config /auth/tokenFile: token file ${join(bad, '..', 'tokens.json')} is not valid JSON`);

  const missing = withTokenFile(t, good, 0o600, 'sub/absent.json');
  t.match(fail(() => loadConfig(missing)).message, `cannot read token file ${join(missing, '..', 'sub', 'absent.json')}`);
});

t.test('token file schema errors name the file and the JSON path', async (t) => {
  const cases: [unknown, string][] = [
    [{ tokens: [{ name: 'a', secret: 'short', capabilities: [] }] }, '/tokens/0/secret'],
    [{ tokens: [{ name: 'a', secret: SECRET_A, capabilities: [] }, { name: 'b', capabilities: [] }] }, '/tokens/1/secret: required field missing'],
    [{ tokens: [{ name: 'a', secret: SECRET_A, capabilities: ['Not A Cap'] }] }, '/tokens/0/capabilities/0'],
    [{ tokens: [{ name: 'a', secret: SECRET_A, capabilities: [], colour: 'red' }] }, '/tokens/0/colour: unknown field'],
    [{ tokens: {} }, '/tokens'],
  ];
  for (const [raw, path] of cases) {
    const cfg = withTokenFile(t, JSON.stringify(raw), 0o600);
    const e = fail(() => loadConfig(cfg));
    t.type(e, ConfigError);
    t.match(e.message, `token file ${join(cfg, '..', 'tokens.json')}`);
    t.match(e.message, path);
  }
});

t.test('token file schema errors describe what is expected', async (t) => {
  const cfg = withTokenFile(t, JSON.stringify({ tokens: [{ name: 'a', secret: 'short', capabilities: [], colour: 1 }] }), 0o600);
  const msg = fail(() => loadConfig(cfg)).message;
  t.notMatch(msg, 'field not allowed', 'a field the schema has is not "not allowed"');
  const cfg2 = withTokenFile(t, JSON.stringify({ tokens: [{ name: 'a', secret: SECRET_A, capabilities: [], colour: 1 }] }), 0o600);
  t.match(fail(() => loadConfig(cfg2)).message, 'allowed here: name, secret, capabilities, maxBytes, maxHandles, maxTokens');
});

t.test('duplicate token names in the config are refused, naming the path', async (t) => {
  const c = base();
  c.auth.tokens = [
    { name: 'a', secret: SECRET_A, capabilities: [] },
    { name: 'b', secret: SECRET_B, capabilities: [] },
    { name: 'a', secret: 'charlie-secret-0123456789', capabilities: [] },
  ];
  const e = fail(() => buildConfig(c, 'test'));
  t.type(e, ConfigError);
  t.equal(e.message, "config /auth/tokens/2/name: token name 'a' is used twice (also at config /auth/tokens/0)");
  c.auth.tokens[0].secret = 'short';
  t.match(fail(() => buildConfig(c, 'test')).message, 'config /auth/tokens/0/secret');
});

t.test('duplicate token names in a token file are refused', async (t) => {
  const twice = { tokens: [{ name: 'a', secret: SECRET_A, capabilities: [] }, { name: 'a', secret: SECRET_B, capabilities: [] }] };
  const cfg = withTokenFile(t, JSON.stringify(twice), 0o600);
  t.match(fail(() => loadConfig(cfg)).message, "token name 'a' is used twice");
});

t.test('the admin cookie', async (t) => {
  const dir = t.testdir({});
  const p = join(dir, 'bufferd.sock.cookie');
  // a dead daemon's cookie: ours, 0600, one cookie line
  writeFileSync(p, `${'ab'.repeat(32)}\n`, { mode: 0o600 });
  const a = new Authenticator(authCfg(), lim(1024));
  t.equal(a.writeCookie(p), p);
  t.equal(statSync(p).mode & 0o777, 0o600, 'mode 0600');
  const text = readFileSync(p, 'utf8');
  t.match(text, /^[0-9a-f]{64}\n$/);
  const secret = text.trim();
  const who = a.resolve(secret);
  t.equal(who.name, 'cookie');
  t.same([...who.capabilities], [ADMIN]);
  t.equal(who.maxBytes, null);
  t.equal(who.maxHandles, 1024);
  t.equal(fail(() => a.resolve('ab'.repeat(32))).name, 'BufferdError', "the dead daemon's secret is void");
  const b = new Authenticator(authCfg(), lim(1024));
  const p2 = join(dir, 'other.cookie');
  b.writeCookie(p2);
  t.not(readFileSync(p2, 'utf8'), text, 'every cookie is fresh');
  t.equal((fail(() => b.resolve(secret)) as BufferdError).code, 'EPERM', "another daemon's cookie is not valid here");
  a.removeCookie();
  t.notOk(existsSync(p), 'removeCookie deletes the file');
  t.doesNotThrow(() => a.removeCookie(), 'twice is harmless');
  t.doesNotThrow(() => new Authenticator(authCfg(), lim(1)).removeCookie(), 'without a cookie is harmless');
  b.removeCookie();
  t.notOk(existsSync(p2));
});

t.test('capabilities: admin implies every one', async (t) => {
  const some = new Set(['driver', 'alloc:uncached']);
  t.ok(hasCapability(some, 'driver'));
  t.notOk(hasCapability(some, 'alloc:writecombine'));
  t.notOk(hasCapability(some, ADMIN));
  t.notOk(hasCapability(new Set(), 'driver'));
  const admin = new Set([ADMIN]);
  for (const cap of ['driver', 'alloc:writecombine', 'alloc:uncached', ADMIN, 'anything:else']) t.ok(hasCapability(admin, cap), cap);
  t.doesNotThrow(() => requireCapability(admin, 'driver', 'attaching a driver'));
  t.doesNotThrow(() => requireCapability(some, 'driver', 'attaching a driver'));
  const e = fail(() => requireCapability(some, 'alloc:writecombine', "allocating from pool 'wc'")) as BufferdError;
  t.equal(e.code, 'EPERM');
  t.equal(e.message, "allocating from pool 'wc' requires the capability 'alloc:writecombine', which this client does not have");
  t.same(e.details, { capability: 'alloc:writecombine' });
});

t.test('config: auth defaults and the default machine', async (t) => {
  const def = loadConfig();
  t.same(def.auth.anonymous.capabilities.slice().sort(), ['alloc:uncached', 'alloc:writecombine', 'driver']);
  t.notOk(def.auth.anonymous.capabilities.includes(ADMIN));
  t.equal(def.auth.cookie, true);
  t.same(def.fileTokens, []);
  const caps = new Set(def.machine.pools.map((p) => p.capability).filter((c): c is string => c !== null));
  for (const cap of caps) t.ok(def.auth.anonymous.capabilities.includes(cap), `anonymous may use pools needing ${cap}`);
  const c = base();
  delete c.auth;
  const none = buildConfig(c, 'test');
  t.same(none.auth, { anonymous: { capabilities: [], maxBytes: null, maxHandles: null, maxTokens: null }, users: {}, groups: {}, tokens: [], tokenFile: null, cookie: true, names: {} });
  const anon = new Authenticator(none.auth, none.limits).resolve(undefined);
  t.equal(anon.capabilities.size, 0);
  t.equal(anon.maxHandles, 1024);
  const q = base();
  q.auth = { anonymous: { capabilities: [], maxBytes: '64M', maxHandles: 8 }, cookie: false };
  const qc = buildConfig(q, 'test');
  t.same(qc.auth.anonymous, { capabilities: [], maxBytes: 64 << 20, maxHandles: 8, maxTokens: null });
  t.equal(qc.auth.cookie, false);
  q.auth.anonymous.capabilities = ['Bad!'];
  t.match(fail(() => buildConfig(q, 'test')).message, 'config /auth/anonymous/capabilities/0');
});

t.test('two tokens may not share a secret', async (t) => {
  const c = base();
  c.auth.tokens = [
    { name: 'a', secret: SECRET_A, capabilities: [] },
    { name: 'b', secret: SECRET_A, capabilities: ['admin'] },
  ];
  const e = fail(() => buildConfig(c, 'test'));
  t.match(e.message, 'config /auth/tokens/1/secret: two tokens share one secret (also at config /auth/tokens/0)');
});

t.test('a removed or replaced cookie stops authenticating at once', async (t) => {
  const dir = t.testdir({});
  const a = new Authenticator({ anonymous: { capabilities: [], maxBytes: null, maxHandles: null, maxTokens: null }, users: {}, groups: {}, tokens: [], tokenFile: null, cookie: true, names: {} }, lim(16));
  const first = a.writeCookie(`${dir}/.s.cookie`);
  const s1 = readFileSync(first, 'utf8').trim();
  t.equal(a.resolve(s1).name, 'cookie');
  a.writeCookie(`${dir}/.s.cookie`);
  const s2 = readFileSync(first, 'utf8').trim();
  t.not(s1, s2);
  t.equal((fail(() => a.resolve(s1)) as BufferdError).code, 'EPERM', 'the previous cookie is void');
  t.equal(a.resolve(s2).name, 'cookie');
  a.removeCookie();
  t.equal((fail(() => a.resolve(s2)) as BufferdError).code, 'EPERM', 'a removed cookie is void');
});

t.test('quota use belongs to the principal: shared by its connections, all anonymous ones too, and kept across a reload', async (t) => {
  const a = new Authenticator(authCfg(), lim(1024, 100));
  const anon1 = a.resolve(undefined);
  const anon2 = a.resolve(undefined);
  t.equal(anon1.usage, anon2.usage, 'two anonymous connections: one quota');
  t.equal(anon1.maxTokens, 100, 'maxTokens defaults to the limits figure');
  t.equal(a.resolve(SECRET_A).maxTokens, 3);
  anon1.usage.bytes += 4096;
  a.resolve(SECRET_A).usage.tokens += 2;
  a.reload(authCfg({ anonymous: { capabilities: [], maxBytes: 10, maxHandles: null, maxTokens: null } }), []);
  t.equal(a.resolve(undefined).usage.bytes, 4096, 'a reload does not reset what is in use');
  t.equal(a.resolve(undefined).maxBytes, 10, 'but applies the new limits');
  t.equal(a.resolve(SECRET_A).usage.tokens, 2);
  t.not(a.resolve(SECRET_A).usage, a.resolve(SECRET_B).usage, 'principals do not share');
});

t.test('auth.names binds client names to principals', async (t) => {
  const a = new Authenticator(authCfg({ names: { decoder: ['alpha'], display: ['alpha', 'anonymous'] } }), lim(1024));
  t.doesNotThrow(() => a.checkName('decoder', a.resolve(SECRET_A)));
  const e = fail(() => a.checkName('decoder', a.resolve(undefined))) as BufferdError;
  t.equal(e.code, 'EPERM');
  t.equal(e.message, "client name 'decoder' is reserved for 'alpha' (auth.names); this client is 'anonymous'");
  t.same(e.details, { name: 'decoder', principals: ['alpha'] });
  t.equal((fail(() => a.checkName('decoder', a.resolve(SECRET_B))) as BufferdError).code, 'EPERM', 'even an admin token');
  t.doesNotThrow(() => a.checkName('display', a.resolve(undefined)));
  t.doesNotThrow(() => a.checkName('anything-else', a.resolve(undefined)), 'unbound names stay first come, first served');
  t.doesNotThrow(() => a.checkName('constructor', a.resolve(undefined)), 'no prototype names');

  const c = base();
  c.auth.tokens = [{ name: 'dec', secret: SECRET_A, capabilities: [] }];
  c.auth.names = { decoder: 'dec', display: ['dec', 'cookie'] };
  t.same(buildConfig(c, 'test').auth.names, { decoder: ['dec'], display: ['dec', 'cookie'] }, 'a string is a list of one');
  c.auth.names = { decoder: 'nobody' };
  t.equal(fail(() => buildConfig(c, 'test')).message, "config /auth/names/decoder: no principal 'nobody' (expected a token name from auth.tokens or the token file, 'uid:N' of auth.users, 'gid:N' of auth.groups, 'cookie' or 'anonymous')");
  c.auth.names = { 'bad name!': 'dec' };
  t.match(fail(() => buildConfig(c, 'test')).message, 'config /auth/names');
  for (const reserved of ['anonymous', 'cookie']) {
    const r = base();
    r.auth.tokens = [{ name: reserved, secret: SECRET_A, capabilities: [] }];
    t.equal(fail(() => buildConfig(r, 'test')).message, `config /auth/tokens/0/name: '${reserved}' is the name of a built-in principal; choose another token name`);
  }
});

t.test('the cookie path: only a dead daemon\'s cookie is replaced; symlinks and foreign files are refused', async (t) => {
  const dir = t.testdir({ target: 'precious\n' });
  const a = new Authenticator(authCfg(), lim(16));
  const cases: [string, () => void, string][] = [
    ['a regular file with other content', () => writeFileSync(join(dir, 'c1'), 'precious data\n', { mode: 0o600 }), 'it does not hold a cookie (64 hex digits and a newline)'],
    ['a cookie line with mode 0644', () => writeFileSync(join(dir, 'c2'), `${'cd'.repeat(32)}\n`, { mode: 0o644 }), 'its mode is 0644, not 0600'],
    ['a symlink', () => symlinkSync(join(dir, 'target'), join(dir, 'c3')), 'it is a symbolic link'],
    ['a directory', () => mkdirSync(join(dir, 'c4')), 'it is not a regular file'],
  ];
  for (const [i, [what, make, why]] of cases.entries()) {
    make();
    const p = join(dir, `c${i + 1}`);
    const e = fail(() => a.writeCookie(p));
    t.equal(e.name, 'CookieRefused', what);
    t.equal(e.message, `${p} exists and is not a bufferd cookie (${why}); refusing to replace it`);
  }
  t.equal(readFileSync(join(dir, 'target'), 'utf8'), 'precious\n', 'nothing was written through the symlink');
  t.equal(readFileSync(join(dir, 'c1'), 'utf8'), 'precious data\n', 'the foreign file is untouched');
  // removal only takes the file that was written
  const p = join(dir, 'mine');
  a.writeCookie(p);
  writeFileSync(join(dir, 'other'), 'x');
  const { renameSync } = await import('node:fs');
  renameSync(join(dir, 'other'), p); // someone replaced it
  a.removeCookie();
  t.ok(existsSync(p), 'a file that replaced the cookie is not removed');
  t.same(readFileSync(p, 'utf8'), 'x');
});

t.test("auth.users and auth.groups: principals by the peer's uid or primary gid, for clients without a token", async (t) => {
  const c = base();
  c.auth = {
    anonymous: { capabilities: [] },
    users: { '1000': { capabilities: ['driver'], maxBytes: '1M' } },
    groups: { '100': { capabilities: ['alloc:uncached'] }, '0100': { capabilities: [] } },
    tokens: [{ name: 'tok', secret: SECRET_A, capabilities: ['admin'] }],
    names: { decoder: 'uid:1000', display: ['gid:100'] },
  };
  t.match(fail(() => buildConfig(c, 'test')).message, 'config /auth/groups', "'100' and '0100' are the same group: refused");
  delete c.auth.groups['0100'];
  const cfg = buildConfig(c, 'test');
  t.same(cfg.auth.users, { '1000': { capabilities: ['driver'], maxBytes: 1 << 20, maxHandles: null, maxTokens: null } });
  const a = new Authenticator(cfg.auth, cfg.limits);
  const u = a.resolve(undefined, { uid: 1000, gid: 100 });
  t.equal(u.name, 'uid:1000', 'a user grant comes first');
  t.same([...u.capabilities], ['driver']);
  t.equal(u.maxBytes, 1 << 20);
  t.equal(a.resolve(undefined, { uid: 1001, gid: 100 }).name, 'gid:100', 'then the primary group');
  t.equal(a.resolve(undefined, { uid: 1001, gid: 5 }).name, 'anonymous', 'then anonymous');
  t.equal(a.resolve(undefined, null).name, 'anonymous', 'no peer credentials: anonymous');
  t.equal(a.resolve(SECRET_A, { uid: 1000, gid: 100 }).name, 'tok', 'a token wins over the user');
  t.equal(a.resolve(undefined, { uid: 1000, gid: 1 }).usage, a.resolve(undefined, { uid: 1000, gid: 2 }).usage, "a user's connections share its quota");
  t.doesNotThrow(() => a.checkName('decoder', u), 'a name bound to uid:1000');
  t.equal((fail(() => a.checkName('decoder', a.resolve(undefined, null))) as BufferdError).code, 'EPERM');
  c.auth.names = { decoder: 'uid:2000' };
  t.match(fail(() => buildConfig(c, 'test')).message, "no principal 'uid:2000'");
});
