/**
 * `bufctl graph`: the ownership graph as Graphviz dot, Mermaid, JSON or a
 * plain list of edges. Buffers held only by a token or only by
 * registrations (the usual leaks) are drawn red.
 */
import type { GraphEdge, GraphNode, GraphResult } from '../protocol/ops/history.js';
import { size } from './format.js';

export const GRAPH_FORMATS = ['text', 'dot', 'mermaid', 'json'] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

export function nodeLabel(n: GraphNode): string {
  switch (n.type) {
    case 'client':
      return `${n.name ?? 'client'} #${n.client}${n.connected ? '' : ' (gone)'}`;
    case 'buffer':
      return `buffer ${n.buffer}\\n${size(n.size)} ${n.pool}${n.shape !== null ? `\\n${n.shape}` : ''}`;
    case 'driver':
      return `driver ${n.driver}`;
  }
}

export function edgeLabel(e: GraphEdge): string {
  switch (e.type) {
    case 'holds':
      return `holds ${e.handles.map((h) => `${h.handle}:${h.rights.map((r) => r[0]).join('')}`).join(' ')}${e.count > e.handles.length ? ` +${e.count - e.handles.length}` : ''}`;
    case 'passed-to':
      return `${e.via} buffer ${e.buffer}${e.count > 1 ? ` ×${e.count}` : ''}`;
    case 'registered-with':
      return `registered @0x${e.deviceAddress.toString(16)}`;
    case 'mapped-by':
      return `mapped ${e.mappings.join(' ')}`;
    case 'token-in-flight':
      return `token ${e.rights.map((r) => r[0]).join('')} ${Math.ceil(e.expiresInMs / 1000)}s`;
  }
}

const dotId = (id: string) => `"${id}"`;
const mmId = (id: string) => id.replace(':', '_');

export function toDot(g: GraphResult): string {
  const shape = { client: 'box', buffer: 'ellipse', driver: 'hexagon' } as const;
  const lines = ['digraph bufferd {', '  rankdir=LR;'];
  for (const n of g.nodes) {
    const leak = n.type === 'buffer' && n.shape !== null ? ', color=red, fontcolor=red' : '';
    lines.push(`  ${dotId(n.id)} [shape=${shape[n.type]}, label="${nodeLabel(n)}"${leak}];`);
  }
  for (const e of g.edges) {
    const style = e.type === 'passed-to' ? ', style=dashed' : e.type === 'token-in-flight' ? ', style=dotted' : '';
    lines.push(`  ${dotId(e.from)} -> ${dotId(e.to)} [label="${edgeLabel(e)}"${style}];`);
  }
  if (g.truncated) lines.push('  // truncated: more buffers than the answer holds (use --buffer or --client)');
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

export function toMermaid(g: GraphResult): string {
  const lines = ['flowchart LR'];
  for (const n of g.nodes) {
    const label = nodeLabel(n).replace(/\\n/g, '<br/>');
    lines.push(n.type === 'client' ? `  ${mmId(n.id)}["${label}"]` : n.type === 'buffer' ? `  ${mmId(n.id)}(["${label}"])` : `  ${mmId(n.id)}{{"${label}"}}`);
  }
  for (const e of g.edges) lines.push(`  ${mmId(e.from)} ${e.type === 'passed-to' ? '-.->' : '-->'}|"${edgeLabel(e)}"| ${mmId(e.to)}`);
  const leaks = g.nodes.filter((n) => n.type === 'buffer' && n.shape !== null).map((n) => mmId(n.id));
  if (leaks.length > 0) {
    lines.push('  classDef leak stroke:#d00,color:#d00');
    lines.push(`  class ${leaks.join(',')} leak`);
  }
  return `${lines.join('\n')}\n`;
}

/** One edge a line, then the leak shapes. */
export function graphText(g: GraphResult): string {
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const name = (id: string) => nodeLabel(byId.get(id)!).replace(/\\n/g, ', ');
  const out = g.edges.map((e) => `  ${name(e.from)} —${edgeLabel(e)}→ ${name(e.to)}\n`);
  if (out.length === 0) out.push('  (no edges)\n');
  const leaks = g.nodes.filter((n): n is GraphNode & { type: 'buffer' } => n.type === 'buffer' && n.shape !== null);
  for (const l of leaks) out.push(`  ! buffer ${l.buffer} is held ${l.shape === 'token-only' ? 'only by a token in flight' : 'only by driver registrations'}\n`);
  if (g.truncated) out.push('  (truncated: more buffers than one answer holds; use --buffer or --client)\n');
  return out.join('');
}

export function renderGraph(g: GraphResult, format: GraphFormat): string {
  if (format === 'dot') return toDot(g);
  if (format === 'mermaid') return toMermaid(g);
  if (format === 'json') return `${JSON.stringify(g, null, 2)}\n`;
  return graphText(g);
}
