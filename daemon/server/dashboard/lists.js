// bufferd dashboard: the tables (buffers, clients, drivers) and the feeds
// (violations, events). Clients appear by name; a list cut to its newest
// entries says how many of how many it shows.

import { $, el, size, hex, ms, replace, shownOf, clientName, clientSpan, clientConnected } from './util.js';

const MAX_EVENTS = 300;
const MAX_BUFFER_ROWS = 200;

let buffers = new Map(); // buffer id → row data; snapshots replace it, alloc/free events patch it
let seenBuffers = new Set();
let liveBuffers = 0; // from the last snapshot, patched by alloc/free events
let eventsSeen = 0;
const eventTimes = [];

function table(id, head, rows, empty) {
  const t = $(id);
  if (rows.length === 0) {
    t.replaceChildren(el('tr', {}, el('td', { class: 'none' }, empty)));
    return;
  }
  t.replaceChildren(
    el('tr', {}, head.map(([h, n]) => el('th', { class: n ? 'n' : '' }, h))),
    ...rows.map((r) => el('tr', { class: r.cls || '', 'data-id': r.id ?? '' }, r.cells.map((c, i) => el('td', { class: head[i][1] ? 'n' : '' }, c)))));
}

const names = (ids) => (ids.length === 0 ? '–' : ids.flatMap((id, i) => (i === 0 ? [clientSpan(id)] : [', ', clientSpan(id)])));

export function setBuffers(list, live) {
  buffers = new Map(list.map((b) => [b.buffer, b]));
  liveBuffers = live;
  renderBuffers();
}

export function renderBuffers() {
  const list = [...buffers.values()].sort((a, b) => a.buffer - b.buffer);
  const total = Math.max(liveBuffers, list.length);
  const shown = Math.min(list.length, MAX_BUFFER_ROWS);
  const cut = shownOf(shown, total);
  $('buffers-count').textContent = cut === '' ? `${total} live` : `${cut} live buffers shown (the newest)`;
  const now = new Set(list.map((b) => b.buffer));
  const rows = list.slice(-MAX_BUFFER_ROWS).reverse().map((b) => ({
    id: `buffer-${b.buffer}`,
    cls: seenBuffers.has(b.buffer) ? '' : 'new',
    cells: [`#${b.buffer}`, b.pool, size(b.size), b.kind, clientSpan(b.creator), names(b.holders), b.registrations.join(', ') || '–'],
  }));
  seenBuffers = now;
  table('buffers', [['buffer'], ['pool'], ['size', 1], ['kind'], ['creator'], ['held by'], ['registered with']], rows, 'no buffers');
}

export function renderClients(clients) {
  $('clients-count').textContent = `${clients.length} connected`;
  // bytes are the client's own; a quota is its principal's, shared by all its connections: shown once, below
  table('clients', [['name'], ['id', 1], ['pid', 1], ['uid', 1], ['principal'], ['handles', 1], ['bytes', 1], ['connected', 1]],
    clients.map((c) => ({ id: `client-${c.id}`, cells: [c.name || `client ${c.id}`, c.id, c.pid ?? '–', c.uid ?? '–', c.principal, c.handles, size(c.bytes), ms(c.connectedMs)] })),
    'no clients');
  const by = new Map();
  for (const c of clients) {
    const p = by.get(c.principal);
    if (p) p.clients++;
    else by.set(c.principal, { principal: c.principal, clients: 1, bytes: c.principalBytes ?? c.bytes, maxBytes: c.maxBytes });
  }
  table('principals', [['principal'], ['clients', 1], ['bytes', 1], ['quota', 1]],
    [...by.values()].map((p) => ({ id: `principal-${p.principal}`, cells: [p.principal, p.clients, size(p.bytes), p.maxBytes === null ? 'none' : `${size(p.maxBytes)} (${p.maxBytes > 0 ? Math.round((100 * p.bytes) / p.maxBytes) : 0}% used)`] })),
    'no principals');
}

function meter(used, total) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  return el('span', {}, el('span', { class: 'meter' }, el('i', { style: { width: `${pct}%` } })), total > 0 ? `${size(used)} / ${size(total)}` : '–');
}

export function renderDrivers(drivers) {
  table('drivers', [['driver'], ['kind'], ['coherent'], ['iommu'], ['registrations', 1], ['bytes', 1], ['IOVA used'], ['bounce'], ['refused', 1], ['leaks', 1]],
    drivers.map((d) => ({
      id: `driver-${d.name}`,
      cells: [d.name, d.kind === 'client' ? el('span', {}, 'client: ', clientSpan(d.owner)) : 'builtin', d.coherent ? 'yes' : 'no', d.iommu ? 'yes' : 'no', d.registrations, size(d.bytes),
        d.iommu ? meter(d.iovaUsed, d.iovaTotal) : '–', d.bounceSlots.used > 0 ? `${d.bounceSlots.used} / ${d.bounceSlots.total} slots` : '–', d.refused, d.leaks],
    })),
    'no drivers');
}

function violationLine(v) {
  return el('li', {}, el('time', {}, ms(v.timeMs)), el('span', {}, `${v.kind}: ${v.message}`));
}

export function renderViolations(list, total) {
  const cut = shownOf(Math.min(list.length, total), total);
  $('violations-count').textContent = cut === '' ? `${total} since start` : `${cut} since start shown (the newest)`;
  if (list.length === 0) return replace('violations', el('li', { class: 'none' }, 'no violations: every transfer was synced'));
  replace('violations', list.slice().reverse().map(violationLine));
}

// ---- the event log -----------------------------------------------------------

