/**
 * Where a JSON text stops being JSON: the first syntax error as a line, a
 * column and what was expected, for config and token files. JSON.parse's
 * own messages give a character offset at best (and not for every error,
 * nor in the same words on every Node version), so the text is scanned
 * again here, only once JSON.parse has refused it. Pure; no recursion.
 */

export interface JsonSyntaxError {
  /** UTF-16 offset of the offending character (the text's length at its end). */
  offset: number;
  /** 1-based. */
  line: number;
  /** 1-based, in characters. */
  column: number;
  /** What was expected and what was found. */
  reason: string;
}

type State = 'value' | 'value-or-]' | 'key' | 'key-or-}' | 'colon' | 'after';

const LITERALS = ['true', 'false', 'null'];
const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/** The first syntax error of `text`, or null when it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | null {
  const at = scan(text);
  if (at === null) return null;
  const before = text.slice(0, at.offset);
  const line = before.split('\n').length;
  const column = at.offset - (before.lastIndexOf('\n') + 1) + 1;
  return { offset: at.offset, line, column, reason: at.reason };
}

/**
 * Why JSON.parse refused `text`, for a message: "line 3, column 14: expected
 * ',' or '}' after a property value, found '\"'" (JSON.parse's own message
 * if the scan finds nothing, which would be a bug here).
 */
export function jsonErrorAt(text: string, parseError: Error): string {
  const e = findJsonSyntaxError(text);
  return e === null ? parseError.message : `line ${e.line}, column ${e.column}: ${e.reason}`;
}

function found(text: string, i: number): string {
  if (i >= text.length) return 'the end of the file';
  const c = text[i]!;
  if (c === '\n' || c === '\r') return 'the end of the line';
  return `'${c}'`;
}

function scan(text: string): { offset: number; reason: string } | null {
  const n = text.length;
  const stack: ('[' | '{')[] = [];
  let state: State = 'value';
  let i = 0;
  const fail = (expected: string, offset = i) => ({ offset, reason: `${expected}, found ${found(text, offset)}` });
  if (text.charCodeAt(0) === 0xfeff) return { offset: 0, reason: 'a byte-order mark (BOM) before the JSON: save the file as UTF-8 without one' };
  for (;;) {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
    const c = text[i];
    const top = stack[stack.length - 1];
    switch (state) {
      case 'after':
        if (top === undefined) return i < n ? fail('expected the end of the file after the JSON value') : null;
        if (c === ',') {
          i++;
          state = top === '[' ? 'value' : 'key';
        } else if (c === (top === '[' ? ']' : '}')) {
          i++;
          stack.pop();
        } else {
          return fail(top === '[' ? "expected ',' or ']' after an array element" : "expected ',' or '}' after a property value");
        }
        continue;
      case 'colon':
        if (c !== ':') return fail("expected ':' after the property name");
        i++;
        state = 'value';
        continue;
      case 'key':
      case 'key-or-}':
        if (c === '}' && state === 'key-or-}') {
          i++;
          stack.pop();
          state = 'after';
          continue;
        }
        if (c === '}') return fail('expected a property name after the comma (JSON allows no trailing comma)');
        if (c !== '"') return fail('expected a property name in double quotes');
        {
          const e = readString(text, i);
          if (typeof e !== 'number') return e;
          i = e;
        }
        state = 'colon';
        continue;
      case 'value':
      case 'value-or-]':
        if (c === ']' && state === 'value-or-]') {
          i++;
          stack.pop();
          state = 'after';
          continue;
        }
        if (c === ']' && top === '[') return fail('expected a value after the comma (JSON allows no trailing comma)');
        if (c === '{' || c === '[') {
          stack.push(c);
          i++;
          state = c === '{' ? 'key-or-}' : 'value-or-]';
          continue;
        }
        state = 'after';
        if (c === '"') {
          const e = readString(text, i);
          if (typeof e !== 'number') return e;
          i = e;
          continue;
        }
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
          NUMBER.lastIndex = i;
          const m = NUMBER.exec(text);
          if (m === null) return fail('expected a digit after the minus sign', i + 1);
          const end = i + m[0].length;
          const next = text[end];
          if (m[1] === '0' && next !== undefined && next >= '0' && next <= '9') return { offset: i, reason: 'a number with a leading zero' };
          if (next === '.' || next === 'e' || next === 'E') return fail('expected digits in the number', end + 1);
          i = end;
          continue;
        }
        {
          const word = LITERALS.find((w) => text.startsWith(w, i));
          if (word !== undefined) {
            i += word.length;
            continue;
          }
        }
        if (c === "'") return fail('expected a value (strings take double quotes)');
        return fail('expected a value (a string, number, object, array, true, false or null)');
    }
  }
}

/** Read the string starting at text[i] === '"'; the offset after it, or the error. */
function readString(text: string, start: number): number | { offset: number; reason: string } {
  let i = start + 1;
  for (;;) {
    const c = text[i];
    if (c === undefined) return { offset: start, reason: 'a string that is never closed (missing ")' };
    if (c === '"') return i + 1;
    if (c === '\n' || c === '\r') return { offset: i, reason: 'a line break inside a string (missing "?)' };
    if (c < ' ') return { offset: i, reason: 'a control character inside a string (write it as \\u00XX)' };
    if (c === '\\') {
      const e = text[i + 1];
      if (e === 'u') {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return { offset: i, reason: 'a \\u escape without four hex digits' };
        i += 6;
        continue;
      }
      if (e === undefined || !'"\\/bfnrt'.includes(e)) return { offset: i, reason: `an unknown escape '\\${e ?? ''}' in a string` };
      i += 2;
      continue;
    }
    i++;
  }
}
