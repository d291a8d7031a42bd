/**
 * How the request validators are compiled (protocol/validate.ts): without
 * ajv's meta-schema check, each op's body with `id` and `op` left to the
 * checks before it, ops of the same shape sharing one function. These tests
 * hold that to the plain way — every op's full schema compiled on its own —
 * verdict for verdict and error for error, and run the meta-schema check
 * the daemon no longer runs at start-up.
 */
import t from 'tap';
import { Ajv, type ValidateFunction } from 'ajv';
import type { TSchema } from '@sinclair/typebox';
import { compileRequestValidator, createAjv, formatAjvError } from '../../protocol/validate.js';
import { REQUESTS, OP_NAMES, type OpName } from '../../protocol/requests.js';
import { BufferdError } from '../../protocol/errors.js';
import { ConfigSchema, TokenFileSchema } from '../../daemon/config/schema.js';

type S = Record<string, unknown>;

t.test('every schema the daemon compiles is a valid draft-07 schema (the check start-up skips)', async (t) => {
  const checker = new Ajv({ strict: true, strictTypes: false });
  checker.addKeyword({ keyword: 'bytes', schemaType: 'object' });
  const all: [string, unknown][] = [...OP_NAMES.map((op) => [`request ${op}`, REQUESTS[op]] as [string, unknown]), ['config', ConfigSchema], ['token file', TokenFileSchema]];
  for (const [name, schema] of all) t.ok(checker.validateSchema(schema as object), `${name}: ${checker.errorsText(checker.errors)}`);
  // and the check can fail: a limit of the wrong type
  t.notOk(checker.validateSchema({ type: 'integer', minimum: '0' }));
  t.notOk(createAjv().opts.validateSchema, 'the daemon does not run it');
});

/** Values that may satisfy a schema (the first the reference accepts is used). */
function candidates(s: S | undefined, depth = 0): unknown[] {
  if (s === undefined || depth > 6) return [];
  if (s['const'] !== undefined) return [s['const']];
  if (Array.isArray(s['anyOf'])) return (s['anyOf'] as S[]).flatMap((a) => candidates(a, depth + 1));
  if (s['bytes'] !== undefined) return [Buffer.from([1, 2, 3])];
  switch (s['type']) {
    case 'integer':
    case 'number':
      return [(s['minimum'] as number | undefined) ?? 0, 1, 4096];
    case 'boolean':
      return [true];
    case 'null':
      return [null];
    case 'string':
      return ['a', 'x1', '4K', 'read', 'A'.repeat(22), 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '/tmp/x'];
    case 'array': {
      const items = candidates(s['items'] as S | undefined, depth + 1);
      return [...items.slice(0, 3).map((i) => [i]), []];
    }
    case 'object': {
      const props = (s['properties'] ?? {}) as Record<string, S>;
      const out: S = {};
      for (const k of (s['required'] ?? []) as string[]) {
        const c = candidates(props[k], depth + 1);
        if (c.length > 0) out[k] = c[0];
      }
      return [out, {}];
    }
    default:
      return [];
  }
}

const PROBES: unknown[] = [0, 1, -1, 1.5, 2 ** 60, 'x', '', 'a'.repeat(70), '4K', true, null, [], [1], ['x'], {}, { a: 1 }, Buffer.from('ab'), Buffer.alloc(70_000)];

/** What the daemon answers for a request: its op and id, or the error's code and message. */
function answer(v: (m: unknown) => unknown, msg: unknown): string {
  try {
    return JSON.stringify(v(msg));
  } catch (e) {
    if (!(e instanceof BufferdError)) throw e;
    return `${e.code} ${e.message} ${JSON.stringify(e.details ?? {})}`;
  }
}

