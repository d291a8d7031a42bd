/**
 * hostile: one sub-check per hostile behaviour, each against its own daemon
 * with the config it needs, each printing its figures:
 *   (a) amplification, (b) trickle, (c) silent sockets — hostile-io.ts
 *   (d) tokens, (e) long ops, (f) unsolicited handles — hostile-load.ts
 * The targets describe the daemon after fixes in progress; a sub-check that
 * misses its target fails the part, with the measured figures in the reason.
 * The limits and thresholds are constants at the top of those files.
 */
import { Part, type PartOptions, type Verdict } from './common.js';
import { amplification, silent, trickle } from './hostile-io.js';
import { longOps, tokens, unsolicited } from './hostile-load.js';

export async function run(opts: PartOptions): Promise<Verdict> {
  const part = new Part('hostile', opts);
  part.log(`seed ${opts.seed} (the sub-checks are deterministic apart from timing)`);
  try {
    await amplification(part);
    await trickle(part);
    await silent(part);
    await tokens(part);
    await longOps(part);
    await unsolicited(part);
  } finally {
    await part.close();
  }
  part.rep.table('hostile');
  return part.verdict();
}
