/**
 * The ownership graph end to end: a four-process pipeline (producer →
 * filter → encoder → sink, by send, a token and send again, with driver
 * registrations and the two usual leak shapes) gives exactly the expected
 * graph; bufctl draws it as dot, Mermaid and text; --client and --buffer
 * narrow it; a client that is not an admin sees its own buffers only.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, ROOT } from '../helpers/daemon.js';
import { bufctlHere } from '../helpers/bufctl.js';
import { client } from '../helpers/drivers.js';
import { spawnClient, rejection, type Line } from '../helpers/procs.js';
import type { HandleInfo, RegistrationInfo } from '../../client/index.js';
import type { GraphResult, GraphEdge } from '../../protocol/ops/history.js';

/** Token lifetimes tick: compare everything else. */
const steady = (g: GraphResult): GraphResult => ({
  ...g,
  edges: g.edges.map((e): GraphEdge => (e.type === 'token-in-flight' ? { ...e, expiresInMs: 0 } : e)),
});

t.test('a four-process pipeline gives exactly the expected graph', async (t) => {
  const d = await startDaemon(t);
  const admin = await client(t, d.socket, 'observer', { useCookie: true });
  const producer = await spawnClient(t, d.socket, 'producer');
  const filter = await spawnClient(t, d.socket, 'filter');
  const encoder = await spawnClient(t, d.socket, 'encoder');
  const sink = await spawnClient(t, d.socket, 'sink');
  await filter.call('accept', ['producer']);
  await sink.call('accept', ['encoder']);

  // the frame: made for the jpeg decoder, sent to the filter, which registers it and hands a read token to the encoder, which sends it on read-only
  const frame = await producer.call<HandleInfo>('alloc', { for: ['jpeg'], size: 64 * 1024 });
  await producer.call('send', frame.handle, 'filter');
  const fh = (await filter.wait((l) => l['event'] === 'handle', 'the frame'))['handle'] as number;
  await producer.call('close', frame.handle);
  const jreg = await filter.call<RegistrationInfo>('register', fh, 'jpeg');
  const tok = await filter.call<{ token: string }>('export', fh, { rights: ['read', 'share'] });
  const eh = await encoder.call<HandleInfo>('import', tok.token);
  await encoder.call('send', eh.handle, 'sink', { rights: ['read'] });
  const sh = (await sink.wait((l) => l['event'] === 'handle', 'the frame at the sink'))['handle'] as number;
  // the encoder's scratch: registered with the gpu, its handle closed — held only by the registration
  const scratch = await encoder.call<HandleInfo>('alloc', { for: ['gpu'], size: 4096 });
  const greg = await encoder.call<RegistrationInfo>('register', scratch.handle, 'gpu');
  await encoder.call('close', scratch.handle);
  // the sink's reply: exported for nobody, its handle closed — held only by the token
  const reply = await sink.call<HandleInfo>('alloc', { pool: 'default', size: 4096 });
  await sink.call('export', reply.handle, { rights: ['read'] });
  await sink.call('close', reply.handle);

  const g = await admin.graph();
  const c = (p: { id: number }) => `client:${p.id}`;
  const b = (x: { buffer: number }) => `buffer:${x.buffer}`;
  const clients = [producer, filter, encoder, sink].sort((x, y) => x.id - y.id);
  const names = new Map([[producer.id, 'producer'], [filter.id, 'filter'], [encoder.id, 'encoder'], [sink.id, 'sink']]);
  type Right = 'read' | 'write' | 'share';
  const held: [{ id: number }, number, Right[]][] = [
    [filter, fh, ['read', 'write', 'share']],
    [encoder, eh.handle, ['read', 'share']],
    [sink, sh, ['read']],
  ];
  const frameHolders: GraphEdge[] = held
    .sort((x, y) => x[0].id - y[0].id)
    .map(([p, handle, rights]) => ({ type: 'holds', from: c(p), to: b(frame), handles: [{ handle, rights }], count: 1 }));
  const want: GraphResult = {
    nodes: [
      ...clients.map((p) => ({ id: c(p), type: 'client' as const, client: p.id, name: names.get(p.id)!, connected: true })),
      { id: b(frame), type: 'buffer', buffer: frame.buffer, pool: frame.pool, size: 64 * 1024, shape: null },
      { id: b(scratch), type: 'buffer', buffer: scratch.buffer, pool: scratch.pool, size: 4096, shape: 'registration-only' },
      { id: b(reply), type: 'buffer', buffer: reply.buffer, pool: 'default', size: 4096, shape: 'token-only' },
      { id: 'driver:gpu', type: 'driver', driver: 'gpu' },
      { id: 'driver:jpeg', type: 'driver', driver: 'jpeg' },
    ],
    edges: [
      ...frameHolders,
      { type: 'registered-with', from: b(frame), to: 'driver:jpeg', deviceAddress: jreg.deviceAddress, registrant: filter.id },
      { type: 'passed-to', from: c(producer), to: c(filter), buffer: frame.buffer, via: 'send', count: 1 },
      { type: 'passed-to', from: c(filter), to: c(encoder), buffer: frame.buffer, via: 'import', count: 1 },
      { type: 'passed-to', from: c(encoder), to: c(sink), buffer: frame.buffer, via: 'send', count: 1 },
      { type: 'registered-with', from: b(scratch), to: 'driver:gpu', deviceAddress: greg.deviceAddress, registrant: encoder.id },
      { type: 'token-in-flight', from: c(sink), to: b(reply), rights: ['read'], expiresInMs: 0 },
    ],
    truncated: false,
  };
  t.same(steady(g), want, 'the graph, exactly');
  const inflight = g.edges.find((e) => e.type === 'token-in-flight');
  t.ok(inflight !== undefined && inflight.expiresInMs > 0 && inflight.expiresInMs <= 30_000, 'the token has time left');

  // narrowed: one buffer, one client
  const one = await admin.graph({ buffer: scratch.buffer });
  t.same(one.nodes.map((n) => n.id), [c(encoder), b(scratch), 'driver:gpu']);
  const byFilter = await admin.graph({ client: 'filter' });
  t.same(byFilter.nodes.filter((n) => n.type === 'buffer').map((n) => n.id), [b(frame)], '--client: the buffers the filter touches');
  const byEncoder = await admin.graph({ client: encoder.id });
  t.same(byEncoder.nodes.filter((n) => n.type === 'buffer').map((n) => n.id), [b(frame), b(scratch)], 'held, and registered by it');
  t.equal((await admin.graph({ limit: 1 })).truncated, true, 'the limit truncates');

  // a client that is not an admin: its own buffers
  const mine = await sink.call<GraphResult>('graph', {});
  t.same(mine.nodes.filter((n) => n.type === 'buffer').map((n) => n.id), [b(frame)]);
  t.match(await rejection(sink.call('graph', { buffer: scratch.buffer })), { code: 'EPERM', message: /not held by client/ });
  t.match(await rejection(admin.graph({ buffer: 999_999 })), { code: 'ENOENT' });
  t.match(await rejection(admin.graph({ client: 'nobody' })), { code: 'ENOENT', message: /no connected client 'nobody'/ });
  t.match(await rejection(admin.request('graph', { limit: 5001 })), { code: 'EINVAL', message: /limit/ });

  // bufctl draws it
  const dot = await bufctlHere(d.socket, 'graph', '--format', 'dot');
  t.equal(dot.code, 0, dot.stderr);
  t.match(dot.stdout, /^digraph bufferd \{/);
  t.match(dot.stdout, new RegExp(`"client:${producer.id}" -> "client:${filter.id}" \\[label="send buffer ${frame.buffer}", style=dashed\\]`));
  t.match(dot.stdout, new RegExp(`"buffer:${scratch.buffer}" \\[shape=ellipse, label="buffer ${scratch.buffer}\\\\n4 KiB [a-z]+\\\\nregistration-only", color=red`));
  const mm = await bufctlHere(d.socket, 'graph', '--format', 'mermaid', '--client', 'sink');
  t.equal(mm.code, 0, mm.stderr);
  t.match(mm.stdout, /^flowchart LR\n/);
  t.match(mm.stdout, new RegExp(`client_${sink.id} -->\\|"token r \\d+s"\\| buffer_${reply.buffer}`));
  t.match(mm.stdout, new RegExp(`class buffer_${reply.buffer} leak`));
  const txt = await bufctlHere(d.socket, 'graph');
  t.match(txt.stdout, new RegExp(`! buffer ${reply.buffer} is held only by a token in flight`));
  t.match(txt.stdout, new RegExp(`! buffer ${scratch.buffer} is held only by driver registrations`));
  const js = await bufctlHere(d.socket, 'graph', '--json');
  t.same(steady(JSON.parse(js.stdout) as GraphResult), want, '--json: the same graph');
  const bad = await bufctlHere(d.socket, 'graph', '--format', 'png');
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--format/);

  // the producer goes: still in the graph as a sender, no longer connected
  await producer.cmd('exit');
  await producer.exited;
  const after = await admin.graph({ buffer: frame.buffer });
  t.match(after.nodes.find((n) => n.id === c(producer)), { connected: false, name: 'producer' });
  for (const p of [filter, encoder, sink]) await p.cmd<Line>('exit');
});

