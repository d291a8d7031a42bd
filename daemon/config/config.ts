/**
 * Layer daemon/config/: the configuration — the schema (schema.ts), loading
 * and normalising a file (this file), the machine description
 * (machine-config.ts), the auth section and token files (auth.ts), and the
 * embedded default machine. It may use dma/, buffers/, alloc/, memory/,
 * lib/ and protocol/ (for the types each layer is configured with);
 * session/ and above use it.
 *
 * Configuration: one JSON file, validated with ajv against a TypeBox schema
 * at start-up, then normalised (sizes and addresses to numbers, defaults
 * filled in). With no file, the embedded default machine is used.
 *
 * Errors name the JSON path of the bad field, e.g.
 *   config /pools/2/cache: must be one of "writeback", "writecombine", "uncached"
 */
import type { FaultPoint, FaultSpec } from '../../protocol/ops/inject.js';
import { readFileSync } from 'node:fs';
import type { ErrorObject } from 'ajv';
import { createAjv } from '../../protocol/validate.js';
import { describeSchema } from '../../protocol/types.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../../protocol/frame.js';
import { ConfigSchema, type RawConfig } from './schema.js';
import { DEFAULT_MACHINE } from './default-machine.js';
import { parseSize } from '../../protocol/units.js';
import { normalizeMachine, type MachineConfig } from './machine-config.js';
import { TokenFileSchema, type RawToken } from './schema.js';
import { readTokenFile, AuthError, type AuthConfig, type Grant, type TokenSpec } from './auth.js';
import { dirname, resolve as resolvePath } from 'node:path';
import { jsonErrorAt } from '../lib/json-syntax.js';

export interface ServerConfig {
  socketMode: number;
  maxFrameBytes: number;
  maxConnections: number;
  /** A frame must be complete this long after its first byte. */
  frameTimeoutMs: number;
  /** A connection must complete hello this long after it is accepted. */
  helloTimeoutMs: number;
  /** Unsent response bytes after which a connection's requests wait (and its socket is not read). */
  maxUnsentBytes: number;
  shutdownTimeoutMs: number;
  /** Loopback HOST:PORT of the dashboard, or null (off). */
  http: string | null;
}

export interface EventsConfig {
  maxBuffered: number;
  maxBufferedTotal: number;
  allocRate: number;
  pingMs: number;
}

/** Buffer histories (session/history.ts): on or off, and their bounds. */
export interface HistoryConfig {
  enabled: boolean;
  perBuffer: number;
  maxEvents: number;
  keepFreed: number;
}

export interface LimitsConfig {
  /** Per connection: handles, mappings and registrations. */
  maxHandles: number;
  /** Per principal: tokens in flight. */
  maxTokens: number;
}

export interface CoherencySettings {
  mode: 'off' | 'warn' | 'strict';
  lineSize: number;
  prefetch: 'none' | 'always' | 'random';
  prefetchRate: number;
  seed: number;
  eviction: 'none' | 'random';
  cacheLines: number;
  wcLines: number;
  ringSize: number;
}

export interface Config {
  /** Where the config came from: a file path or "(embedded default machine)". */
  source: string;
  server: ServerConfig;
  events: EventsConfig;
  history: HistoryConfig;
  limits: LimitsConfig;
  machine: MachineConfig;
  auth: AuthConfig;
  /** Tokens read from auth.tokenFile at start-up. */
  fileTokens: TokenSpec[];
  coherency: CoherencySettings;
  /** Fault points armed by the file (faultInjection), by point. */
  faultInjection: FaultInjectionConfig;
}

/** The config's faultInjection: a spec per point; a pool filter must name a configured pool. */
export type FaultInjectionConfig = Partial<Record<FaultPoint, FaultSpec>>;

