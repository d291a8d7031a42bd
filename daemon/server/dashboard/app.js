// bufferd dashboard: one WebSocket (/ws) carrying snapshots and activity events.
// Plain browser JavaScript, no build step. Every string from the daemon is
// put in the page as text, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 300;
const MAX_TILES = 512;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'style') Object.assign(e.style, v); // CSSOM: allowed by the page's CSP, unlike style=
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

function size(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  // round first, then pick the unit: 4 GiB − 4 KiB is "4 GiB", not "4.0 GiB" or "4096 MiB"
  const digits = (x) => (x < 10 ? 1 : 0);
  while (i < u.length - 1 && Number(v.toFixed(digits(v))) >= 1024) { v /= 1024; i++; }
  return `${i === 0 ? v : String(Number(v.toFixed(digits(v))))} ${u[i]}`;
}
const hex = (n) => (n === null || n === undefined ? '–' : `0x${n.toString(16)}`);
const who = (id, name) => (name ? `${name} (#${id})` : `client #${id}`);
const ms = (t) => {
  const s = Math.floor(t / 1000);
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
};

// ---- token and connection ------------------------------------------------

function token() {
  const h = new URLSearchParams(location.hash.slice(1));
  return h.get('token') || sessionStorage.getItem('bufferd-token') || '';
}

let ws = null;
let backoff = 500;
let lastStatus = null;
let buffers = new Map(); // buffer id → row data; snapshots replace it, alloc/free events patch it
let seenBuffers = new Set();
let liveBuffers = 0; // from the last snapshot, patched by alloc/free events
const eventTimes = [];

