/**
 * client.device: act as a device on buffers registered with it (built-in
 * devices for any holder of a handle; a client driver's own device for the
 * client that attached it). Large transfers are split like client.read/write.
 */
import { chunkedRead, chunkedWrite } from './chunked.js';
import type { Requester } from './requester.js';

export class DeviceApi {
  constructor(private readonly c: Requester) {}

  private get chunk(): number {
    return this.c.session.limits.maxDataBytes;
  }

  /** The device writes bytes into the buffer at `offset`. */
  async write(driver: string, handle: number, offset: number, data: Uint8Array): Promise<{ written: number }> {
    return chunkedWrite(this.chunk, data, (done, part) => this.c.request('device.write', { driver, handle, offset: offset + done, data: part }));
  }

  /** The device reads `length` bytes at `offset`. */
  async read(driver: string, handle: number, offset: number, length: number): Promise<Buffer> {
    return chunkedRead(this.chunk, length, (done, n) => this.c.request('device.read', { driver, handle, offset: offset + done, length: n }));
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