function faultInjectionConfig(raw: FaultInjectionConfig | undefined, pools: string[]): FaultInjectionConfig {
  for (const [point, spec] of Object.entries(raw ?? {})) {
    if (spec?.pool !== undefined && !pools.includes(spec.pool)) {
      throw new ConfigError(`config /faultInjection/${point}/pool: no pool named '${spec.pool}' (pools: ${pools.join(', ')})`);
    }
  }
  return raw ?? {};
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

// Compiled at start-up without ajv's optimising pass (code.optimize, see
// https://ajv.js.org/options.html#code): it makes a validator faster to run
// and slower to build, and the config is validated once per start or reload,
// a few microseconds either way, while the pass costs ~90 ms of every start.
// Request validators (protocol/validate.ts), run on every request, keep it.
const ajv = createAjv({ code: { optimize: false } });
const validateRaw = ajv.compile(ConfigSchema);
const validateTokenFile = ajv.compile(TokenFileSchema);

function tokenSpec(t: RawToken, where: string): TokenSpec {
  return {
    name: t.name,
    secret: t.secret,
    capabilities: t.capabilities,
    maxBytes: t.maxBytes !== undefined ? parseSize(t.maxBytes, `${where}/maxBytes`) : null,
    maxHandles: t.maxHandles ?? null,
    maxTokens: t.maxTokens ?? null,
  };
}

/** A grant (anonymous, a user's, a group's) with its sizes as numbers. */
function grant(g: { capabilities: string[]; maxBytes?: number | string; maxHandles?: number; maxTokens?: number }, where: string): Grant {
  return {
    capabilities: g.capabilities,
    maxBytes: g.maxBytes !== undefined ? parseSize(g.maxBytes, `${where}/maxBytes`) : null,
    maxHandles: g.maxHandles ?? null,
    maxTokens: g.maxTokens ?? null,
  };
}

/** Grants by numeric id, each id once ("100" and "0100" are one group). */
function byId(raw: Record<string, Parameters<typeof grant>[0]>, where: string): Record<string, Grant> {
  const out: Record<string, Grant> = {};
  for (const [id, g] of Object.entries(raw)) {
    const n = String(Number(id));
    if (out[n] !== undefined) throw new ConfigError(`config ${where}/${id}: id ${n} is given twice`);
    out[n] = grant(g, `${where}/${id}`);
  }
  return out;
}

function parseTokenFile(raw: unknown, path: string): TokenSpec[] {
  if (!validateTokenFile(raw)) {
    throw new AuthError(formatConfigError(validateTokenFile.errors ?? [], TokenFileSchema, `token file ${path} `));
  }
  return (raw as { tokens: RawToken[] }).tokens.map((t, i) => tokenSpec(t, `${path}#/tokens/${i}`));
}

function jsonPath(instancePath: string, extra?: string): string {
  const p = instancePath === '' ? '' : instancePath;
  return extra !== undefined ? `${p}/${extra}` : p === '' ? '/' : p;
}

function subSchema(pointer: string, root: unknown = ConfigSchema): unknown {
  let s: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const r = s as Record<string, unknown> | undefined;
    if (r === undefined) return undefined;
    if (/^\d+$/.test(raw) && r['items'] !== undefined) s = r['items'];
    else s = (r['properties'] as Record<string, unknown> | undefined)?.[raw];
  }
  return s;
}

function formatConfigError(errors: ErrorObject[], root: unknown = ConfigSchema, prefix = 'config '): string {
  // For unions ajv reports every branch, then the anyOf itself; the anyOf at
  // the deepest path gives the clearest sentence.
  const anyOf = errors.find((e) => e.keyword === 'anyOf');
  const e = anyOf ?? errors[0]!;
  switch (e.keyword) {
    case 'required': {
      const m = (e.params as { missingProperty: string }).missingProperty;
      const d = describeSchema(subSchema(`${e.instancePath}/${m}`, root) as never);
      return `${prefix}${jsonPath(e.instancePath, m)}: required field missing (expected ${d})`;
    }
    case 'additionalProperties': {
      const m = (e.params as { additionalProperty: string }).additionalProperty;
      const parent = subSchema(e.instancePath, root) as { properties?: object } | undefined;
      const allowed = Object.keys(parent?.properties ?? {}).join(', ');
      return `${prefix}${jsonPath(e.instancePath, m)}: unknown field (allowed here: ${allowed})`;
    }
    default: {
      const s = subSchema(e.instancePath, root) as { description?: string } | undefined;
      const d = s?.description ?? describeSchema(s as never);
      return `${prefix}${jsonPath(e.instancePath)}: ${e.keyword === 'anyOf' ? 'invalid value' : e.message ?? 'invalid'} (expected ${d})`;
    }
  }
}

