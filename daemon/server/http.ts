/**
 * The dashboard listener (`--http HOST:PORT`, off by default): loopback
 * only, serving the static page in daemon/server/dashboard/ and a WebSocket at /ws
 * with the same events and snapshots as `subscribe` on the Unix socket.
 *
 * - Host must name the listener (127.0.0.1:PORT, localhost:PORT, [::1]:PORT):
 *   a DNS-rebinding page can't read anything. A WebSocket's Origin, when
 *   sent, must be this page: other sites can't open one.
 * - /ws needs `?token=` with a principal holding `monitor` (or admin, e.g.
 *   the admin cookie: `bufctl dashboard` prints the URL with it).
 * - Messages from the page are capped (maxPayload), peers that miss a pong
 *   are cut, and a watcher whose unsent bytes pass events.maxBuffered is
 *   dropped by the bus: a slow page never slows the daemon.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import type { DaemonContext } from './context.js';
import { TOPICS, type Subscriber, type Topic } from '../session/events.js';
import { hasCapability } from '../session/auth.js';
import { StartupError } from './server.js';
import { LOOPBACK_HOST_PORT } from '../config/schema.js';

export const MONITOR = 'monitor';
const MAX_PAYLOAD = 4096;
const MAX_SOCKETS = 64;

export interface HttpServer {
  /** http://HOST:PORT/ (the port the kernel chose when 0 was asked). */
  readonly url: string;
  close(): Promise<void>;
}

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/util.js': { file: 'util.js', type: 'text/javascript; charset=utf-8' },
  '/maps.js': { file: 'maps.js', type: 'text/javascript; charset=utf-8' },
  '/lists.js': { file: 'lists.js', type: 'text/javascript; charset=utf-8' },
  '/graph.js': { file: 'graph.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** daemon/server/dashboard, from the sources or from dist/daemon/server. */
export function dashboardDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const d of [join(here, 'dashboard'), join(here, '..', '..', '..', 'daemon', 'server', 'dashboard')]) {
    if (existsSync(join(d, 'index.html'))) return d;
  }
  throw new StartupError(`the dashboard files are missing (looked in ${here}/dashboard and ${here}/../../../daemon/server/dashboard)`);
}

const LOOPBACK = new RegExp(LOOPBACK_HOST_PORT);

/** Parse and check a loopback HOST:PORT (the config schema checks the same pattern). */
export function parseHttpSpec(spec: string): { host: string; port: number } {
  const m = LOOPBACK.exec(spec);
  if (m === null) {
    throw new StartupError(`--http '${spec}': expected a loopback HOST:PORT such as 127.0.0.1:8080 or [::1]:8080 (the dashboard is never served beyond this machine)`);
  }
  const port = Number(spec.slice(m[1]!.length + 1));
  if (port > 65535) throw new StartupError(`--http '${spec}': port must be 0 to 65535`);
  const host = m[1] === '[::1]' ? '::1' : m[1] === 'localhost' ? '127.0.0.1' : m[1]!;
  if (host.split('.').some((o) => Number(o) > 255)) throw new StartupError(`--http '${spec}': not an IPv4 address`);
  return { host, port };
}

