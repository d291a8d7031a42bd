import t from 'tap';
import { compileRequestValidator, createAjv } from '../../protocol/validate.js';
import { BufferdError } from '../../protocol/errors.js';
import { describeSchema, BinaryData } from '../../protocol/types.js';
import { Type } from '@sinclair/typebox';

const validate = compileRequestValidator();

function err(v: unknown): BufferdError {
  try {
    validate(v);
  } catch (e) {
    return e as BufferdError;
  }
  throw new Error('expected a validation error');
}

t.test('valid requests pass', async (t) => {
  t.same(validate({ id: 1, op: 'ping' }), { op: 'ping', id: 1 });
  t.same(validate({ id: 0, op: 'hello', version: 1, name: 'app-1' }), { op: 'hello', id: 0 });
});

t.test('not a map is EPROTO', async (t) => {
  for (const v of [1, 'x', [1], null, Buffer.from('x')]) t.equal(err(v).code, 'EPROTO');
});

t.test('id problems', async (t) => {
  let e = err({ op: 'ping' });
  t.equal(e.code, 'EINVAL');
  t.match(e.message, "field 'id' is required");
  e = err({ id: -1, op: 'ping' });
  t.match(e.message, "field 'id' must be an unsigned integer");
  e = err({ id: 1.5, op: 'ping' });
  t.equal(e.code, 'EINVAL');
  e = err({ id: 'x', op: 'ping' });
  t.match(e.message, 'got string');
});

t.test('unknown and missing op', async (t) => {
  let e = err({ id: 3, op: 'frobnicate' });
  t.equal(e.code, 'EINVAL');
  t.match(e.message, "unknown op 'frobnicate'");
  t.match(e.message, 'ping');
  t.equal(e.details?.['id'], 3);
  e = err({ id: 3 });
  t.match(e.message, "field 'op' is required");
  e = err({ id: 3, op: 7 });
  t.match(e.message, 'unknown op a number');
});

t.test('missing, extra and wrongly typed fields name the field and the expectation', async (t) => {
  let e = err({ id: 1, op: 'hello' });
  t.match(e.message, "field 'version' is required: expected unsigned integer");
  t.match(e.message, "(op 'hello')");
  e = err({ id: 1, op: 'hello', version: 1, color: 'red' });
  t.match(e.message, "field 'color' is not allowed");
  t.match(e.message, 'allowed fields: id, op, version, name, token');
  e = err({ id: 1, op: 'hello', version: 'one' });
  t.match(e.message, "field 'version' must be integer: expected unsigned integer");
  e = err({ id: 1, op: 'hello', version: 1, name: 'has space' });
  t.match(e.message, "field 'name' must match pattern");
  e = err({ id: 1, op: 'hello', version: 1, name: 'x'.repeat(65) });
  t.match(e.message, 'at most 64 characters');
});

t.test('describeSchema covers the schema kinds used on the wire', async (t) => {
  t.equal(describeSchema(Type.Integer({ minimum: 0, maximum: 10 })), 'unsigned integer ≤ 10');
  t.equal(describeSchema(Type.Integer({ minimum: 1 })), 'integer ≥ 1');
  t.equal(describeSchema(Type.Integer()), 'integer');
  t.equal(describeSchema(Type.Number()), 'number');
  t.equal(describeSchema(Type.Boolean()), 'boolean');
  t.equal(describeSchema(Type.Literal('a')), 'the value "a"');
  t.equal(describeSchema(Type.Union([Type.Literal('a'), Type.Literal('b')])), 'one of "a", "b"');
  t.equal(describeSchema(Type.Union([Type.Literal('a'), Type.Integer()])), 'the value "a" or integer');
  t.equal(describeSchema(Type.Array(Type.String(), { maxItems: 3 })), 'array of string (at most 3 items)');
  t.equal(describeSchema(Type.Object({})), 'map');
  t.equal(describeSchema(BinaryData(10)), 'binary data (MessagePack bin) of at most 10 bytes');
  t.equal(describeSchema(undefined), 'nothing (field not allowed)');
  t.equal(describeSchema(Type.Null()), 'a valid value');
});

t.test('the bytes keyword accepts MessagePack bin only', async (t) => {
  const ajv = createAjv();
  const v = ajv.compile(Type.Object({ data: BinaryData(4) }));
  t.ok(v({ data: Buffer.from([1, 2]) }));
  t.ok(v({ data: new Uint8Array(4) }));
  t.notOk(v({ data: Buffer.alloc(5) }));
  t.match(v.errors?.[0]?.message, 'at most 4 bytes (got 5)');
  t.notOk(v({ data: 'abc' }));
  t.match(v.errors?.[0]?.message, 'must be binary data');
});
