/**
 * The config file's schema (TypeBox → ajv). Semantic checks that a schema
 * can't express (overlaps, references between sections) live in
 * machine-config.ts.
 */
import { Type, type Static } from '../../protocol/typebox.js';
import { SIZE_PATTERN } from '../../protocol/units.js';
import { ConstraintsSchema } from '../../protocol/attributes.js';
import { FAULT_POINTS, FaultSpecSchema } from '../../protocol/ops/inject.js';

const Size = (description: string) =>
  Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: SIZE_PATTERN })], {
    description: `${description}: an integer, "0x..." or a size such as "4K", "2M", "1G"`,
  });

/** A loopback HOST:PORT (the dashboard's listener); http.ts parses with the same pattern. */
export const LOOPBACK_HOST_PORT = '^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|localhost|\\[::1\\]):[0-9]{1,5}$';

const Name = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._:@-]*$', description: 'a name of letters, digits, ".", "_", ":", "@", "-"' });

export const RegionSchema = Type.Object(
  {
    name: Name,
    base: Size('physical base address'),
    size: Size('size in bytes'),
    kind: Type.Union([Type.Literal('dram'), Type.Literal('tcm'), Type.Literal('carveout')], { description: 'one of "dram", "tcm", "carveout"' }),
  },
  { additionalProperties: false },
);

export const HugepagePoolSchema = Type.Object(
  {
    size: Type.Union([Type.Literal('2M'), Type.Literal('1G')], { description: 'one of "2M", "1G"' }),
    region: Name,
    nr: Type.Integer({ minimum: 0, maximum: 1 << 20, description: 'nr_hugepages' }),
    overcommit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 20, description: 'nr_overcommit_hugepages' })),
  },
  { additionalProperties: false },
);

export const PoolSchema = Type.Object(
  {
    name: Name,
    cache: Type.Union([Type.Literal('writeback'), Type.Literal('writecombine'), Type.Literal('uncached')], {
      description: 'one of "writeback", "writecombine", "uncached"',
    }),
    pageSize: Type.Optional(Type.Union([Type.Literal('4K'), Type.Literal('2M'), Type.Literal('1G')], { description: 'one of "4K", "2M", "1G"' })),
    region: Name,
    contiguous: Type.Optional(Type.Boolean()),
    maxAddress: Type.Optional(Size('highest physical address (exclusive) the pool may use')),
    capability: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'capability needed to allocate' })),
    maxBytes: Type.Optional(Size('most bytes the pool may hand out')),
    arena: Type.Optional(Type.Union([Type.Literal('per-client'), Type.Literal('shared')], { description: 'one of "per-client", "shared"' })),
    dirtyDecayMs: Type.Optional(Type.Integer({ minimum: -1, maximum: 3_600_000, description: 'integer ms, -1 (never) to 3600000' })),
    coherency: Type.Optional(Type.Union([Type.Literal('off'), Type.Literal('warn'), Type.Literal('strict')], { description: 'checker mode for this pool: one of "off", "warn", "strict"' })),
  },
  { additionalProperties: false },
);

const Capability = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9:._-]*$', description: 'a capability such as "alloc:writecombine", "driver", "admin"' });

export const TokenSchema = Type.Object(
  {
    name: Name,
    secret: Type.String({ minLength: 16, maxLength: 256, description: 'a secret of 16 to 256 characters' }),
    capabilities: Type.Array(Capability, { maxItems: 64 }),
    maxBytes: Type.Optional(Size('byte quota')),
    maxHandles: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20 })),
    maxTokens: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 24, description: 'tokens in flight at once' })),
  },
  { additionalProperties: false },
);

export const TokenFileSchema = Type.Object({ tokens: Type.Array(TokenSchema, { maxItems: 4096 }) }, { additionalProperties: false });

/** What a principal may do and hold: anonymous clients, a user, a group. */
const Grant = Type.Object(
  {
    capabilities: Type.Array(Capability, { maxItems: 64 }),
    maxBytes: Type.Optional(Size('byte quota')),
    maxHandles: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20 })),
    maxTokens: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 24, description: 'tokens in flight at once' })),
  },
  { additionalProperties: false },
);

const ById = (what: string) =>
  Type.Record(Type.String({ pattern: '^[0-9]{1,10}$' }), Grant, {
    description: `${what} by numeric id: {"1000": {"capabilities": [...]}}`,
    maxProperties: 4096,
    additionalProperties: false,
  });

export const AuthSchema = Type.Object(
  {
    anonymous: Type.Optional(Grant),
    users: Type.Optional(ById('what clients of a user (SO_PEERCRED uid) may do, without a token')),
    groups: Type.Optional(ById('what clients of a group (their primary gid) may do, without a token')),
    tokens: Type.Optional(Type.Array(TokenSchema, { maxItems: 4096 })),
    names: Type.Optional(
      Type.Record(Type.String({ pattern: Name.pattern }), Type.Union([Name, Type.Array(Name, { minItems: 1, maxItems: 64 })]), {
        description: 'client names reserved for principals: {"decoder": "decoder-token"} or {"display": ["a", "b"]}',
        maxProperties: 4096,
        additionalProperties: false,
      }),
    ),
    tokenFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'path of a JSON token file readable only by its owner' })),
    cookie: Type.Optional(Type.Boolean({ description: 'write an admin cookie beside the socket (default true)' })),
  },
  { additionalProperties: false },
);

