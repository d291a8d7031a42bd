// bufferd dashboard: the ownership graph of the newest buffers (the
// snapshot's `graph`, the same as `bufctl graph --json`): clients on the
// left, buffers in the middle, drivers on the right, one line per edge. A
// buffer held only by an export token or only by driver registrations (the
// usual leaks) is drawn red and listed above the drawing.

import { $, el, size, replace } from './util.js';

const NS = 'http://www.w3.org/2000/svg';
const ROW = 26;
const W = 190;
const H = 20;
const COLX = { client: 10, buffer: 330, driver: 650 };
const WIDTH = 850;

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function label(n) {
  if (n.type === 'client') return `${n.name || 'client'} #${n.client}${n.connected ? '' : ' (gone)'}`;
  if (n.type === 'buffer') return `#${n.buffer} ${size(n.size)} ${n.pool}`;
  return n.driver;
}

function edgeText(e) {
  switch (e.type) {
    case 'holds': return `holds handles ${e.handles.map((h) => `${h.handle} (${h.rights.join(',')})`).join(' ')}${e.count > e.handles.length ? ` and ${e.count - e.handles.length} more` : ''}`;
    case 'passed-to': return `passed buffer #${e.buffer} by ${e.via}${e.count > 1 ? ` ×${e.count}` : ''}`;
    case 'registered-with': return `registered at 0x${e.deviceAddress.toString(16)} by client ${e.registrant}`;
    case 'mapped-by': return `mapped (mappings ${e.mappings.join(', ')})`;
    case 'token-in-flight': return `token in flight (${e.rights.join(',')}), expires in ${Math.ceil(e.expiresInMs / 1000)} s`;
    default: return e.type;
  }
}

export function renderGraph(g) {
  if (!g) return;
  const cols = { client: [], buffer: [], driver: [] };
  for (const n of g.nodes) cols[n.type].push(n);
  const pos = new Map();
  for (const [type, list] of Object.entries(cols)) list.forEach((n, i) => pos.set(n.id, { x: COLX[type], y: 10 + i * ROW }));
  const rows = Math.max(1, cols.client.length, cols.buffer.length, cols.driver.length);
  const height = 20 + rows * ROW;
  const s = svg('svg', { id: 'graph-svg', width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': 'ownership graph' });
  for (const e of g.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const [l, r] = a.x <= b.x ? [a, b] : [b, a];
    const same = l.x === r.x; // client → client (passed-to): a loop out to the right
    const x1 = l.x + W;
    const x2 = same ? r.x + W : r.x;
    const y1 = l.y + H / 2;
    const y2 = r.y + H / 2;
    const mx = same ? x1 + 70 : (x1 + x2) / 2;
    s.append(svg('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: `edge e-${e.type}`, 'data-from': e.from, 'data-to': e.to, 'data-type': e.type },
      svg('title', {}, edgeText(e))));
  }
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const cls = ['node', `n-${n.type}`];
    if (n.type === 'buffer' && n.shape !== null) cls.push('leak');
    if (n.type === 'client' && !n.connected) cls.push('gone');
    s.append(svg('g', { class: cls.join(' '), 'data-id': n.id, transform: `translate(${p.x},${p.y})` },
      svg('rect', { width: W, height: H, rx: 4 }),
      svg('text', { x: 6, y: 14 }, label(n)),
      svg('title', {}, n.type === 'buffer' && n.shape !== null ? `${label(n)}: ${n.shape}` : label(n))));
  }
  replace('graph', s);
  const leaks = cols.buffer.filter((n) => n.shape !== null);
  replace('graph-leaks', leaks.length === 0
    ? el('li', { class: 'none' }, 'no buffer is held only by a token or only by registrations')
    : leaks.map((n) => el('li', { class: 'bad', 'data-buffer': n.buffer },
      `buffer #${n.buffer} (${size(n.size)}, ${n.pool}) is held ${n.shape === 'token-only' ? 'only by an export token in flight' : 'only by driver registrations'}`)));
  $('graph-count').textContent = `${cols.buffer.length} buffers${g.truncated ? ' (the newest)' : ''} · ${cols.client.length} clients · ${cols.driver.length} drivers · ${g.edges.length} edges`;
}
