#!/usr/bin/env node
/**
 * bufferd: the daemon's command line.
 *
 *   bufferd [--socket PATH] [--config FILE] [--log-level LEVEL] [--log-format FORMAT] [--record FILE [--record-data]] [--help] [--version]
 *   bufferd replay FILE [--config OTHER] [--speed N|max] [--json]   (server/replay-cli.ts)
 */
import { parseArgs } from 'node:util';
import { resolveSocketPath } from '../protocol/paths.js';
import { loadConfig, type Config } from './config/config.js';
import { createContext } from './server/context.js';
import { createLogger, isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS, type LogLevel } from './lib/log.js';
import { Server, StartupError } from './server/server.js';
import { VERSION } from './lib/version.js';
import { Notifier } from './server/notify.js';
import { socketActivation } from './server/activation.js';
import type { HttpServer } from './server/http.js';
import { doReload, ReloadRejected } from './ops/events.js';
import { startJournal } from './ops/record.js';

const USAGE = `Usage: bufferd [options]
       bufferd replay FILE [--config OTHER] [--speed N|max] [--json]

Runs the bufferd buffer broker in the foreground, serving clients on a Unix socket.

Options:
  --socket PATH       socket to listen on (default: $BUFFERD_SOCKET, else
                      $XDG_RUNTIME_DIR/bufferd.sock, else /tmp/bufferd-<uid>.sock)
  --config FILE       JSON config file (default: the embedded default machine)
  --log-level LEVEL   ${LOG_LEVELS.join(', ')} (default: $LOG_LEVEL or info)
  --log-format FMT    ${LOG_FORMATS.join(', ')}: JSON lines, or readable lines;
                      auto (the default) is readable on a terminal, JSON otherwise
  --http HOST:PORT    serve the dashboard and a WebSocket event stream on a
                      loopback address (e.g. 127.0.0.1:8080; port 0 picks one)
  --record FILE       journal every request, response and event to FILE
                      (bufferd replay FILE re-runs it; see PROTOCOL.md)
  --record-data       journal the bytes clients write, not just digests
  -h, --help          show this help
  -v, --version       print the version

Signals: SIGTERM and SIGINT stop the daemon gracefully; SIGHUP reloads the config.
systemd: socket activation (LISTEN_FDS) and sd_notify readiness/watchdog (NOTIFY_SOCKET).
`;

function die(msg: string, code: number): never {
  process.stderr.write(`bufferd: ${msg}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'replay') {
    const { replayMain } = await import('./server/replay-cli.js');
    process.exitCode = await replayMain(argv.slice(1));
    return;
  }
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        http: { type: 'string' },
        record: { type: 'string' },
        'record-data': { type: 'boolean' },
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
  const format = o['log-format'] ?? 'auto';
  if (!isLogFormat(format)) die(`unknown log format '${format}' (expected one of ${LOG_FORMATS.join(', ')})`, 2);

  let config: Config;
  try {
    config = loadConfig(o.config);
  } catch (e) {
    die((e as Error).message, 1);
  }
  const activation = socketActivation(process.env);
  let socketPath = resolveSocketPath(o.socket);
  const log = createLogger(level as LogLevel, format);
  const ctx = createContext(config, log, socketPath);
  const server = new Server(ctx);
  const notifier = new Notifier(log);
  let http: HttpServer | null = null;
  try {
    if (activation !== null) socketPath = await server.listenFd(activation.fd, o.socket ?? process.env['BUFFERD_SOCKET'] ?? null);
    else await server.listen(socketPath);
    const httpSpec = o.http ?? config.server.http;
    // the dashboard (and ws, its WebSocket server) is loaded only when it is on
    if (httpSpec !== null) http = await (await import('./server/http.js')).startHttp(ctx, httpSpec);
  } catch (e) {
    // the Unix socket may be up already: take it (and the cookie) down again
    await server.shutdown('start-up failed').catch(() => {});
    if (e instanceof StartupError) die(e.message, 1);
    throw e;
  }
  if (o.record !== undefined) {
    try {
      startJournal(ctx, { file: o.record, recordData: o['record-data'] === true });
    } catch (e) {
      await server.shutdown('start-up failed').catch(() => {});
      die(`cannot record to ${o.record}: ${(e as Error).message}`, 1);
    }
  } else if (o['record-data'] === true) die(`--record-data needs --record FILE\n\n${USAGE}`, 2);
  log.info(
    { socket: socketPath, activated: activation !== null, config: config.source, version: VERSION, http: http?.url ?? null, notify: notifier.via },
    'listening',
  );
  notifier.ready(`serving on ${socketPath}`);
  notifier.startWatchdog();

  process.on('SIGHUP', () => {
    notifier.reloading();
    try {
      doReload(ctx);
    } catch (e) {
      // a rejected file was logged by doReload already
      if (!(e instanceof ReloadRejected)) log.error({ err: (e as Error).message }, 'SIGHUP reload failed; the old configuration stays');
    }
    notifier.ready('reloaded');
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    notifier.stopping();
    Promise.all([server.shutdown(signal), http?.close()])
      .then(() => notifier.close())
      .then(
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