/** Validate and normalise a parsed config object. Throws ConfigError. */
export function buildConfig(raw: unknown, source: string): Config {
  if (!validateRaw(raw)) throw new ConfigError(formatConfigError(validateRaw.errors ?? []));
  const r = raw as RawConfig;
  const s = r.server ?? {};
  const server: ServerConfig = {
    socketMode: s.socketMode !== undefined ? parseInt(s.socketMode, 8) : 0o660,
    maxFrameBytes: s.maxFrameBytes !== undefined ? parseSize(s.maxFrameBytes, '/server/maxFrameBytes') : DEFAULT_MAX_FRAME_BYTES,
    maxConnections: s.maxConnections ?? 1024,
    frameTimeoutMs: s.frameTimeoutMs ?? 30_000,
    helloTimeoutMs: s.helloTimeoutMs ?? 10_000,
    maxUnsentBytes: s.maxUnsentBytes !== undefined ? parseSize(s.maxUnsentBytes, '/server/maxUnsentBytes') : 4 * 1024 * 1024,
    shutdownTimeoutMs: s.shutdownTimeoutMs ?? 5_000,
    http: s.http ?? null,
  };
  const ev = r.events ?? {};
  const events: EventsConfig = {
    maxBuffered: ev.maxBuffered !== undefined ? parseSize(ev.maxBuffered, '/events/maxBuffered') : 8 * 1024 * 1024,
    maxBufferedTotal: ev.maxBufferedTotal !== undefined ? parseSize(ev.maxBufferedTotal, '/events/maxBufferedTotal') : 64 * 1024 * 1024,
    allocRate: ev.allocRate ?? 200,
    pingMs: ev.pingMs ?? 15_000,
  };
  if (server.maxFrameBytes < 1024 || server.maxFrameBytes > 1024 * 1024 * 1024) {
    throw new ConfigError(`config /server/maxFrameBytes: must be between 1K and 1G (got ${server.maxFrameBytes} bytes)`);
  }
  if (server.maxUnsentBytes < 64 * 1024) {
    throw new ConfigError(`config /server/maxUnsentBytes: must be at least 64K (got ${server.maxUnsentBytes} bytes)`);
  }
  const limits: LimitsConfig = { maxHandles: r.limits?.maxHandles ?? 1024, maxTokens: r.limits?.maxTokens ?? 4096 };
  const machine = normalizeMachine(r);
  const a = r.auth ?? {};
  const auth: AuthConfig = {
    anonymous: grant(a.anonymous ?? { capabilities: [] }, '/auth/anonymous'),
    users: byId(a.users ?? {}, '/auth/users'),
    groups: byId(a.groups ?? {}, '/auth/groups'),
    tokens: (a.tokens ?? []).map((t, i) => tokenSpec(t, `/auth/tokens/${i}`)),
    tokenFile: a.tokenFile !== undefined ? resolvePath(source.startsWith('(') ? process.cwd() : dirname(source), a.tokenFile) : null,
    cookie: a.cookie ?? true,
    names: Object.fromEntries(Object.entries(a.names ?? {}).map(([k, v]) => [k, typeof v === 'string' ? [v] : v])),
  };
  let fileTokens: TokenSpec[] = [];
  if (auth.tokenFile !== null) {
    try {
      fileTokens = readTokenFile(auth.tokenFile, parseTokenFile);
    } catch (e) {
      if (e instanceof AuthError) throw new ConfigError(`config /auth/tokenFile: ${e.message}`);
      throw e;
    }
  }
  // names and secrets are unique across the config and the token file
  const names = new Map<string, string>();
  const secrets = new Map<string, string>();
  const all = [
    ...auth.tokens.map((t, i) => ({ t, where: `config /auth/tokens/${i}` })),
    ...fileTokens.map((t, i) => ({ t, where: `token file ${auth.tokenFile} /tokens/${i}` })),
  ];
  for (const { t, where } of all) {
    if (t.name === 'anonymous' || t.name === 'cookie') throw new ConfigError(`${where}/name: '${t.name}' is the name of a built-in principal; choose another token name`);
    const prev = names.get(t.name);
    if (prev !== undefined) throw new ConfigError(`${where}/name: token name '${t.name}' is used twice (also at ${prev})`);
    names.set(t.name, where);
    const prevSecret = secrets.get(t.secret);
    if (prevSecret !== undefined) throw new ConfigError(`${where}/secret: two tokens share one secret (also at ${prevSecret}); each secret must be unique`);
    secrets.set(t.secret, where);
  }
  for (const [client, principals] of Object.entries(auth.names)) {
    for (const p of principals) {
      const byId = /^(uid|gid):([0-9]+)$/.exec(p);
      const known = byId !== null ? (byId[1] === 'uid' ? auth.users : auth.groups)[String(Number(byId[2]))] !== undefined : names.has(p);
      if (p !== 'anonymous' && p !== 'cookie' && !known) {
        throw new ConfigError(`config /auth/names/${client}: no principal '${p}' (expected a token name from auth.tokens or the token file, 'uid:N' of auth.users, 'gid:N' of auth.groups, 'cookie' or 'anonymous')`);
      }
    }
  }
  const c = r.coherency ?? {};
  const coherency: CoherencySettings = {
    mode: c.mode ?? 'warn',
    lineSize: c.lineSize ?? 64,
    prefetch: c.prefetch ?? 'always',
    prefetchRate: c.prefetchRate ?? 0.5,
    seed: c.seed ?? 1,
    eviction: c.eviction ?? 'none',
    cacheLines: c.cacheLines ?? 32768,
    wcLines: c.wcLines ?? 8,
    ringSize: c.ringSize ?? 1024,
  };
  const faultInjection = faultInjectionConfig(r.faultInjection, machine.pools.map((p) => p.name));
  const h = r.history ?? {};
  const history: HistoryConfig = { enabled: h.enabled ?? true, perBuffer: h.perBuffer ?? 256, maxEvents: h.maxEvents ?? 200_000, keepFreed: h.keepFreed ?? 1000 };
  return { source, server, events, history, limits, machine, auth, fileTokens, coherency, faultInjection };
}

/** Load the config file, or the embedded default machine when path is undefined. */
export function loadConfig(path?: string): Config {
  if (path === undefined) return buildConfig(DEFAULT_MACHINE, '(embedded default machine)');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${jsonErrorAt(text, e as Error)}`);
  }
  return buildConfig(raw, path);
}
