/**
 * The JSON syntax locator behind config and token file errors: the line,
 * column and reason of common mistakes, and agreement with JSON.parse on
 * what is valid (random documents and random corruptions of them).
 */
import t from 'tap';
import fc from 'fast-check';
import { findJsonSyntaxError, jsonErrorAt } from '../../daemon/lib/json-syntax.js';

const where = (text: string) => {
  const e = findJsonSyntaxError(text);
  return e === null ? null : [e.line, e.column, e.reason];
};

t.test('common mistakes: line, column and what was expected', async (t) => {
  const cases: [string, number, number, RegExp][] = [
    ['{\n  "pools": [\n    {"name": "a"},\n  ]\n}', 4, 3, /expected a value after the comma \(JSON allows no trailing comma\), found '\]'/],
    ['{\n  "server": {"http": "127.0.0.1:7474",}\n}', 2, 39, /no trailing comma.*found '}'/],
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, /expected ',' or '}' after a property value, found '"'/],
    ['{ nope', 1, 3, /expected a property name in double quotes, found 'n'/],
    ["{'a': 1}", 1, 2, /property name in double quotes, found '''/],
    ['{"a": tru}', 1, 7, /expected a value .*found 't'/],
    ['{"a": 1', 1, 8, /expected ',' or '}' after a property value, found the end of the file/],
    ['', 1, 1, /expected a value.*found the end of the file/],
    ['{"a": [1 2]}', 1, 10, /expected ',' or '\]' after an array element, found '2'/],
    ['{"a": "x\ny"}', 1, 9, /a line break inside a string/],
    ['{"a": 01}', 1, 7, /leading zero/],
    ['{"a": 1.}', 1, 9, /expected digits in the number, found '}'/],
    ['{"a": -x}', 1, 8, /digit after the minus sign, found 'x'/],
    ['{"a": "\\q"}', 1, 8, /unknown escape '\\q'/],
    ['{"a": "\\u12"}', 1, 8, /\\u escape/],
    ['{"a": 1} x', 1, 10, /expected the end of the file after the JSON value, found 'x'/],
    ['{"a" 1}', 1, 6, /expected ':' after the property name, found '1'/],
    ['{"a": "never closed}', 1, 7, /never closed/],
    ['\ufeff{}', 1, 1, /byte-order mark/],
    ['{"a":\r\n  [1,\r\n  }', 3, 3, /expected a value .*found '}'/],
  ];
  for (const [text, line, column, reason] of cases) {
    const w = where(text);
    t.ok(w !== null, JSON.stringify(text));
    if (w === null) continue;
    t.same(w.slice(0, 2), [line, column], `${JSON.stringify(text)}: ${String(w[2])}`);
    t.match(w[2], reason, JSON.stringify(text));
    t.throws(() => JSON.parse(text), `JSON.parse refuses ${JSON.stringify(text)} too`);
  }
  for (const ok of ['{}', '[]', '0', '-1.5e+3', '"\\u00e9\\n"', 'true', ' null ', '{"a": [1, {"b": [false, "x"]}], "c": -0.25}']) {
    t.equal(findJsonSyntaxError(ok), null, ok);
  }
  t.equal(jsonErrorAt('{"a" 1}', new Error('x')), "line 1, column 6: expected ':' after the property name, found '1'");
});

t.test('deeply nested input does not overflow the stack', async (t) => {
  const deep = '['.repeat(200_000) + ']'.repeat(199_999);
  t.match(where(deep), [1, 400_000, /expected ',' or '\]' after an array element, found the end of the file/]);
});

t.test('agrees with JSON.parse on random documents and corruptions of them', async (t) => {
  const doc = fc.tuple(fc.jsonValue({ maxDepth: 4 }), fc.boolean()).map(([v, pretty]) => JSON.stringify(v, null, pretty ? 2 : 0) ?? 'null');
  t.doesNotThrow(() => fc.assert(
    fc.property(doc, fc.nat(), fc.constantFrom('', ',', '}', ']', '"', ':', '\n', 'x', '0', '-', '.', '\\', ' '), fc.boolean(), (text, pos, ch, del) => {
      if (findJsonSyntaxError(text) !== null) throw new Error(`valid JSON refused: ${text}`);
      const p = pos % (text.length + 1);
      const broken = del ? text.slice(0, p) + text.slice(p + 1) : text.slice(0, p) + ch + text.slice(p);
      let valid = true;
      try {
        JSON.parse(broken);
      } catch {
        valid = false;
      }
      const e = findJsonSyntaxError(broken);
      if (valid !== (e === null)) throw new Error(`disagree on ${JSON.stringify(broken)}: JSON.parse ${valid ? 'accepts' : 'refuses'}, scan says ${JSON.stringify(e)}`);
      if (e !== null && (e.offset < 0 || e.offset > broken.length)) throw new Error(`offset out of range: ${e.offset}`);
    }),
    { numRuns: 3000 },
  ), '3000 documents and corruptions: every property holds');
});