t.test('each op answers exactly as its full schema compiled alone would', async (t) => {
  const validate = compileRequestValidator();
  const ref = createAjv();
  const full = new Map<OpName, ValidateFunction>(OP_NAMES.map((op) => [op, ref.compile(REQUESTS[op])]));
  // the reference: the op's own full schema, its first error worded the same way
  const reference = (msg: unknown) => {
    const m = msg as { id: number; op: OpName };
    const v = full.get(m.op)!;
    if (!v(msg)) throw new BufferdError('EINVAL', formatAjvError(m.op, REQUESTS[m.op], v.errors![0]!), { id: m.id });
    return { op: m.op, id: m.id };
  };
  const differ: { msg: string; got: string; want: string }[] = [];
  let compared = 0;
  let accepted = 0;
  for (const op of OP_NAMES) {
    const schema = REQUESTS[op] as unknown as S;
    const props = schema['properties'] as Record<string, S>;
    // a base request: every required field at the first value the field's schema accepts
    const base: S = { id: 7, op };
    for (const k of (schema['required'] as string[]).filter((k) => k !== 'id' && k !== 'op')) {
      const fieldOk = ref.compile(props[k] as TSchema);
      const good = candidates(props[k]).find((c) => fieldOk(c));
      if (good !== undefined) base[k] = good;
    }
    const msgs: S[] = [base, { ...base, zz: 1 }];
    for (const k of Object.keys(props).filter((k) => k !== 'id' && k !== 'op')) {
      const { [k]: _gone, ...without } = base;
      msgs.push(without);
      for (const p of [...PROBES, ...candidates(props[k])]) msgs.push({ ...base, [k]: p });
    }
    for (const msg of msgs) {
      const got = answer(validate, msg);
      const want = answer(reference, msg);
      if (got !== want) differ.push({ msg: JSON.stringify(msg).slice(0, 200), got, want });
      compared++;
      if (!got.startsWith('EINVAL')) accepted++;
    }
  }
  t.same(differ, [], 'no request answered differently');
  // enough of both outcomes to mean something
  t.ok(compared > 1000, `${compared} requests compared`);
  t.ok(accepted > 200, `${accepted} of them valid`);
});

t.test('ops that share a compiled shape still word errors from their own schema', async (t) => {
  const validate = compileRequestValidator();
  // close and dup have the same body (a handle), ping and pools none
  const e1 = answer(validate, { id: 1, op: 'close', handle: 'x' });
  const e2 = answer(validate, { id: 1, op: 'dup', handle: 'x' });
  t.match(e1, "(op 'close')");
  t.match(e2, "(op 'dup')");
  t.match(answer(validate, { id: 2, op: 'pools', extra: 1 }), "field 'extra' is not allowed (op 'pools'); allowed fields: id, op");
  t.match(answer(validate, { id: 2, op: 'ping', extra: 1 }), "(op 'ping')");
  // id and op are still checked, before the op's function
  t.match(answer(validate, { id: -1, op: 'close', handle: 1 }), "field 'id' must be an unsigned integer");
  t.match(answer(validate, { id: 1, op: 'clos', handle: 1 }), "unknown op 'clos'");
});

t.test("the protocol's schemas come from TypeBox's CommonJS build and are TypeBox schemas to either build", async (t) => {
  // protocol/typebox.ts is the one place that loads TypeBox's builder
  const { readdirSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const root = join(import.meta.dirname, '..', '..');
  const valueImports: string[] = [];
  for (const dir of ['protocol', 'protocol/ops', 'daemon/config', 'client']) {
    for (const f of readdirSync(join(root, dir)).filter((f) => f.endsWith('.ts') && f !== 'typebox.ts')) {
      const src = readFileSync(join(root, dir, f), 'utf8');
      if (/^import (?!type )[^;]*from '@sinclair\/typebox/m.test(src)) valueImports.push(`${dir}/${f}`);
    }
  }
  t.same(valueImports, [], 'no other module loads the ES module build');
  const esm = await import('@sinclair/typebox');
  t.ok(esm.KindGuard.IsObject(REQUESTS.ping), 'the ES module build recognises a request schema');
  t.ok(esm.KindGuard.IsUnion(ConfigSchema.properties.pools.items.properties.cache));
});
