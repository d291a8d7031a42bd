/**
 * bufctl's history and graph views alone: every event kind in words, the
 * history header (freed, dropped, partial), and the graph as text, dot and
 * Mermaid with the leak shapes marked.
 */
import t from 'tap';
import { describeEvent, historyView } from '../../client/views-history.js';
import { renderGraph, toDot, toMermaid, graphText, edgeLabel } from '../../client/views-graph.js';
import type { HistoryEvent, GraphResult } from '../../protocol/ops/history.js';

const ev = (kind: string, f: Record<string, unknown> = {}, client: number | null = 3, clientName: string | null = 'cam'): HistoryEvent => ({ seq: 1, timeMs: 1500, kind, client, clientName, ...f });

t.test('every kind in words', async (t) => {
  const cases: [HistoryEvent, string][] = [
    [ev('alloc', { pool: 'contig', cache: 'writecombine', size: 65536, handle: 0, addr: 0x60000000, placement: { for: ['jpeg', 'gpu'], pool: 'contig', reason: 'r' } }), 'pool contig (writecombine), 64 KiB, handle 0 at 0x60000000, for jpeg + gpu'],
    [ev('alloc', { pool: 'huge', cache: 'writeback', size: 4096, handle: 1, addr: null, placement: null }), 'pool huge (writeback), 4 KiB, handle 1'],
    [ev('dup', { handle: 0, newHandle: 2, rights: ['read'] }), 'handle 0 → 2 (read)'],
    [ev('close', { handle: 2 }), 'handle 2'],
    [ev('send', { handle: 0, to: 4, toName: null, rights: [] }), 'handle 0 → #4 (none)'],
    [ev('export', { handle: 0, rights: ['read'], expiresInMs: 2500 }), 'handle 0 as a token (read), expires in 3 s'],
    [ev('import', { handle: 5, rights: ['read'], from: 3, fromName: 'cam' }), 'token from cam#3 → handle 5 (read)'],
    [ev('import', { handle: 5, rights: ['read'] }), 'token → handle 5 (read)'],
    [ev('exportFd', { handle: 0, readOnly: true }), 'handle 0 as a file descriptor, read-only'],
    [ev('exportFd', { handle: 0, readOnly: false }), 'handle 0 as a file descriptor'],
    [ev('importFd', { handle: 7 }), 'a file descriptor → handle 7'],
    [ev('map', { handle: 0, mapping: 1, rights: ['read', 'write'], fd: true }), 'handle 0 → mapping 1 (read,write), shared memory'],
    [ev('map', { handle: 0, mapping: 2, rights: ['read'], fd: false }), 'handle 0 → mapping 2 (read)'],
    [ev('unmap', { mapping: 1 }), 'mapping 1'],
    [ev('register', { driver: 'capture', deviceAddress: 0x1000, iova: false, bounced: 8192 }), 'with capture at device address 0x00001000, 8 KiB bounced'],
    [ev('unregister', { driver: 'capture' }), 'from capture'],
    [ev('sync', { phase: 'end', access: 'rw', offset: 64, length: 128, cleaned: 2, invalidated: 0 }), 'end rw, offset 64, 128 B: 2 lines cleaned, 0 invalidated'],
    [ev('fence', { flushed: 3 }), '3 lines flushed'],
    [ev('write', { handle: 0, offset: 0, length: 10 }), '10 B at offset 0'],
    [ev('read', { mapping: 2, offset: 4, length: 1024 }), '1 KiB at offset 4 through mapping 2'],
    [ev('device.read', { driver: 'gpu', offset: 0, length: 2048 }), 'gpu: 2 KiB at offset 0'],
    [ev('device.copy', { driver: 'gpu', role: 'src', length: 100 }), 'gpu: 100 B as the source'],
    [ev('device.copy', { driver: 'gpu', role: 'dst', length: 100 }), 'gpu: 100 B as the destination'],
    [ev('refused', { op: 'map', code: 'EBADF', message: 'no' }), 'map: EBADF no'],
    [ev('refused', { op: 'register', code: 'EATTR', message: 'does not fit', mismatches: [{}, {}] }), 'register: EATTR does not fit (2 mismatches)'],
    [ev('violation', { violation: 'cpu-write-while-device-owns', mode: 'strict', message: 'm' }), 'cpu-write-while-device-owns (strict): m'],
    [ev('leak', { driver: 'gpu', reason: 'registering client disconnected' }), 'registration with gpu dropped: registering client disconnected'],
    [ev('free', { pool: 'default', size: 4096 }, null, null), '4 KiB back to pool default'],
    [ev('free', { pool: 'default', size: 4096, after: 'unmap' }), '4 KiB back to pool default (after unmap)'],
    [ev('disconnect', { handles: [0, 3], count: 2, mappings: 1 }), 'gone, dropping 2 handles (0, 3) and 1 mapping'],
    [ev('disconnect', { handles: [1], count: 40, mappings: 0 }), 'gone, dropping 40 handles (1, …)'],
    [ev('disconnect', { handles: [], count: 0, mappings: 0 }), 'gone, dropping nothing'],
    [ev('something-new'), ''],
  ];
  for (const [e, want] of cases) t.equal(describeEvent(e), want, e.kind);
});

