/**
 * The SHA-256 digest (base64) kept in place of a secret (tokens, the admin
 * cookie): the daemon never holds an importable secret in memory.
 */
import { createHash } from 'node:crypto';

export const digest = (s: string): string => createHash('sha256').update(s).digest('base64');