export const DriverSchema = Type.Object(
  {
    name: Name,
    description: Type.Optional(Type.String({ maxLength: 200 })),
    constraints: ConstraintsSchema,
  },
  { additionalProperties: false },
);

export const BounceSchema = Type.Object(
  {
    size: Size('bounce pool size'),
    region: Name,
    maxMapping: Type.Optional(Size('largest single bounce mapping, at most 256K (the swiotlb segment: IO_TLB_SEGSIZE 128 slots of 2 KiB)')),
  },
  { additionalProperties: false },
);

export const CoherencySchema = Type.Object(
  {
    mode: Type.Optional(Type.Union([Type.Literal('off'), Type.Literal('warn'), Type.Literal('strict')], { description: 'one of "off", "warn", "strict"' })),
    lineSize: Type.Optional(Type.Union([Type.Literal(32), Type.Literal(64), Type.Literal(128)], { description: 'cache line size: 32, 64 or 128' })),
    prefetch: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('always'), Type.Literal('random')], { description: 'one of "none", "always", "random"' })),
    prefetchRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'probability a line is prefetched (prefetch "random")' })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffffffff })),
    eviction: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('random')], { description: 'one of "none", "random"' })),
    cacheLines: Type.Optional(Type.Integer({ minimum: 16, maximum: 1 << 26, description: 'cache capacity in lines (eviction "random")' })),
    wcLines: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: 'write-combine buffer lines' })),
    ringSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20, description: 'violations kept' })),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    server: Type.Optional(
      Type.Object(
        {
          socketMode: Type.Optional(Type.String({ pattern: '^0?[0-7]{3}$', description: 'octal file mode such as "0660"' })),
          maxFrameBytes: Type.Optional(Size('largest frame body accepted')),
          maxConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
          frameTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000, description: 'ms from a frame\'s first byte to its last' })),
          helloTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000, description: 'ms from accept to a successful hello' })),
          maxUnsentBytes: Type.Optional(Size('response bytes a connection may leave unread before the daemon stops taking its requests')),
          shutdownTimeoutMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
          http: Type.Optional(Type.String({ pattern: LOOPBACK_HOST_PORT, description: 'loopback HOST:PORT for the dashboard, e.g. "127.0.0.1:8080"' })),
        },
        { additionalProperties: false },
      ),
    ),
    events: Type.Optional(
      Type.Object(
        {
          maxBuffered: Type.Optional(Size('unsent event bytes after which a subscriber is dropped')),
          maxBufferedTotal: Type.Optional(Size('unsent event bytes of all subscribers together after which the slowest is dropped')),
          allocRate: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'allocation events per second sent one by one; above it they are aggregated' })),
          pingMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000, description: 'WebSocket ping interval; a peer that misses a pong is cut' })),
        },
        { additionalProperties: false },
      ),
    ),
    history: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean({ description: 'keep buffer histories (default true)' })),
          perBuffer: Type.Optional(Type.Integer({ minimum: 8, maximum: 4096, description: 'events kept per buffer, 8 to 4096' })),
          maxEvents: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'events kept over all buffers, 0 to 10000000' })),
          keepFreed: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'freed buffers whose history is kept, 0 to 1000000' })),
        },
        { additionalProperties: false },
      ),
    ),
    limits: Type.Optional(
      Type.Object(
        {
          maxHandles: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20 })),
          maxTokens: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 24, description: 'tokens in flight at once per principal' })),
        },
        { additionalProperties: false },
      ),
    ),
    memory: Type.Object(
      {
        regions: Type.Array(RegionSchema, { minItems: 1, maxItems: 64 }),
      },
      { additionalProperties: false },
    ),
    auth: Type.Optional(AuthSchema),
    hugepages: Type.Optional(Type.Array(HugepagePoolSchema, { maxItems: 2 })),
    pools: Type.Array(PoolSchema, { minItems: 1, maxItems: 256 }),
    bounce: Type.Optional(BounceSchema),
    coherency: Type.Optional(CoherencySchema),
    drivers: Type.Optional(Type.Array(DriverSchema, { maxItems: 256 })),
    faultInjection: Type.Optional(
      Type.Object(Object.fromEntries(FAULT_POINTS.map((p) => [p, Type.Optional(FaultSpecSchema)])), {
        additionalProperties: false,
        description: 'fault points armed at start and by each reload: {"alloc": {"nth": 3, "times": 1}}',
      }),
    ),
  },
  { additionalProperties: false },
);

export type RawConfig = Static<typeof ConfigSchema>;
export type RawRegion = Static<typeof RegionSchema>;
export type RawHugepagePool = Static<typeof HugepagePoolSchema>;
export type RawPool = Static<typeof PoolSchema>;
export type RawToken = Static<typeof TokenSchema>;
