#!/usr/bin/env node
/**
 * bufferd: the daemon's command line.
 *
 *   bufferd [--socket PATH] [--config FILE] [--log-level LEVEL] [--help] [--version]
 */
import { parseArgs } from 'node:util';
import { resolveSocketPath } from '../protocol/paths.js';
import { loadConfig, type Config } from './config.js';
import { createContext } from './context.js';
import { createLogger, isLogLevel, LOG_LEVELS, type LogLevel } from './log.js';
import { Server, StartupError } from './server.js';
import { VERSION } from './version.js';

const USAGE = `Usage: bufferd [options]

Runs the bufferd buffer broker in the foreground, serving clients on a Unix socket.

Options:
  --socket PATH       socket to listen on (default: $BUFFERD_SOCKET, else
                      $XDG_RUNTIME_DIR/bufferd.sock, else /tmp/bufferd-<uid>.sock)
  --config FILE       JSON config file (default: the embedded default machine)
  --log-level LEVEL   ${LOG_LEVELS.join(', ')} (default: $LOG_LEVEL or info)
  -h, --help          show this help
  -v, --version       print the version

Signals: SIGTERM and SIGINT stop the daemon gracefully.
`;

function die(msg: string, code: number): never {
  process.stderr.write(`bufferd: ${msg}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<void> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (e) {
    die(`${(e as Error).message}\n\n${USAGE}`, 2);
  }
  const o = args.values;
  if (o.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  if (o.version === true) {
    process.stdout.write(`bufferd ${VERSION}\n`);
    return;
  }
  const level = o['log-level'] ?? process.env['LOG_LEVEL'] ?? 'info';
  if (!isLogLevel(level)) die(`unknown log level '${level}' (expected one of ${LOG_LEVELS.join(', ')})`, 2);

  let config: Config;
  try {
    config = loadConfig(o.config);
  } catch (e) {
    die((e as Error).message, 1);
  }
  const socketPath = resolveSocketPath(o.socket);
  const log = createLogger(level as LogLevel);
  const ctx = createContext(config, log, socketPath);
  const server = new Server(ctx);
  try {
    await server.listen(socketPath);
  } catch (e) {
    if (e instanceof StartupError) die(e.message, 1);
    throw e;
  }
  log.info({ socket: socketPath, config: config.source, version: VERSION }, 'listening');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    server.shutdown(signal).then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`bufferd: fatal: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
