/**
 * PROTOCOL.md and README.md stay in step with the code: every op, every
 * error code, every event is documented, and the example frames are what
 * the encoder really produces.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OP_NAMES } from '../../protocol/requests.js';
import { ERROR_CODES, ERROR_CODE_NAMES } from '../../protocol/errors.js';
import { encodeFrame } from '../../protocol/frame.js';
import { ROOT } from '../helpers/daemon.js';

const protocol = readFileSync(join(ROOT, 'PROTOCOL.md'), 'utf8');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

t.test('every op has a section in PROTOCOL.md', async (t) => {
  const headings = protocol.split('\n').filter((l) => l.startsWith('### '));
  for (const op of OP_NAMES) t.ok(headings.some((h) => h.includes(`\`${op}\``)), op);
});

t.test('every error code is in the PROTOCOL.md table with its description', async (t) => {
  for (const code of ERROR_CODE_NAMES) {
    t.match(protocol, `| \`${code}\` |`, code);
    const row = `| \`${code}\` | ${ERROR_CODES[code]} |`;
    t.ok(protocol.includes(row), `${code}: PROTOCOL.md row matches protocol/errors.ts`);
  }
});

t.test('the example frames are exactly what the encoder produces', async (t) => {
  const examples: unknown[] = [
    { id: 1, op: 'hello', version: 1, name: 'demo' },
    { id: 2, op: 'ping' },
    { id: 2, error: { code: 'EINVAL', message: 'x' } },
    { event: 'shutdown', reason: 'SIGTERM' },
    { addr: 0x2_8000_0000 },
    {
      id: 1,
      result: {
        clientId: 7,
        name: 'demo',
        protocolVersion: 1,
        server: { name: 'bufferd', version: '0.1.0', pid: 4242 },
        limits: { maxFrameBytes: 4194304, maxDataBytes: 4193280, maxHandles: 1024, reservedHandles: 16, maxTokens: 4096 },
        capabilities: ['alloc:uncached', 'alloc:writecombine', 'driver'],
        principal: 'anonymous',
        maxBytes: null,
        accept: 'none',
        fdSocket: '/run/user/1000/.bufferd.sock.fd',
        peer: { pid: 4300, uid: 1000, gid: 1000 },
      },
    },
  ];
  // strip the annotation column of the annotated example, keep the hex
  const hexOnly = protocol
    .split('\n')
    .map((l) => l.replace(/\s{2,}(length|map|"[a-zA-Z]+").*$/, ''))
    .join(' ')
    .replace(/\s+/g, ' ');
  for (const v of examples) {
    const hex = encodeFrame(v).toString('hex').match(/../g)!.join(' ');
    t.ok(hexOnly.includes(hex), JSON.stringify(v).slice(0, 60));
  }
});

t.test('README starts with the set-up', async (t) => {
  const setup = readme.indexOf('npm install');
  t.ok(setup > 0 && setup < 2500, 'npm install near the top');
  t.match(readme, 'npm start');
  t.match(readme, 'npm test');
  t.match(readme, 'npx bufctl status');
});

t.test('README lists every bufctl command, every config section and every event topic', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const help = spawnSync(process.execPath, [join(ROOT, 'dist', 'client', 'bufctl.js'), '--help'], { encoding: 'utf8' }).stdout;
  const commands = [...help.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!);
  t.ok(commands.length >= 12, `bufctl --help lists ${commands.length} commands`);
  for (const c of commands) t.match(readme, `bufctl [--socket PATH] ${c}`, `README shows bufctl ${c}`);
  const { ConfigSchema } = await import('../../daemon/config/schema.js');
  for (const section of Object.keys(ConfigSchema.properties).filter((k) => k !== '$schema')) {
    t.ok(readme.includes(`| \`${section}`), `README's config table has ${section}`);
  }
  const { TOPIC_NAMES } = await import('../../protocol/ops/events.js');
  for (const topic of TOPIC_NAMES) t.match(protocol, `| \`${topic}\` |`.replace('| `status` |', '`status`'), `PROTOCOL.md documents topic ${topic}`);
});