function refuse(socket: Duplex, status: number, text: string, message: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(message) + 1}\r\n\r\n${message}\n`);
  socket.destroy();
}

export async function startHttp(ctx: DaemonContext, spec: string): Promise<HttpServer> {
  const { host, port: askedPort } = parseHttpSpec(spec);
  const dir = dashboardDir();
  const files = new Map(Object.entries(STATIC).map(([p, f]) => [p, { body: readFileSync(join(dir, f.file)), type: f.type }]));
  const shown = host === '::1' ? '[::1]' : host;
  let allowedHosts = new Set<string>();

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const hostHeader = req.headers.host ?? '';
    if (!allowedHosts.has(hostHeader.toLowerCase())) {
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end(`Host '${hostHeader}' is not this dashboard (expected ${[...allowedHosts].join(' or ')})\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET and HEAD\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    const f = files.get(path);
    if (f === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`no such page: ${path.slice(0, 100)}\n`);
      return;
    }
    res.writeHead(200, {
      'content-type': f.type,
      'content-length': f.body.length,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://${hostHeader}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    });
    res.end(req.method === 'HEAD' ? undefined : f.body);
  };

  const server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000, maxHeaderSize: 8192 }, onRequest);
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD, perMessageDeflate: false, clientTracking: true });
  const alive = new WeakMap<WebSocket, boolean>();

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://x');
    const hostHeader = (req.headers.host ?? '').toLowerCase();
    if (!allowedHosts.has(hostHeader)) return refuse(socket, 421, 'Misdirected Request', `Host '${hostHeader}' is not this dashboard`);
    const origin = req.headers.origin;
    if (origin !== undefined && ![...allowedHosts].some((h) => origin.toLowerCase() === `http://${h}`)) {
      ctx.log.warn({ origin }, 'dashboard WebSocket refused: cross-site origin');
      return refuse(socket, 403, 'Forbidden', `Origin '${origin}' may not open this WebSocket`);
    }
    if (url.pathname !== '/ws') return refuse(socket, 404, 'Not Found', 'the WebSocket endpoint is /ws');
    if (wss.clients.size >= MAX_SOCKETS) return refuse(socket, 503, 'Service Unavailable', `at most ${MAX_SOCKETS} dashboard connections`);
    let caps: Set<string>;
    try {
      caps = ctx.auth.resolve(url.searchParams.get('token') ?? undefined).capabilities;
    } catch {
      return refuse(socket, 401, 'Unauthorized', 'unknown token');
    }
    if (!hasCapability(caps, MONITOR)) {
      return refuse(socket, 401, 'Unauthorized', `the dashboard needs ?token= naming a principal with the '${MONITOR}' capability (bufctl dashboard prints a URL with the admin cookie)`);
    }
    wss.handleUpgrade(req, socket, head, (ws) => attach(ws, req, url));
  });

  const attach = (ws: WebSocket, req: IncomingMessage, url: URL) => {
    const label = `ws ${req.socket.remoteAddress}:${req.socket.remotePort}`;
    alive.set(ws, true);
    const sub: Subscriber = {
      label,
      topics: new Set(TOPICS),
      intervalMs: 1000,
      maps: true,
      send: (out) => ws.send(out.json()),
      buffered: () => ws.bufferedAmount,
      dropped: () => ws.terminate(),
    };
    // both fields are checked before either applies: a bad message changes nothing
    const configure = (topics: unknown, interval: unknown): string | null => {
      if (topics !== undefined && (!Array.isArray(topics) || topics.length === 0 || topics.some((t) => !(TOPICS as readonly unknown[]).includes(t)))) {
        return `topics: expected a non-empty list of ${TOPICS.join(', ')}`;
      }
      if (interval !== undefined && (!Number.isInteger(interval) || (interval as number) < 100 || (interval as number) > 60_000)) {
        return 'intervalMs: expected an integer from 100 to 60000';
      }
      if (topics !== undefined) sub.topics = new Set(topics as Topic[]);
      if (interval !== undefined) sub.intervalMs = interval as number;
      return null;
    };
    const qTopics = url.searchParams.get('topics');
    const qInterval = url.searchParams.get('intervalMs');
    const err = configure(qTopics === null ? undefined : qTopics.split(','), qInterval === null ? undefined : Number(qInterval));
    if (err !== null) {
      ws.close(1008, err.slice(0, 120));
      return;
    }
    ctx.bus.subscribe(sub);
    ctx.log.info({ subscriber: label }, 'dashboard connected');
    ws.on('pong', () => alive.set(ws, true));
    ws.on('message', (data, isBinary) => {
      let msg: unknown;
      try {
        msg = isBinary ? undefined : JSON.parse(data.toString());
      } catch {
        msg = undefined;
      }
      const problem =
        msg === null || typeof msg !== 'object' || Array.isArray(msg)
          ? 'expected a JSON object {"topics": [...], "intervalMs": N}'
          : configure((msg as Record<string, unknown>)['topics'], (msg as Record<string, unknown>)['intervalMs']);
      ws.send(JSON.stringify(problem === null ? { event: 'subscribed', topics: [...sub.topics], intervalMs: sub.intervalMs } : { event: 'error', code: 'EINVAL', message: problem }));
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      ctx.bus.unsubscribe(sub);
      ctx.log.info({ subscriber: label }, 'dashboard disconnected');
    });
    ws.send(JSON.stringify({ event: 'subscribed', topics: [...sub.topics], intervalMs: sub.intervalMs }));
  };

  // dead peers: a ping each interval; no pong since the last one → cut
  let heartbeat: NodeJS.Timeout | null = null;
  const beat = () => {
    for (const ws of wss.clients) {
      if (alive.get(ws) !== true) {
        ctx.log.info('dashboard peer missed a pong: cut');
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
    heartbeat = setTimeout(beat, ctx.config.events.pingMs);
    heartbeat.unref();
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new StartupError(`--http ${spec}: ${e.code === 'EADDRINUSE' ? 'the address is in use' : e.message}`)));
    server.listen({ host, port: askedPort }, () => resolve());
  });
  server.on('error', (e) => ctx.log.error({ err: e.message }, 'dashboard listener error'));
  const port = (server.address() as { port: number }).port;
  allowedHosts = new Set([`${shown}:${port}`, `localhost:${port}`, ...(port === 80 ? [shown, 'localhost'] : [])]);
  heartbeat = setTimeout(beat, ctx.config.events.pingMs);
  heartbeat.unref();
  const url = `http://${shown}:${port}/`;
  ctx.dashboard = url;
  ctx.log.info({ url }, 'dashboard listening (open it with: bufctl dashboard)');

  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        if (heartbeat !== null) clearTimeout(heartbeat);
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
