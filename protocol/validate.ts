/**
 * Request validation: every op schema compiled once with ajv, and ajv's
 * errors turned into one sentence naming the field and what was expected.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { TSchema } from '@sinclair/typebox';
import { BufferdError } from './errors.js';
import { isPlainMap } from './codec.js';
import { REQUESTS, OP_NAMES, type OpName } from './requests.js';
import { describeSchema } from './types.js';

/**
 * An ajv instance that knows the `bytes` keyword (MessagePack bin values).
 *
 * `validateSchema: false`: ajv would otherwise compile the draft-07
 * meta-schema and check every schema against it before compiling it (about
 * a sixth of the daemon's start-up compile). Our schemas are our own, built
 * by TypeBox, so that check runs in the unit tests instead
 * (test/unit/validate-compile.test.ts); strict mode (unknown keywords, ignored
 * keywords) still runs at every compile. See ajv's options, "validateSchema":
 * https://ajv.js.org/options.html#validateschema
 */
export function createAjv(opts: { code?: { optimize?: boolean } } = {}): Ajv {
  const ajv = new Ajv({ allErrors: false, strict: true, strictTypes: false, useDefaults: false, coerceTypes: false, validateSchema: false, ...opts });
  ajv.addKeyword({
    keyword: 'bytes',
    schemaType: 'object',
    errors: true,
    validate: function bytes(schema: { maxLength: number }, data: unknown): boolean {
      const self = bytes as unknown as { errors: Partial<ErrorObject>[] };
      if (!(data instanceof Uint8Array)) {
        self.errors = [{ keyword: 'bytes', message: 'must be binary data (MessagePack bin)', params: {} }];
        return false;
      }
      if (data.length > schema.maxLength) {
        self.errors = [{ keyword: 'bytes', message: `must be at most ${schema.maxLength} bytes (got ${data.length})`, params: {} }];
        return false;
      }
      return true;
    },
  });
  return ajv;
}

/** Field path from an ajv instancePath: "/for/1" → "for[1]". */
function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

/** Find the sub-schema at a JSON pointer inside an object schema. */
function schemaAt(root: TSchema, pointer: string): TSchema | undefined {
  let s: TSchema | undefined = root;
  for (const raw of pointer.split('/').slice(1)) {
    if (s === undefined) return undefined;
    const r = s as Record<string, unknown>;
    if (/^\d+$/.test(raw) && r['items'] !== undefined) s = r['items'] as TSchema;
    else s = (r['properties'] as Record<string, TSchema> | undefined)?.[raw];
  }
  return s;
}

/** One sentence for ajv's first error. */
export function formatAjvError(op: string, schema: TSchema, err: ErrorObject): string {
  const where = `(op '${op}')`;
  switch (err.keyword) {
    case 'required': {
      const missing = (err.params as { missingProperty: string }).missingProperty;
      const sub = schemaAt(schema, `${err.instancePath}/${missing}`);
      return `field '${fieldPath(err.instancePath, missing)}' is required: expected ${describeSchema(sub)} ${where}`;
    }
    case 'additionalProperties': {
      const extra = (err.params as { additionalProperty: string }).additionalProperty;
      const parent = schemaAt(schema, err.instancePath) as Record<string, unknown> | undefined;
      const allowed = Object.keys((parent?.['properties'] as object | undefined) ?? {});
      return `field '${fieldPath(err.instancePath, extra)}' is not allowed ${where}; allowed fields: ${allowed.join(', ')}`;
    }
    default: {
      const sub = schemaAt(schema, err.instancePath);
      const field = fieldPath(err.instancePath) || '(request)';
      return `field '${field}' ${err.message ?? 'is invalid'}: expected ${describeSchema(sub)} ${where}`;
    }
  }
}

export type RequestValidator = (msg: unknown) => { op: OpName; id: number } ;

/**
 * What ajv compiles for an op: its request schema with `id` and `op` left
 * unchecked (`{}`), because the validator below has checked both before it
 * calls the op's function (`id` against the same schema, `op` by the lookup
 * that picked the function). Required and allowed fields stay as they are.
 */
function opBody(schema: TSchema): TSchema {
  return { ...schema, properties: { ...(schema['properties'] as object), id: {}, op: {} } } as TSchema;
}

/** The identity of a compiled body: its JSON without `description` (an annotation: ajv generates no code for it). */
function shapeKey(schema: TSchema): string {
  return JSON.stringify(schema, (k, v: unknown) => (k === 'description' ? undefined : v));
}

/**
 * Compile every request schema, at start-up. Ops whose bodies are the same
 * shape (ping and pools, close and dup, ...) share one compiled function;
 * errors are still worded from the op's own schema. The returned function
 * checks a decoded request and returns its op and id, or throws
 * BufferdError (EPROTO when the value is not a map, EINVAL otherwise) whose
 * details carry `id` when known.
 */
export function compileRequestValidator(ajv: Ajv = createAjv()): RequestValidator {
  const compiled = new Map<string, ValidateFunction>();
  const byShape = new Map<string, ValidateFunction>();
  for (const op of OP_NAMES) {
    const body = opBody(REQUESTS[op]);
    const key = shapeKey(body);
    let v = byShape.get(key);
    if (v === undefined) byShape.set(key, (v = ajv.compile(body)));
    compiled.set(op, v);
  }
  const idSchema = REQUESTS.ping.properties.id;
  const validateId = ajv.compile(idSchema);
  const known = OP_NAMES.join(', ');

  return (msg: unknown) => {
    if (!isPlainMap(msg)) {
      throw new BufferdError('EPROTO', 'a request must be a MessagePack map');
    }
    const rawId = msg['id'];
    if (rawId === undefined) {
      throw new BufferdError('EINVAL', "field 'id' is required: expected unsigned integer request id");
    }
    if (!validateId(rawId)) {
      throw new BufferdError('EINVAL', `field 'id' must be an unsigned integer request id (got ${typeof rawId})`);
    }
    const id = rawId as number;
    const op = msg['op'];
    if (op === undefined) {
      throw new BufferdError('EINVAL', `field 'op' is required: expected one of ${known}`, { id });
    }
    if (typeof op !== 'string' || !compiled.has(op)) {
      const shown = typeof op === 'string' ? `'${op.slice(0, 64)}'` : `a ${typeof op}`;
      throw new BufferdError('EINVAL', `field 'op': unknown op ${shown}; expected one of ${known}`, { id });
    }
    const v = compiled.get(op)!;
    if (!v(msg)) {
      const err = v.errors![0]!;
      throw new BufferdError('EINVAL', formatAjvError(op, REQUESTS[op as OpName], err), { id });
    }
    return { op: op as OpName, id };
  };
}