t.test('mapped-by edges, and the answer bounded in bytes', async (t) => {
  const cfg = JSON.parse(readFileSync(join(ROOT, 'systemd', 'bufferd.json'), 'utf8')) as Record<string, unknown>;
  const d = await startDaemon(t, { config: { ...cfg, limits: { maxHandles: 8192 } } });
  const admin = await client(t, d.socket, 'observer', { useCookie: true });
  const alpha = await client(t, d.socket, 'alpha');
  const h = await alpha.alloc({ pool: 'default', size: 64 * 1024 });
  const m1 = await alpha.mapRemote(h.handle);
  const m2 = await alpha.mapRemote(h.handle);
  await alpha.write({ mapping: m1.mapping }, 0, Buffer.alloc(10, 1));
  await alpha.close(h.handle);
  const g = await admin.graph({ buffer: h.buffer });
  t.same(g.edges, [{ type: 'mapped-by', from: `buffer:${h.buffer}`, to: `client:${alpha.session.clientId}`, mappings: [m1.mapping, m2.mapping] }], 'mapped, no handle left');
  t.match(g.nodes, [{ id: `client:${alpha.session.clientId}`, name: 'alpha' }, { id: `buffer:${h.buffer}`, shape: null }]);
  t.same((await alpha.graph()).nodes.map((n) => n.id), [`client:${alpha.session.clientId}`, `buffer:${h.buffer}`], 'a mapping is enough to see it');
  await alpha.request('unmap', { mapping: m1.mapping });
  await alpha.request('unmap', { mapping: m2.mapping });
  const life = await admin.history(h.buffer);
  t.same(life.events.map((e) => e.kind), ['alloc', 'map', 'map', 'write', 'close', 'unmap', 'unmap', 'free']);
  t.match(life.events[3], { mapping: m1.mapping, offset: 0, length: 10 });
  t.match(life.events.at(-1), { after: 'unmap', client: alpha.session.clientId });

  // 5000 held buffers: more than the answer's ~1 MiB of nodes and edges
  const hs = await Promise.all(Array.from({ length: 5000 }, () => alpha.alloc({ pool: 'default', size: 64 })));
  const ping = admin.ping();
  const big = await admin.graph({ limit: 5000 });
  await ping;
  t.equal(big.truncated, true);
  const n = big.nodes.filter((x) => x.type === 'buffer').length;
  t.ok(n > 3000 && n < 5000, `${n} buffers in the answer`);
  t.ok(JSON.stringify(big).length < 2 * 1024 * 1024, 'well under the frame limit');
  t.same(big.nodes.filter((x) => x.type === 'buffer').map((x) => (x as { buffer: number }).buffer), hs.slice(0, n).map((x) => x.buffer), 'the first ones, in id order');
});
