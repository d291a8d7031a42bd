/**
 * Driver ops: drivers, constraints, merge, register, unregister,
 * driver.attach, driver.detach, and device-side access (device.*).
 */
import { Type } from '../typebox.js';
import { HandleNum as Handle, Name, Uint, request, BinaryData } from '../types.js';
import { ConstraintsSchema } from '../attributes.js';
import { MAX_DATA_BYTES } from './memory.js';

const Driver = Name('driver name');

/** How a registration is mapped (include/linux/dma-direction.h): what the device may do with the buffer. */
export const DMA_DIRECTIONS = ['bidirectional', 'to-device', 'from-device'] as const;
export type DmaDirection = (typeof DMA_DIRECTIONS)[number];
const Direction = Type.Union(DMA_DIRECTIONS.map((d) => Type.Literal(d)), {
  description: 'one of "bidirectional" (default), "to-device" (the device only reads), "from-device" (the device only writes)',
});
const Offset = Type.Integer({ minimum: 0, maximum: 2 ** 40, description: 'byte offset in the buffer' });

export const DRIVER_REQUESTS = {
  drivers: request('drivers', {}, 'List the drivers with their registrations, IOVA, IOMMU entries, bounce use and leaks.'),
  constraints: request('constraints', { driver: Driver }, "A driver's constraint set."),
  merge: request(
    'merge',
    { drivers: Type.Array(Driver, { minItems: 1, maxItems: 32, uniqueItems: true, description: 'drivers the buffer will visit' }) },
    'What-if: the merged attributes of several drivers and the pools that satisfy them, or the conflicts.',
  ),
  register: request(
    'register',
    { handle: Handle, driver: Driver, direction: Type.Optional(Direction) },
    "Register a buffer with a driver (dma_map, in a DMA direction): its device view, or EATTR with every mismatch.",
  ),
  unregister: request(
    'unregister',
    {
      driver: Driver,
      handle: Type.Optional(Handle),
      buffer: Type.Optional(Uint({ description: 'buffer id (the registering client, without a handle)' })),
    },
    'Drop a registration (by handle, or by buffer id for the client that registered it).',
  ),
  'driver.attach': request(
    'driver.attach',
    { name: Driver, constraints: ConstraintsSchema },
    'Attach this client as a driver with its own constraints (needs the driver capability).',
  ),
  'driver.detach': request('driver.detach', { name: Driver }, 'Detach a client driver this connection attached; its registrations are reported as leaks.'),
  'device.write': request(
    'device.write',
    { driver: Driver, handle: Handle, offset: Offset, data: BinaryData(MAX_DATA_BYTES, 'bytes the device writes') },
    'The device writes into a registered buffer through its device addresses.',
  ),
  'device.read': request(
    'device.read',
    { driver: Driver, handle: Handle, offset: Offset, length: Type.Integer({ minimum: 0, maximum: MAX_DATA_BYTES, description: 'bytes to read' }) },
    'The device reads a registered buffer through its device addresses.',
  ),
  'device.fill': request(
    'device.fill',
    {
      driver: Driver,
      handle: Handle,
      offset: Offset,
      length: Type.Integer({ minimum: 0, maximum: 2 ** 40, description: 'bytes to fill' }),
      value: Type.Integer({ minimum: 0, maximum: 255, description: 'byte value 0 to 255' }),
    },
    'The device fills a range of a registered buffer with one byte.',
  ),
  'device.copy': request(
    'device.copy',
    { driver: Driver, src: Handle, dst: Handle },
    'The device copies one registered buffer into another (as much as fits).',
  ),
} as const;