function connect() {
  const t = token();
  if (t === '') {
    $('login').hidden = false;
    setConn(false, 'no token');
    return;
  }
  sessionStorage.setItem('bufferd-token', t);
  ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(t)}`);
  let opened = false;
  ws.onopen = () => { opened = true; backoff = 500; setConn(true, 'live'); $('login').hidden = true; };
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    if (ev.event === 'snapshot') render(ev.status);
    else if (ev.event === 'activity') activity(ev);
  };
  ws.onclose = (c) => {
    // refused before opening: most likely the token; offer to type another
    if (!opened) $('login').hidden = false;
    setConn(false, !opened ? 'refused (wrong token?) or daemon unreachable' : c.code === 1006 ? 'disconnected (daemon gone, or this page read too slowly)' : `closed ${c.code} ${c.reason}`);
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

function setConn(up, text) {
  const c = $('conn');
  c.className = `conn ${up ? 'up' : 'down'}`;
  c.textContent = text;
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  location.hash = `token=${encodeURIComponent($('token').value.trim())}`;
  if (ws) ws.close();
  else connect();
});

// ---- rendering ---------------------------------------------------------------

function replace(id, ...kids) {
  const e = $(id);
  e.replaceChildren(...kids.flat());
  return e;
}

function card(value, label, cls) {
  return el('div', { class: `card ${cls || ''}` }, el('div', { class: 'v' }, value), el('div', { class: 'l' }, label));
}

function render(st) {
  lastStatus = st;
  replace('facts',
    el('div', {}, el('dt', {}, 'version'), el('dd', {}, st.version)),
    el('div', {}, el('dt', {}, 'pid'), el('dd', {}, st.pid)),
    el('div', {}, el('dt', {}, 'up'), el('dd', {}, ms(st.uptimeMs))),
    el('div', {}, el('dt', {}, 'socket'), el('dd', {}, st.socket)));
  const allocated = st.pools.reduce((a, p) => a + p.allocated, 0);
  replace('summary',
    card(size(st.memory.total - st.memory.free), `of ${size(st.memory.total)} physical memory in use`),
    card(st.buffers.live, 'live buffers'),
    card(size(allocated), 'allocated in pools'),
    card(st.clients.length, 'clients'),
    card(st.drivers.reduce((a, d) => a + d.registrations, 0), 'registrations'),
    card(st.coherency.violations.total, `violations (checker: ${st.coherency.mode})`, st.coherency.violations.total > 0 ? 'bad' : ''),
    card(st.dma.bounce ? `${st.dma.bounce.used}/${st.dma.bounce.slots}` : '–', 'swiotlb slots used'));
  renderHugepages(st.hugepages);
  renderPools(st.pools, st.maps || []);
  buffers = new Map((st.buffersList || []).map((b) => [b.buffer, b]));
  liveBuffers = st.buffers.live;
  renderBuffers();
  renderClients(st.clients);
  renderDrivers(st.drivers);
  renderViolations(st.violationsRecent || []);
}

function renderHugepages(hps) {
  if (hps.length === 0) return replace('hugepages', el('p', { class: 'none' }, 'no hugepage pools configured'));
  replace('hugepages', hps.map((h) => {
    const t = Math.max(h.total, 1);
    const pct = (n) => `${(100 * n) / t}%`;
    // a surplus page is an in-use (or reserved) page beyond nr: it shows on the thin bar below
    return el('div', { class: 'card hp' },
      el('div', { class: 'v' }, `${size(h.size)} × ${h.total}`),
      el('div', { class: 'bar', title: 'in use · reserved · free' },
        el('i', { class: 'hp-used', style: { width: pct(h.inUse) } }),
        el('i', { class: 'hp-reserved', style: { width: pct(h.reserved) } })),
      el('div', { class: 'bar thin', title: `persistent (nr ${h.nr}) · surplus ${h.surplus}` },
        el('i', { class: 'hp-persist', style: { width: pct(h.total - h.surplus) } }),
        el('i', { class: 'hp-surplus', style: { width: pct(h.surplus) } })),
      el('ul', { class: 'legend small' },
        el('li', {}, el('i', { class: 'hp-used' }), `in use ${h.inUse}`),
        el('li', {}, el('i', { class: 'hp-reserved' }), `reserved ${h.reserved}`),
        el('li', {}, el('i', { class: 'k-free' }), `free ${h.free - h.reserved}`),
        el('li', {}, el('i', { class: 'hp-surplus' }), `surplus ${h.surplus}`)),
      el('div', { class: 'l' }, `free ${h.free} · reserved ${h.reserved} · surplus ${h.surplus} · nr ${h.nr} (asked ${h.requested}) · overcommit ${h.overcommit} · region ${h.region}`));
  }));
}

// The pool map: tiles of `tile` bytes (a hugepage, or 2 MiB for 4 KiB pools),
// each a 32×16 grid of cells; a cell is `tile/512` bytes.
const COLORS = { free: '#2a313c', dirty: '#7c4a1e', large: '#a855f7', direct: '#f59e0b' };
function slabColor(fill) {
  const l = 72 - Math.round((fill / 100) * 34);
  return `hsl(217 91% ${l}%)`;
}

function poolTiles(pool, chunks) {
  const tile = Math.max(pool.pageSize, 2 * 1024 * 1024);
  const cell = tile / 512;
  const tiles = new Map();
  const paint = (addr, bytes, color) => {
    for (let a = addr; a < addr + bytes; a += cell) {
      const base = a - (a % tile);
      let t = tiles.get(base);
      if (!t) { t = new Array(512).fill(null); tiles.set(base, t); }
      t[Math.floor((a - base) / cell)] = color;
    }
  };
  for (const c of chunks) {
    paint(c.addr, c.size, c.dirty ? COLORS.dirty : COLORS.free);
    for (const [first, pages, kind, fill] of c.runs) {
      const color = kind === 0 ? slabColor(fill) : kind === 1 ? COLORS.large : COLORS.direct;
      paint(c.addr + first * 4096, Math.max(pages * 4096, 1), color);
    }
  }
  return [...tiles.entries()].sort((a, b) => a[0] - b[0]);
}

function renderPools(pools, maps) {
  replace('pools', pools.map((p) => {
    const m = maps.find((x) => x.name === p.name);
    const tiles = m ? poolTiles(p, m.chunks) : [];
    const head = el('header', {},
      el('span', { class: 'name' }, p.name),
      el('span', { class: `badge ${p.cache}` }, p.cache),
      el('span', { class: 'badge cap' }, `${size(p.pageSize)} pages`),
      p.capability ? el('span', { class: 'badge cap' }, `needs ${p.capability}`) : null,
      el('span', { class: 'stats' },
        `${p.buffers} buffers · allocated ${size(p.allocated)} · active ${size(p.active)} · mapped ${size(p.mapped)} · dirty ${size(p.dirty)} · fragmentation ${p.fragmentation.toFixed(2)}` +
        (p.maxBytes !== null ? ` · limit ${size(p.maxBytes)}` : '')));
    const box = el('div', { class: 'pool', 'data-pool': p.name }, head);
    if (tiles.length === 0) {
      box.append(el('div', { class: 'empty' }, 'holds no pages'));
      return box;
    }
    const shown = tiles.slice(0, MAX_TILES);
    const cellPx = 4;
    const tw = 32 * cellPx;
    const th = 16 * cellPx;
    const gap = 6;
    const width = Math.max(320, Math.min(document.body.clientWidth - 90, 1600));
    const cols = Math.max(1, Math.floor((width + gap) / (tw + gap)));
    const rows = Math.ceil(shown.length / cols);
    const cv = el('canvas', { width: String(Math.min(cols, shown.length) * (tw + gap)), height: String(rows * (th + gap)) });
    const g = cv.getContext('2d');
    shown.forEach(([base, cells], i) => {
      const x0 = (i % cols) * (tw + gap);
      const y0 = Math.floor(i / cols) * (th + gap);
      g.fillStyle = '#11151b';
      g.fillRect(x0, y0, tw, th);
      cells.forEach((c, j) => {
        if (c === null) return;
        g.fillStyle = c;
        g.fillRect(x0 + (j % 32) * cellPx, y0 + Math.floor(j / 32) * cellPx, cellPx - 1, cellPx - 1);
      });
      cv.title = '';
      void base;
    });
    box.append(cv);
    if (tiles.length > shown.length) box.append(el('div', { class: 'empty' }, `+ ${tiles.length - shown.length} more`));
    return box;
  }));
}

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

function renderBuffers() {
  const list = [...buffers.values()].sort((a, b) => a.buffer - b.buffer);
  const shown = Math.min(list.length, 200);
  const total = Math.max(liveBuffers, list.length);
  $('buffers-count').textContent = shown < total ? `${total} live (showing the newest ${shown} of ${total})` : `${total} live`;
  const now = new Set(list.map((b) => b.buffer));
  const rows = list.slice(-200).reverse().map((b) => ({
    id: `buffer-${b.buffer}`,
    cls: seenBuffers.has(b.buffer) ? '' : 'new',
    cells: [`#${b.buffer}`, b.pool, size(b.size), b.kind, `#${b.creator}`, b.holders.map((h) => `#${h}`).join(' '), b.registrations.join(', ') || '–'],
  }));
  seenBuffers = now;
  table('buffers', [['buffer'], ['pool'], ['size', 1], ['kind'], ['creator'], ['held by'], ['registered with']], rows, 'no buffers');
}