const ATTRIBUTES = {
  cache: 'cache policy', regions: 'memory region', align: 'alignment', contiguous: 'physically contiguous', maxSegmentSize: 'largest segment',
  maxSegments: 'segments', segmentBoundary: 'segment boundary', dmaMask: 'DMA mask',
};
const SIZED = new Set(['align', 'maxSegmentSize', 'segmentBoundary']);

/** A mismatch value as words: lists joined with "or", yes/no, sizes, large numbers in hex. */
function readable(attr, v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return SIZED.has(attr) ? size(v) : v > 0xffff ? hex(v) : String(v);
  if (Array.isArray(v)) return v.map((x) => readable(attr, x)).join(' or ');
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k} ${readable(k, x)}`).join(', ');
  return String(v);
}

/** A refusal's mismatches as rows: what the driver needs, what the buffer has. */
function refusalTable(ev) {
  const mm = ev.mismatches || [];
  if (mm.length === 0) return null;
  return el('table', { class: 'refusal' },
    el('tr', {}, el('th', {}, 'attribute'), el('th', {}, `${ev.driver} needs`), el('th', {}, 'the buffer has')),
    mm.map((m) => el('tr', {}, el('td', { title: m.attribute }, ATTRIBUTES[m.attribute] || m.attribute), el('td', {}, readable(m.attribute, m.required)), el('td', {}, readable(m.attribute, m.actual)))));
}

const who = (id, name) => (name ? `${name} (#${id})` : clientName(id));

function describe(ev) {
  switch (ev.topic) {
    case 'alloc':
      if (ev.kind === 'summary') return `${ev.allocs} allocations (${size(ev.bytesAllocated)}), ${ev.frees} frees (${size(ev.bytesFreed)}) in ${ev.windowMs} ms`;
      return ev.kind === 'alloc' ? `buffer #${ev.buffer}: ${size(ev.size)} from ${ev.pool} by ${who(ev.client, ev.name)}` : `buffer #${ev.buffer} freed (${size(ev.size)}, ${ev.pool})`;
    case 'handles':
      if (ev.kind === 'send') return `buffer #${ev.buffer} passed ${who(ev.from, ev.fromName)} → ${who(ev.to, ev.toName)} [${(ev.rights || []).join(',')}]`;
      if (ev.kind === 'export') return `buffer #${ev.buffer} exported by ${who(ev.from, ev.fromName)}`;
      return `buffer #${ev.buffer} imported by ${who(ev.to, ev.toName)}`;
    case 'drivers':
      if (ev.kind === 'register') return `${ev.driver} registered buffer #${ev.buffer} at ${hex(ev.deviceAddress)}${ev.bounced ? ' (bounced)' : ''}`;
      if (ev.kind === 'refuse') return `${ev.driver} refused buffer #${ev.buffer} of ${clientName(ev.client)} (${ev.code})${(ev.mismatches || []).length > 0 ? ':' : ''}`;
      if (ev.kind === 'unregister') return `${ev.driver} unregistered buffer #${ev.buffer}`;
      if (ev.kind === 'leak') return `${ev.driver} leaked buffer #${ev.buffer}`;
      return `driver ${ev.driver} ${ev.kind === 'attach' ? 'attached by' : 'detached from'} ${clientName(ev.client)}`;
    case 'violations':
      return `${ev.kind}: ${ev.message}`;
    case 'hugepages':
      return `${size(ev.size)} hugepages resized: asked ${ev.requested}, reached ${ev.reached}`;
    case 'clients':
      return ev.kind === 'connect' ? `${who(ev.client, ev.name)} connected as ${ev.principal}` : `${who(ev.client, ev.name)} disconnected`;
    default:
      return `${ev.topic} ${ev.kind}`;
  }
}

export function activity(ev) {
  const now = performance.now();
  eventTimes.push(now);
  while (eventTimes.length > 0 && now - eventTimes[0] > 5000) eventTimes.shift();
  $('rate').textContent = `${(eventTimes.length / 5).toFixed(1)}/s`;
  eventsSeen++;
  if (ev.topic === 'clients' && ev.kind === 'connect') clientConnected(ev.client, ev.name);
  const list = $('events');
  if (list.firstChild && list.firstChild.classList && list.firstChild.classList.contains('none')) list.replaceChildren();
  const body = el('span', {}, describe(ev), ev.topic === 'drivers' && ev.kind === 'refuse' ? refusalTable(ev) : null);
  list.prepend(el('li', {}, el('time', {}, ms(ev.timeMs)), el('span', { class: `t t-${ev.topic}` }, ev.topic), body));
  while (list.childElementCount > MAX_EVENTS) list.lastChild.remove();
  const cut = shownOf(list.childElementCount, eventsSeen);
  $('events-count').textContent = cut === '' ? `${eventsSeen} since this page opened` : `${cut} since this page opened shown (the newest)`;
  if (ev.topic === 'alloc' && ev.kind === 'alloc') {
    buffers.set(ev.buffer, { buffer: ev.buffer, pool: ev.pool, size: ev.size, kind: '…', creator: ev.client, holders: [ev.client], registrations: [] });
    liveBuffers++;
    renderBuffers();
  } else if (ev.topic === 'alloc' && ev.kind === 'free') {
    buffers.delete(ev.buffer);
    liveBuffers = Math.max(0, liveBuffers - 1);
    renderBuffers();
  }
  if (ev.topic === 'violations') {
    const v = $('violations');
    if (v.firstChild && v.firstChild.classList.contains('none')) v.replaceChildren();
    v.prepend(violationLine(ev));
  }
}
