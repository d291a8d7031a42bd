/**
 * client.device: act as a device on buffers registered with it (built-in
 * devices for any holder of a handle; a client driver's own device for the
 * client that attached it). Large transfers are split like client.read/write.
 */
import type { BufferClient } from './client.js';

export class DeviceApi {
  constructor(private readonly c: BufferClient) {}

  private get chunk(): number {
    return this.c.session.limits.maxDataBytes;
  }

  /** The device writes bytes into the buffer at `offset`. */
  async write(driver: string, handle: number, offset: number, data: Uint8Array): Promise<{ written: number }> {
    const parts: Promise<{ written: number }>[] = [];
    let done = 0;
    do {
      const n = Math.min(this.chunk, data.length - done);
      parts.push(this.c.request('device.write', { driver, handle, offset: offset + done, data: data.subarray(done, done + n) }));
      done += n;
    } while (done < data.length);
    const r = await Promise.all(parts);
    return { written: r.reduce((a, x) => a + x.written, 0) };
  }

  /** The device reads `length` bytes at `offset`. */
  async read(driver: string, handle: number, offset: number, length: number): Promise<Buffer> {
    const parts: Promise<{ data: Uint8Array }>[] = [];
    let done = 0;
    do {
      const n = Math.min(this.chunk, length - done);
      parts.push(this.c.request('device.read', { driver, handle, offset: offset + done, length: n }));
      done += n;
    } while (done < length);
    return Buffer.concat((await Promise.all(parts)).map((x) => x.data));
  }

  /** The device fills `length` bytes at `offset` with `value`. */
  fill(driver: string, handle: number, offset: number, length: number, value: number): Promise<{ filled: number }> {
    return this.c.request('device.fill', { driver, handle, offset, length, value });
  }

  /** The device copies buffer `src` into `dst` (as much as fits). */
  copy(driver: string, src: number, dst: number): Promise<{ copied: number }> {
    return this.c.request('device.copy', { driver, src, dst });
  }
}
