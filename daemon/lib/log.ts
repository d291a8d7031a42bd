/**
 * Logging: pino. JSON, one object per line on stdout, unless stdout is a
 * terminal: then pino-pretty's readable lines (same records, same levels),
 * written synchronously on the daemon's own thread (no transport worker).
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type Level, type DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';

// pino-pretty (and its ~17 modules) is loaded only when a logger is readable:
// a daemon logging JSON (a pipe, a file, the journal) never pays for it. It
// is CommonJS, so require() loads it synchronously and createLogger stays
// synchronous (https://nodejs.org/api/module.html#modulecreaterequirefilename).
const require = createRequire(import.meta.url);

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export function isLogFormat(s: string): s is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(s);
}

/** `auto`: pretty on a terminal, JSON otherwise (a pipe, a file, the journal). */
export function createLogger(level: LogLevel, format: LogFormat = 'auto', out: NodeJS.WriteStream = process.stdout): Logger {
  const opts = {
    level: level as Level | 'silent',
    base: { pid: process.pid, name: 'bufferd' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const readable = format === 'pretty' || (format === 'auto' && out.isTTY === true);
  if (!readable) return out === process.stdout ? pino(opts) : pino(opts, out);
  const pretty = require('pino-pretty') as typeof PinoPretty;
  const stream = pretty({
    destination: out,
    sync: true,
    colorize: out.isTTY === true && process.env['NO_COLOR'] === undefined,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name',
  }) as DestinationStream;
  return pino(opts, stream);
}
