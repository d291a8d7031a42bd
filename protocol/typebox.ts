/**
 * TypeBox's `Type` builder, loaded from the package's CommonJS build.
 *
 * `import { Type } from '@sinclair/typebox'` resolves (the "import"
 * condition of its package.json exports) to the ES module build: ~200
 * modules, each resolved, fetched and linked by the ESM loader one by one.
 * The CommonJS build is the same code loaded by require(): as cheap without
 * loader hooks, and several times cheaper with them (a coverage or
 * TypeScript loader sees each ES module, not a require). Every process
 * that speaks the protocol (the daemon, bufctl, clients) loads it at start.
 * The schemas it builds are plain JSON Schema objects; TypeBox marks them
 * with Symbol.for() keys, the same in either build.
 * See https://nodejs.org/api/module.html#modulecreaterequirefilename
 */
import { createRequire } from 'node:module';
import type * as TypeBox from '@sinclair/typebox';

export type { Static, TSchema, TObject, TProperties, TLiteral, TUnion } from '@sinclair/typebox';

const require = createRequire(import.meta.url);

export const Type: typeof TypeBox.Type = (require('@sinclair/typebox') as typeof TypeBox).Type;
