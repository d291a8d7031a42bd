/**
 * A raw-socket client: frames and bytes by hand, for protocol tests.
 */
import { createConnection, type Socket } from 'node:net';
import { encodeFrame, FrameReader } from '../../protocol/frame.js';
import { decodeValue } from '../../protocol/codec.js';

export type Msg = Record<string, unknown>;

export class RawClient {
  readonly sock: Socket;
  private readonly reader = new FrameReader(1 << 30);
  private readonly queue: Msg[] = [];
  private readonly waiters: ((m: Msg | null) => void)[] = [];
  readonly closed: Promise<void>;
  private isClosed = false;

  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (c: Buffer) => {
      for (const f of this.reader.push(c)) this.deliver(decodeValue(f) as Msg);
    });
    sock.on('error', () => {});
    this.closed = new Promise((r) =>
      sock.on('close', () => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w(null);
        r();
      }),
    );
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection({ path });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connect and say hello. */
  static async open(path: string, name?: string): Promise<RawClient> {
    const c = await RawClient.connect(path);
    const r = await c.call({ id: 0, op: 'hello', version: 1, ...(name !== undefined ? { name } : {}) });
    if (r['error'] !== undefined) throw new Error(`hello failed: ${JSON.stringify(r['error'])}`);
    return c;
  }

  private deliver(m: Msg): void {
    const w = this.waiters.shift();
    if (w !== undefined) w(m);
    else this.queue.push(m);
  }

  send(v: unknown): void {
    this.sock.write(encodeFrame(v));
  }

  sendBytes(b: Buffer | Uint8Array): void {
    this.sock.write(b);
  }

  /** Next message, or null when the connection closed first. */
  next(timeoutMs = 5000): Promise<Msg | null> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  }

  async call(v: unknown): Promise<Msg> {
    this.send(v);
    const m = await this.next();
    if (m === null) throw new Error('connection closed before answer');
    return m;
  }

  end(): Promise<void> {
    this.sock.end();
    return this.closed;
  }
}
