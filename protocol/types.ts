/**
 * Schema building blocks shared by every op's request schema. Written once
 * with TypeBox: the JSON Schema is what ajv compiles, the static type is what
 * TypeScript checks.
 */
import { Type, type TSchema, type TObject, type TProperties, type TLiteral } from './typebox.js';

/** Largest integer carried exactly by a JS number. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export const Uint = (opts: { maximum?: number; minimum?: number; description?: string } = {}) =>
  Type.Integer({ minimum: 0, maximum: MAX_SAFE, ...opts });

/** A handle number on the connection. */
export const HandleNum = Uint({ description: 'handle number on this connection' });

/** Request id chosen by the client. */
export const RequestId = Uint({ description: 'unsigned integer request id' });

/** Names of pools, regions, drivers, clients: short, printable, no spaces. */
export const Name = (description = 'name') =>
  Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._:@-]*$', description });

/** A byte count carried on the wire (a JSON/MessagePack integer). */
export const Bytes = (opts: { minimum?: number; maximum?: number; description?: string } = {}) =>
  Type.Integer({ minimum: 0, maximum: MAX_SAFE, ...opts });

/** Binary data (MessagePack bin). Checked by the custom `bytes` keyword. */
export const BinaryData = (maxLength: number, description = 'binary data') =>
  Type.Unsafe<Uint8Array>({ bytes: { maxLength }, description });

/**
 * Build the schema of one request: `{id, op: <literal>, ...fields}` with no
 * other members allowed.
 */
export function request<Op extends string, P extends TProperties>(
  op: Op,
  fields: P,
  description: string,
): TObject<{ id: typeof RequestId; op: TLiteral<Op> } & P> {
  return Type.Object(
    { id: RequestId, op: Type.Literal(op), ...fields },
    { additionalProperties: false, description },
  ) as TObject<{ id: typeof RequestId; op: TLiteral<Op> } & P>;
}

/** Human description of what a schema expects, used in EINVAL messages. */
export function describeSchema(s: TSchema | undefined): string {
  if (s === undefined) return 'nothing (field not allowed)';
  const anyS = s as Record<string, unknown>;
  if (anyS['const'] !== undefined) return `the value ${JSON.stringify(anyS['const'])}`;
  if (Array.isArray(anyS['enum'])) return `one of ${(anyS['enum'] as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`;
  if (Array.isArray(anyS['anyOf'])) {
    const alts = anyS['anyOf'] as Record<string, unknown>[];
    if (alts.every((a) => a['const'] !== undefined)) return `one of ${alts.map((a) => JSON.stringify(a['const'])).join(', ')}`;
    const parts = (anyS['anyOf'] as TSchema[]).map(describeSchema);
    return parts.join(' or ');
  }
  if (anyS['bytes'] !== undefined) {
    const b = anyS['bytes'] as { maxLength: number };
    return `binary data (MessagePack bin) of at most ${b.maxLength} bytes`;
  }
  switch (anyS['type']) {
    case 'integer': {
      const min = anyS['minimum'] as number | undefined;
      const max = anyS['maximum'] as number | undefined;
      let d = min !== undefined && min >= 0 ? (min > 0 ? `integer ≥ ${min}` : 'unsigned integer') : 'integer';
      if (max !== undefined && max < MAX_SAFE) d += ` ≤ ${max}`;
      return d;
    }
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'string': {
      const max = anyS['maxLength'] as number | undefined;
      return anyS['pattern'] !== undefined
        ? `string matching ${String(anyS['pattern'])}${max !== undefined ? ` (at most ${max} characters)` : ''}`
        : `string${max !== undefined ? ` of at most ${max} characters` : ''}`;
    }
    case 'array': {
      const max = anyS['maxItems'] as number | undefined;
      return `array of ${describeSchema(anyS['items'] as TSchema)}${max !== undefined ? ` (at most ${max} items)` : ''}`;
    }
    case 'object':
      return 'map';
    default:
      return 'a valid value';
  }
}
