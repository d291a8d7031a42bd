/**
 * The bystander: a well-behaved client in its own process that pings the
 * daemon while a stress part attacks it.
 *
 *   node dist/bench/stress/bystander.js <socket> [gapMs]
 *
 * Pings are sent every gapMs whether or not earlier ones were answered
 * (open loop), so a daemon that stalls for a second shows a second of
 * latency on every ping sent meanwhile, not on one. A failed ping (the
 * connection lost, an error answer) counts as a failure; the bystander
 * reconnects (a fuzzed daemon may be restarted on the same socket).
 * Prints {"ready":true} once connected; on the stdin line "stop" it waits
 * for the pings in flight (5 s at most; those still unanswered count as
 * failures) and prints {"stats":{pings, failures, errors, p50, p99, max,
 * over1s, reconnects}} (milliseconds).
 */
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { connect } from '../../client/connect.js';
import type { BufferClient } from '../../client/client.js';
import { percentile } from '../harness.js';

const [socket, gapArg] = process.argv.slice(2);
if (socket === undefined) {
  process.stderr.write('usage: bystander.js <socket> [gapMs]\n');
  process.exit(2);
}
const GAP_MS = Number(gapArg ?? 2);
const MAX_IN_FLIGHT = 5000;
const RECONNECT_EVERY_MS = 100;

const latencies: number[] = [];
const errors = new Set<string>();
let failures = 0;
let reconnects = 0;
let client: BufferClient | null = null;
let connecting = false;
let everConnected = false;
let lastAttempt = 0;
let stopping = false;
const inFlight = new Set<number>();

function fail(e: unknown): void {
  failures++;
  if (errors.size < 5) errors.add(`${(e as { code?: string }).code ?? 'ERROR'}: ${((e as Error).message ?? String(e)).slice(0, 120)}`);
}

async function ensureConnected(): Promise<void> {
  if ((client !== null && !client.closed) || connecting || performance.now() - lastAttempt < RECONNECT_EVERY_MS) return;
  connecting = true;
  lastAttempt = performance.now();
  try {
    client = await connect({ socket: socket!, useCookie: false, timeoutMs: 2000 });
    if (everConnected) reconnects++;
    else process.stdout.write('{"ready":true}\n');
    everConnected = true;
  } catch (e) {
    if (everConnected) fail(e);
  } finally {
    connecting = false;
  }
}

function tick(): void {
  if (stopping) return;
  if (client === null || client.closed) {
    void ensureConnected();
    return;
  }
  if (inFlight.size >= MAX_IN_FLIGHT) return;
  const t0 = performance.now();
  inFlight.add(t0);
  client.ping().then(
    () => {
      inFlight.delete(t0);
      latencies.push(performance.now() - t0);
    },
    (e: unknown) => {
      inFlight.delete(t0);
      fail(e);
    },
  );
}

const timer = setInterval(tick, GAP_MS);
void ensureConnected();

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(timer);
  const end = performance.now() + 5000;
  while (inFlight.size > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
  const now = performance.now();
  for (const t0 of inFlight) {
    latencies.push(now - t0);
    fail({ code: 'ETIMEDOUT', message: 'ping unanswered when the bystander stopped' });
  }
  const sorted = Float64Array.from(latencies).sort();
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  const stats = {
    pings: latencies.length,
    failures,
    errors: [...errors],
    p50: r3(percentile(sorted, 50)),
    p99: r3(percentile(sorted, 99)),
    max: r3(sorted.length > 0 ? sorted[sorted.length - 1]! : 0),
    over1s: latencies.filter((x) => x > 1000).length,
    reconnects,
  };
  process.stdout.write(`${JSON.stringify({ stats })}\n`);
  client?.disconnect().catch(() => {});
  setTimeout(() => process.exit(0), 50);
}

createInterface({ input: process.stdin })
  .on('line', (l) => {
    if (l.trim() === 'stop') void stop();
  })
  .on('close', () => void stop());
