/**
 * Record ops: start and stop journaling every request, response and event
 * to a file (`bufferd --record` does it from start-up); `bufferd replay`
 * re-runs the journal. Admin only: the daemon writes the file.
 */
import { Type } from '../typebox.js';
import { request } from '../types.js';

export const RECORD_REQUESTS = {
  record: request(
    'record',
    {
      action: Type.Union([Type.Literal('start'), Type.Literal('stop'), Type.Literal('status')], { description: 'one of "start", "stop", "status"' }),
      file: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'the journal file (start only), an absolute path of 1 to 4096 characters' })),
      recordData: Type.Optional(Type.Boolean({ description: 'journal the bytes clients write, not just their digests (start only; default false)' })),
      maxFileBytes: Type.Optional(Type.Integer({ minimum: 65536, maximum: 2 ** 40, description: 'rotate the file past this many bytes, 65536 to 2^40 (default 256 MiB)' })),
      maxFiles: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'files kept with rotation, 1 to 100 (default 4)' })),
    },
    'Start, stop or inspect the journal of every request, response and event (admin only).',
  ),
} as const;

/** The journal in force, or what the one just stopped wrote. */
export interface RecordInfo {
  recording: boolean;
  file: string | null;
  entries: number;
  bytes: number;
  /** Entries dropped because the disk did not keep up (a gap entry marks each run of them). */
  dropped: number;
  gaps: number;
  files: number;
  recordData: boolean;
  /** Why recording stopped on its own (a write error), or null. */
  error: string | null;
}
