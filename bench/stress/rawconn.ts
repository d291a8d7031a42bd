/**
 * A raw socket to the daemon for the stress harness: bytes out exactly as
 * given, every frame in decoded and kept.
 */
import { createConnection, type Socket } from 'node:net';
import { decodeValue } from '../../protocol/codec.js';
import { FrameReader } from '../../protocol/frame.js';

export type Msg = Record<string, unknown>;

/** A raw socket to the daemon: bytes out as given, every frame in decoded and kept. */
export class RawConn {
  readonly msgs: Msg[] = [];
  /** Messages carrying `id` (responses and connection errors), as opposed to events. */
  replies = 0;
  /** Frames from the daemon that did not decode. */
  undecodable = 0;
  closedAt: number | null = null;
  private readonly reader = new FrameReader(1 << 30);
  private readonly waiters = new Set<() => void>();

  private constructor(readonly sock: Socket) {
    sock.on('data', (c: Buffer) => {
      let frames: Buffer[] = [];
      try {
        frames = this.reader.push(c);
      } catch {
        this.undecodable++;
      }
      for (const f of frames) {
        try {
          const m = decodeValue(f) as Msg;
          this.msgs.push(m);
          if (m !== null && typeof m === 'object' && 'id' in m) this.replies++;
        } catch {
          this.undecodable++;
        }
      }
      this.wake();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closedAt = Date.now();
      this.wake();
    });
  }

  static open(path: string, timeoutMs = 5000): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ path });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timed out'));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new RawConn(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  get closed(): boolean {
    return this.closedAt !== null;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  write(b: Uint8Array): void {
    if (!this.sock.destroyed) this.sock.write(b);
  }

  /** Resolve true once pred() holds (checked on every message and on close), false after timeoutMs. */
  waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(t);
        this.waiters.delete(check);
        resolve(v);
      };
      const check = () => {
        if (pred()) done(true);
      };
      const t = setTimeout(() => done(pred()), timeoutMs);
      this.waiters.add(check);
    });
  }

  /** Error codes received, in order. */
  codes(): string[] {
    return this.msgs.map((m) => (m['error'] as { code?: string } | undefined)?.code).filter((c): c is string => typeof c === 'string');
  }

  destroy(): void {
    this.sock.destroy();
  }
}