t.test('the history header', async (t) => {
  const r = historyView({ buffer: 9, live: false, partial: true, dropped: 4, events: [ev('dup', { handle: 0, newHandle: 1, rights: ['read'] }), ev('free', { pool: 'p', size: 1 }, null, null)] });
  t.match(r, /^buffer 9 \(freed\): 2 events, 4 more not kept \(history.perBuffer \/ history.maxEvents\); recorded from after its allocation\n/);
  t.match(r, /1\.500 s +cam#3 +dup +handle 0 → 1 \(read\)/);
  t.match(r, /daemon +free/);
  t.match(historyView({ buffer: 1, live: true, partial: false, dropped: 0, events: [] }), /^buffer 1 \(live\): 0 events\n {2}\(none\)\n$/);
});

const G: GraphResult = {
  nodes: [
    { id: 'client:1', type: 'client', client: 1, name: 'cam', connected: true },
    { id: 'client:2', type: 'client', client: 2, name: null, connected: false },
    { id: 'buffer:5', type: 'buffer', buffer: 5, pool: 'default', size: 4096, shape: null },
    { id: 'buffer:6', type: 'buffer', buffer: 6, pool: 'wc', size: 2 * 1024 * 1024, shape: 'registration-only' },
    { id: 'buffer:7', type: 'buffer', buffer: 7, pool: 'default', size: 64, shape: 'token-only' },
    { id: 'driver:gpu', type: 'driver', driver: 'gpu' },
  ],
  edges: [
    { type: 'holds', from: 'client:1', to: 'buffer:5', handles: [{ handle: 0, rights: ['read', 'write', 'share'] }], count: 40 },
    { type: 'mapped-by', from: 'buffer:5', to: 'client:1', mappings: [1, 2] },
    { type: 'passed-to', from: 'client:1', to: 'client:2', buffer: 5, via: 'send', count: 2 },
    { type: 'registered-with', from: 'buffer:6', to: 'driver:gpu', deviceAddress: 0x100000, registrant: 1 },
    { type: 'token-in-flight', from: 'client:1', to: 'buffer:7', rights: ['read'], expiresInMs: 1200 },
  ],
  truncated: true,
};

t.test('the graph as text, dot, mermaid and json', async (t) => {
  t.same(G.edges.map(edgeLabel), ['holds 0:rws +39', 'mapped 1 2', 'send buffer 5 ×2', 'registered @0x100000', 'token r 2s']);
  const txt = graphText(G);
  t.match(txt, 'cam #1 —holds 0:rws +39→ buffer 5, 4 KiB default\n');
  t.match(txt, 'cam #1 —send buffer 5 ×2→ client #2 (gone)\n');
  t.match(txt, '! buffer 6 is held only by driver registrations\n');
  t.match(txt, '! buffer 7 is held only by a token in flight\n');
  t.match(txt, '(truncated:');
  t.equal(graphText({ nodes: [], edges: [], truncated: false }), '  (no edges)\n');
  const dot = toDot(G);
  t.match(dot, /^digraph bufferd \{\n {2}rankdir=LR;\n/);
  t.match(dot, '"buffer:6" [shape=ellipse, label="buffer 6\\n2 MiB wc\\nregistration-only", color=red, fontcolor=red];');
  t.match(dot, '"driver:gpu" [shape=hexagon, label="driver gpu"];');
  t.match(dot, '"client:1" -> "client:2" [label="send buffer 5 ×2", style=dashed];');
  t.match(dot, '"client:1" -> "buffer:7" [label="token r 2s", style=dotted];');
  t.match(dot, '// truncated');
  const mm = toMermaid(G);
  t.match(mm, '  client_2["client #2 (gone)"]\n');
  t.match(mm, '  driver_gpu{{"driver gpu"}}\n');
  t.match(mm, '  client_1 -.->|"send buffer 5 ×2"| client_2\n');
  t.match(mm, '  class buffer_6,buffer_7 leak\n');
  t.notMatch(toMermaid({ ...G, nodes: G.nodes.filter((n) => n.type !== 'buffer' || n.shape === null) }), 'classDef');
  t.same(JSON.parse(renderGraph(G, 'json')), G);
  t.equal(renderGraph(G, 'dot'), dot);
  t.equal(renderGraph(G, 'mermaid'), mm);
  t.equal(renderGraph(G, 'text'), txt);
});