function renderClients(clients) {
  $('clients-count').textContent = `${clients.length} connected`;
  // bytes are the client's own; a quota is its principal's, shared by all its connections: shown once, below
  table('clients', [['id'], ['name'], ['pid', 1], ['uid', 1], ['principal'], ['handles', 1], ['bytes', 1], ['connected', 1]],
    clients.map((c) => ({ id: `client-${c.id}`, cells: [`#${c.id}`, c.name || '–', c.pid ?? '–', c.uid ?? '–', c.principal, c.handles, size(c.bytes), ms(c.connectedMs)] })),
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

function renderDrivers(drivers) {
  table('drivers', [['driver'], ['kind'], ['coherent'], ['iommu'], ['registrations', 1], ['bytes', 1], ['IOVA used'], ['bounce'], ['refused', 1], ['leaks', 1]],
    drivers.map((d) => ({
      id: `driver-${d.name}`,
      cells: [d.name, d.kind === 'client' ? `client #${d.owner}` : 'builtin', d.coherent ? 'yes' : 'no', d.iommu ? 'yes' : 'no', d.registrations, size(d.bytes),
        d.iommu ? meter(d.iovaUsed, d.iovaTotal) : '–', d.bounceSlots.used > 0 ? `${d.bounceSlots.used} / ${d.bounceSlots.total} slots` : '–', d.refused, d.leaks],
    })),
    'no drivers');
}

function violationLine(v) {
  return el('li', {}, el('time', {}, ms(v.timeMs)), el('span', {}, `${v.kind}: ${v.message}`));
}

function renderViolations(list) {
  $('violations-count').textContent = lastStatus ? `${lastStatus.coherency.violations.total} since start` : '';
  if (list.length === 0) return replace('violations', el('li', { class: 'none' }, 'no violations: every transfer was synced'));
  replace('violations', list.slice().reverse().map(violationLine));
}

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
      if (ev.kind === 'refuse') return `${ev.driver} refused buffer #${ev.buffer}: ${(ev.mismatches || []).map((m) => `${m.attribute} needs ${JSON.stringify(m.required)}, is ${JSON.stringify(m.actual)}`).join(', ') || ev.code}`;
      if (ev.kind === 'unregister') return `${ev.driver} unregistered buffer #${ev.buffer}`;
      if (ev.kind === 'leak') return `${ev.driver} leaked buffer #${ev.buffer}`;
      return `driver ${ev.driver} ${ev.kind === 'attach' ? 'attached by' : 'detached from'} client #${ev.client}`;
    case 'violations':
      return `${ev.kind}: ${ev.message}`;
    case 'hugepages':
      return `${size(ev.size)} hugepages resized: asked ${ev.requested}, reached ${ev.reached}`;
    case 'clients':
      return ev.kind === 'connect' ? `${who(ev.client, ev.name)} connected as ${ev.principal}` : `${who(ev.client, ev.name)} disconnected`;
    default:
      return JSON.stringify(ev);
  }
}

function activity(ev) {
  const now = performance.now();
  eventTimes.push(now);
  while (eventTimes.length > 0 && now - eventTimes[0] > 5000) eventTimes.shift();
  $('rate').textContent = `${(eventTimes.length / 5).toFixed(1)}/s`;
  const list = $('events');
  if (list.firstChild && list.firstChild.classList && list.firstChild.classList.contains('none')) list.replaceChildren();
  list.prepend(el('li', {}, el('time', {}, ms(ev.timeMs)), el('span', { class: `t t-${ev.topic}` }, ev.topic), el('span', {}, describe(ev))));
  while (list.childElementCount > MAX_EVENTS) list.lastChild.remove();
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

$('events').append(el('li', { class: 'none' }, 'waiting for activity…'));
window.addEventListener('hashchange', () => { if (ws) ws.close(); });
window.addEventListener('resize', () => { if (lastStatus) renderPools(lastStatus.pools, lastStatus.maps || []); });
connect();
