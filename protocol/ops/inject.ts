/**
 * Fault-injection ops: inject.set, inject.clear, inject.list (admin only),
 * the fault points and the shapes of their results (PROTOCOL.md, "Fault
 * injection").
 */
import { Type, type Static } from '../typebox.js';
import { Name, request } from '../types.js';

/** The named points where a failure can be injected. */
export const FAULT_POINTS = ['alloc', 'hugepage', 'iova', 'bounce', 'register', 'token', 'connection'] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Largest `nth` and `times`. */
export const MAX_FAULT_COUNT = 2 ** 31;

export const FaultPointSchema = Type.Union(
  FAULT_POINTS.map((p) => Type.Literal(p)),
  { description: `a fault point: one of ${FAULT_POINTS.map((p) => `"${p}"`).join(', ')}` },
);

/** How a point is armed: the fields of inject.set and of the config's faultInjection entries. */
export const FaultSpecFields = {
  nth: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_FAULT_COUNT, description: 'only every Nth matching call may fail (calls N, 2N, ...; the kernel\'s interval); default 1' })),
  probability: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'percent chance that a call passing nth fails, from the seeded RNG; default 100' })),
  times: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_FAULT_COUNT, description: 'fail at most this many times; default no limit' })),
  client: Type.Optional(Name('only calls made for the client of this name')),
  pool: Type.Optional(Name('only calls about buffers of this pool')),
  seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffffffff, description: 'seed of the probability RNG; default 1' })),
};

export const FaultSpecSchema = Type.Object(FaultSpecFields, { additionalProperties: false });
export type FaultSpec = Static<typeof FaultSpecSchema>;

export const INJECT_REQUESTS = {
  'inject.set': request('inject.set', { point: FaultPointSchema, ...FaultSpecFields }, 'Arm a fault point (re-arming restarts its counts). Admin only.'),
  'inject.clear': request('inject.clear', { point: Type.Optional(FaultPointSchema) }, 'Disarm one fault point, or every one. Admin only.'),
  'inject.list': request('inject.list', {}, 'The armed fault points with their counts, and failures injected per point since start. Admin only.'),
} as const;

/** An armed point: its attributes and what it has done since armed. */
export interface ArmedFault {
  point: FaultPoint;
  nth: number;
  probability: number;
  /** Failures left, or null for no limit. */
  times: number | null;
  client: string | null;
  pool: string | null;
  seed: number;
  /** Who armed it: the config file or inject.set. */
  source: 'config' | 'op';
  /** Matching calls seen since armed. */
  calls: number;
  /** Failures injected since armed. */
  fired: number;
}

/** status.faults and inject.list: the armed points, and failures injected per point since start. */
export interface FaultStatus {
  armed: ArmedFault[];
  injected: Record<FaultPoint, number>;
  total: number;
}

export interface InjectResults {
  'inject.set': ArmedFault;
  'inject.clear': { cleared: FaultPoint[] };
  'inject.list': FaultStatus & { points: { point: FaultPoint; meaning: string }[] };
}
