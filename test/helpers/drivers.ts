/**
 * Shared by the driver end-to-end tests: a device-capable client process
 * (test/fixtures/device-client.mjs), connections from the test process, and
 * small lookups on drivers() / status().
 */
import { spawnFixture, type Proc } from './procs.js';
import { connect, type BufferClient, type ConnectOptions } from '../../client/index.js';
import type { DriverStatus } from '../../protocol/status.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** A device-client.mjs process connected as `name` (anonymous unless env says otherwise). */
export async function spawnDeviceClient(t: Teardown, socket: string, name: string, env: Record<string, string> = {}): Promise<Proc & { id: number }> {
  const p = await spawnFixture(t, 'device-client.mjs', [socket, name], { env });
  return Object.assign(p, { id: p.ready['clientId'] as number });
}

/** A connection from the test process, disconnected at teardown (anonymous by default: no cookie). */
export async function client(t: Teardown, socket: string, name: string, opts: Partial<ConnectOptions> = {}): Promise<BufferClient> {
  // test clients play receivers: they accept handles from anyone unless told otherwise
  const c = await connect({ socket, name, useCookie: false, accept: 'any', ...opts });
  t.teardown(() => c.disconnect());
  return c;
}

/** One driver's status row. */
export async function driverStatus(c: BufferClient, name: string): Promise<DriverStatus> {
  const d = (await c.drivers()).drivers.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no driver '${name}' in drivers()`);
  return d;
}

/** The next event of a kind on a connection from the test process. */
export function nextEvent<T>(c: BufferClient, name: 'registration' | 'unregistration' | 'leak' | 'handle' | 'violation', timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off(name, on as never);
      reject(new Error(`no '${name}' event in ${timeoutMs} ms`));
    }, timeoutMs);
    function on(ev: T) {
      clearTimeout(timer);
      resolve(ev);
    }
    c.once(name, on as never);
  });
}

/** Collect every event of a kind on a connection from now on. */
export function collect<T>(c: BufferClient, name: 'registration' | 'unregistration' | 'leak' | 'handle' | 'violation'): T[] {
  const got: T[] = [];
  c.on(name, ((ev: T) => got.push(ev)) as never);
  return got;
}
