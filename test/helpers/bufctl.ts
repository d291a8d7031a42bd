/**
 * bufctl's run() in this process: for command lines that are refused before
 * any daemon is asked (usage errors, help) and for sweeps of many commands,
 * where a process per command costs seconds of start-up (and of coverage
 * written at each exit) and tests nothing more. The same function the
 * `bufctl` binary calls; tests that need the binary itself spawn it.
 */
import { run } from '../../client/bufctl.js';

export async function bufctlHere(socket: string | null, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const argv = socket === null ? args : ['--socket', socket, ...args];
  const code = await run(argv, { out: (s) => (stdout += s), err: (s) => (stderr += s), tty: false });
  return { code, stdout, stderr };
}
