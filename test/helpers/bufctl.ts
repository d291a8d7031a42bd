/**
 * bufctl's run() in this process: for command lines that are refused before
 * any daemon is asked (usage errors, help), for sweeps of many commands and
 * for tests of what a command prints, where a process per command costs
 * about a second of CPU (node start-up, tap's coverage hook, coverage
 * written at each exit) and tests nothing more. The same function the
 * `bufctl` binary calls; tests of the binary itself (exit status, the
 * environment, another user) spawn it (helpers/daemon.ts bufctl()).
 *
 * Calls run one at a time: a session is named `bufctl:<pid>` and this
 * process has one pid, so two at once would collide (EEXIST) where two
 * processes would not. A name still held by the previous run (its close
 * not yet seen by the daemon) is retried; nothing else is.
 */
import { run } from '../../client/bufctl.js';

let queue: Promise<unknown> = Promise.resolve();

type Result = { code: number; stdout: string; stderr: string };

async function once(argv: string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, { out: (s) => (stdout += s), err: (s) => (stderr += s), tty: false });
  return { code, stdout, stderr };
}

const nameTaken = (r: Result) => r.code === 1 && r.stderr.includes(`client name 'bufctl:${process.pid}' is already used`);

export function bufctlHere(socket: string | null, ...args: string[]): Promise<Result> {
  const argv = socket === null ? args : ['--socket', socket, ...args];
  const mine = queue.then(async () => {
    let r = await once(argv);
    for (let i = 0; i < 50 && nameTaken(r); i++) {
      await new Promise((res) => setTimeout(res, 20));
      r = await once(argv);
    }
    return r;
  });
  queue = mine.catch(() => undefined);
  return mine;
}
