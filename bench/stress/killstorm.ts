import type { PartOptions, Verdict } from './common.js';
export async function run(_o: PartOptions): Promise<Verdict> {
  return { pass: false, reason: 'not written yet' };
}
