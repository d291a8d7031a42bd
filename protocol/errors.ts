/**
 * The one table of error codes. Every error the daemon sends carries one of
 * these codes; the descriptions are the documentation (PROTOCOL.md repeats
 * them and a test keeps the two in step).
 */
export const ERROR_CODES = {
  EINVAL: 'Invalid argument: unknown op, missing, extra or wrongly typed field, or a value out of range. The message names the field and what was expected.',
  EPROTO: 'Protocol error: the frame body is not one well-formed MessagePack value (§2) or not a map, the first request is not `hello`, or the protocol version is not spoken.',
  E2BIG: 'A frame length prefix exceeds the maximum frame size. The daemon answers once (details: length, limit) and closes the connection.',
  EBADF: 'The handle number is not open on this connection (never opened, already closed, or another client\'s).',
  ENOENT: 'No such object: pool, region, driver, client, mapping, or an unknown, used or expired token.',
  ENOMEM: 'Not enough memory in the pool, hugepage pool, IOVA space or bounce pool; the message gives what is free.',
  EPERM: 'Not permitted: a missing capability or handle right, a receiver that does not accept handles from the sender, or a client name bound to another principal; named in the message.',
  EMFILE: 'The connection holds its maximum of handles, mappings and registrations (`maxHandles`), only the receiver\'s reserved slots are left for an incoming handle, or the principal has `maxTokens` tokens in flight.',
  EBUSY: 'The object is in use (pages still mapped or allocated), or the daemon is at `maxConnections` (sent with `id` nil before the connection is closed).',
  ENOTSUP: 'The operation is valid but not supported by this daemon or configuration.',
  EDQUOT: 'The principal\'s byte quota would be exceeded; the message gives the quota, the current use and the principal.',
  EEXIST: 'The name is already taken (client name, driver name).',
  EATTR: 'The buffer\'s attributes do not satisfy the driver\'s constraints; `details.mismatches` lists every failing attribute.',
  ECOHERENCY: 'Strict coherency checking refused an operation that breaks the CPU/device ownership rules.',
  ETIMEDOUT: 'A frame was not completed within `frameTimeoutMs` of its first byte, or `hello` not within `helloTimeoutMs` of connecting; the connection is closed.',
  EIO: 'Internal error in the daemon while carrying out the op; it is logged with a stack trace and the daemon keeps serving.',
  ECONNRESET: 'Client side only: the connection to the daemon was lost before the answer arrived.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export const ERROR_CODE_NAMES = Object.keys(ERROR_CODES) as ErrorCode[];

/** The `error` member of a failed response. */
export interface WireError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * A typed error. The daemon throws it from op handlers; the client library
 * rejects calls with it (as `BufferdError`).
 */
export class BufferdError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'BufferdError';
    this.code = code;
    this.details = details;
  }

  toWire(): WireError {
    const e: WireError = { code: this.code, message: this.message };
    if (this.details !== undefined) e.details = this.details;
    return e;
  }

  static fromWire(w: WireError): BufferdError {
    return new BufferdError(w.code, w.message, w.details);
  }
}

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, s);
}
