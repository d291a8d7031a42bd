/**
 * Logging: pino, one JSON object per line on stdout.
 */
import { pino, type Logger, type Level } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export function createLogger(level: LogLevel): Logger {
  return pino({
    level: level as Level | 'silent',
    base: { pid: process.pid, name: 'bufferd' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
