/**
 * A config file with a JSON syntax error stops the daemon before it
 * listens, and the message names the file, the line and the column; the
 * same for a reload (bufctl reload exits 1 and the running config stays).
 */
import t from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DAEMON, runNode, startDaemon, tempDir } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';

// a hand-edited file: a trailing comma on line 4
const BAD = `{
  "server": {
    "socketMode": "0660",
    "maxFrameBytes": "4M",
  }
}
`;

t.test('bufferd --config with a JSON syntax error: file, line and column, never listens', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'x.sock');
  const cfg = join(dir, 'bufferd.json');
  writeFileSync(cfg, BAD);
  const r = await runNode([DAEMON, '--socket', sock, '--config', cfg]);
  t.equal(r.code, 1);
  t.match(r.stderr, `config file ${cfg} is not valid JSON: line 5, column 3: expected a property name after the comma (JSON allows no trailing comma), found '}'`);
  t.notOk(existsSync(sock), 'never listened');
});

t.test('bufctl reload of a file with a syntax error: rejected with the line and column', async (t) => {
  const d = await startDaemon(t, { config: DEFAULT_MACHINE });
  writeFileSync(join(d.dir, 'config.json'), '{"pools": [\n  {"name": "a"}\n  {"name": "b"}\n]}');
  const r = await bufctlHere(d.socket, 'reload');
  t.equal(r.code, 1);
  t.match(r.stderr, /EINVAL: reload rejected.*config\.json is not valid JSON: line 3, column 3: expected ',' or '\]' after an array element, found '\{'/);
  const st = await bufctlHere(d.socket, 'pools', '--json');
  t.equal(st.code, 0, 'the daemon still serves with its old config');
});
