// bufferd dashboard: the pictures of memory.
// - Pool maps: each pool's chunks grouped by arena (one per client, or the
//   shared one), one square per hugepage (or per 2 MiB of a 4 KiB pool),
//   one cell per page, coloured by use. Hovering a cell names its address,
//   the buffers in it and their clients.
// - Zones: each zone laid out by physical address, cells coloured by what
//   holds them (free in the buddy allocator, shaded by the largest free
//   block; a pool; free hugepages; the bounce pool), with its free blocks
//   per order as /proc/buddyinfo.
// Every canvas carries its layout in data-layout (JSON), so a cell can be
// found from an address.

import { el, size, hex, replace, shownOf, clientName, showTip, hideTip } from './util.js';

const MAX_TILES = 512; // squares drawn per pool
const COLORS = { free: '#2a313c', dirty: '#7c4a1e', large: '#a855f7', direct: '#f59e0b' };
const KIND = ['slab', 'large extent', 'direct buffer'];

function slabColor(fill) {
  const l = 72 - Math.round((fill / 100) * 34);
  return `hsl(217 91% ${l}%)`;
}

/** Tiles of `tile` bytes (a hugepage, or 2 MiB for 4 KiB pools), each a 32×16 grid of cells of tile/512 bytes. */
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
  return { tile, cell, tiles: [...tiles.entries()].sort((a, b) => a[0] - b[0]) };
}

const CELL_PX = 4;

/** A canvas of square tiles, `cols` to a row; hover calls describe(address, cellBytes). */
function tileCanvas(layoutTiles, tile, cell, describe) {
  const tw = 32 * CELL_PX;
  const th = 16 * CELL_PX;
  const gap = 6;
  const width = Math.max(320, Math.min(document.body.clientWidth - 110, 1600));
  const cols = Math.max(1, Math.floor((width + gap) / (tw + gap)));
  const rows = Math.ceil(layoutTiles.length / cols);
  const cv = el('canvas', { width: String(Math.min(cols, layoutTiles.length) * (tw + gap)), height: String(rows * (th + gap)) });
  cv.dataset.layout = JSON.stringify({ tileBytes: tile, cellBytes: cell, cellPx: CELL_PX, cellsPerRow: 32, gap, cols, bases: layoutTiles.map(([b]) => b) });
  const g = cv.getContext('2d');
  layoutTiles.forEach(([, cells], i) => {
    const x0 = (i % cols) * (tw + gap);
    const y0 = Math.floor(i / cols) * (th + gap);
    g.fillStyle = '#11151b';
    g.fillRect(x0, y0, tw, th);
    cells.forEach((c, j) => {
      if (c === null) return;
      g.fillStyle = c;
      g.fillRect(x0 + (j % 32) * CELL_PX, y0 + Math.floor(j / 32) * CELL_PX, CELL_PX - 1, CELL_PX - 1);
    });
  });
  cv.addEventListener('mousemove', (ev) => {
    const r = cv.getBoundingClientRect();
    const x = ev.clientX - r.left;
    const y = ev.clientY - r.top;
    const i = Math.floor(y / (th + gap)) * cols + Math.floor(x / (tw + gap));
    const cx = Math.floor((x % (tw + gap)) / CELL_PX);
    const cy = Math.floor((y % (th + gap)) / CELL_PX);
    if (i >= layoutTiles.length || cx >= 32 || cy >= 16) return hideTip();
    showTip(ev, describe(layoutTiles[i][0] + (cy * 32 + cx) * cell, cell));
  });
  cv.addEventListener('mouseleave', hideTip);
  return cv;
}

/** Placements overlapping [addr, addr + bytes): a binary search in the pool's list (sorted by address). */
function overlapping(list, addr, bytes) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid][0] + list[mid][1] <= addr) lo = mid + 1;
    else hi = mid;
  }
  const out = [];
  for (let i = lo; i < list.length && list[i][0] < addr + bytes; i++) if (list[i][0] + list[i][1] > addr) out.push(list[i]);
  return out;
}

/** What a pool cell holds: its address, the buffers in it and whose they are, or what it is when none. */
function describePoolCell(pool, chunks, placed, omitted, addr, cell) {
  const lines = [`${hex(addr)} – ${hex(addr + cell)} · pool ${pool.name}`];
  const inCell = overlapping(placed, addr, cell);
  for (const [a, bytes, id, owner] of inCell.slice(0, 4)) lines.push(`buffer #${id} of ${clientName(owner)} at ${hex(a)} (${size(bytes)})`);
  if (inCell.length > 4) lines.push(`and ${inCell.length - 4} more buffers in this cell`);
  const chunk = chunks.find((c) => addr >= c.addr && addr < c.addr + c.size);
  if (chunk === undefined) return [...lines, 'not held by this arena'];
  const page = Math.floor((addr - chunk.addr) / 4096);
  const run = chunk.runs.find(([first, pages]) => page >= first && page < first + Math.max(pages, 1));
  if (run !== undefined) lines.push(run[2] === 0 ? `${KIND[0]} page, ${run[3]}% of its regions in use` : KIND[run[2]]);
  else lines.push(chunk.dirty ? 'dirty: an empty chunk decaying' : 'free in a chunk');
  if (inCell.length === 0 && run !== undefined && omitted > 0) lines.push(`(${omitted} buffers' places are not sent: too many)`);
  lines.push(`arena: ${chunk.owner === 0 ? 'shared' : clientName(chunk.owner)}`);
  return lines;
}

export function renderPools(pools, maps, placements) {
  const byPool = (placements && placements.byPool) || {};
  const omitted = (placements && placements.omitted) || 0;
  replace('pools', pools.map((p) => {
    const m = maps.find((x) => x.name === p.name);
    const head = el('header', {},
      el('span', { class: 'name' }, p.name),
      el('span', { class: `badge ${p.cache}` }, p.cache),
      el('span', { class: 'badge cap' }, `${size(p.pageSize)} pages`),
      el('span', { class: 'badge cap' }, p.arena === 'shared' ? 'one shared arena' : 'an arena per client'),
      p.capability ? el('span', { class: 'badge cap' }, `needs ${p.capability}`) : null,
      el('span', { class: 'stats' },
        `${p.buffers} buffers · allocated ${size(p.allocated)} · active ${size(p.active)} · mapped ${size(p.mapped)} · dirty ${size(p.dirty)} · fragmentation ${p.fragmentation.toFixed(2)}` +
        (p.maxBytes !== null ? ` · limit ${size(p.maxBytes)}` : '')));
    const box = el('div', { class: 'pool', 'data-pool': p.name }, head);
    if (!m || m.chunks.length === 0) {
      box.append(el('div', { class: 'empty' }, 'holds no pages'));
      return box;
    }
    const groups = new Map();
    for (const c of m.chunks) {
      if (!groups.has(c.owner)) groups.set(c.owner, []);
      groups.get(c.owner).push(c);
    }
    let budget = MAX_TILES;
    for (const [owner, chunks] of [...groups.entries()].sort((a, b) => a[0] - b[0])) {
      const { tile, cell, tiles } = poolTiles(p, chunks);
      const shown = tiles.slice(0, Math.max(0, budget));
      budget -= shown.length;
      const bytes = chunks.reduce((a, c) => a + c.size, 0);
      const cut = shownOf(shown.length, tiles.length);
      const label = el('div', { class: 'arena-label' },
        el('span', { class: 'who' }, owner === 0 ? 'shared arena' : clientName(owner)),
        el('span', { class: 'stats' }, ` · ${size(bytes)} in ${tiles.length} square${tiles.length === 1 ? '' : 's'}${cut === '' ? '' : ` (${cut} squares shown)`}`));
      const group = el('div', { class: 'arena', 'data-owner': String(owner) }, label);
      if (shown.length > 0) group.append(tileCanvas(shown, tile, cell, (addr, bytesPerCell) => describePoolCell(p, chunks, byPool[p.name] || [], omitted, addr, bytesPerCell)));
      box.append(group);
    }
    return box;
  }));
}

// ---- zones -------------------------------------------------------------------

const OWNER_COLORS = ['#3b82f6', '#f59e0b', '#a855f7', '#ec4899', '#14b8a6', '#eab308', '#f97316', '#6366f1', '#84cc16', '#ef4444', '#06b6d4', '#d946ef'];
const ZONE_CELL_PX = 9;
const ZONE_COLS = 64;
const USED = '#3a4250';

/** Free cells: green, brighter for larger free blocks (order 0 dim: fragmented; order 18+ bright). */
const freeColor = (order) => `hsl(150 60% ${Math.round(18 + Math.min(order, 18) * 2)}%)`;
const ownerColor = (i) => (i < 0 ? USED : OWNER_COLORS[i % OWNER_COLORS.length]);

function cellColor(z, c) {
  if (z.free[c] >= 50 || z.owner[c] < 0) return z.free[c] > 0 ? freeColor(z.order[c]) : USED;
  return ownerColor(z.owner[c]);
}

function describeZoneCell(z, owners, c) {
  const a = z.base + c * z.cellBytes;
  const b = Math.min(z.base + z.size, a + z.cellBytes);
  const lines = [`${z.name} · ${hex(a)} – ${hex(b)}`];
  lines.push(z.free[c] === 0 ? 'nothing free' : `${z.free[c]}% free; largest free block: order ${z.order[c]} (${size(4096 * 2 ** z.order[c])})`);
  if (z.owner[c] >= 0) lines.push(`${owners[z.owner[c]]}: ${z.ownerShare[c]}%`);
  return lines;
}

export function renderZones(regions, zoneMaps) {
  if (!zoneMaps) return replace('zones', el('p', { class: 'none' }, 'no zone maps in this snapshot'));
  const status = new Map(regions.flatMap((r) => r.zones).map((z) => [z.name, z]));
  const used = new Set(zoneMaps.zones.flatMap((z) => z.owner.filter((o) => o >= 0)));
  const legend = el('ul', { class: 'legend' },
    el('li', {}, el('i', { style: { background: freeColor(18) } }), 'free (brighter: larger free blocks)'),
    el('li', {}, el('i', { style: { background: freeColor(0) } }), 'free, fragmented (small blocks)'),
    zoneMaps.owners.map((name, i) => (used.has(i) ? el('li', {}, el('i', { style: { background: ownerColor(i) } }), name) : null)));
  replace('zones', legend, zoneMaps.zones.map((z) => {
    const st = status.get(z.name);
    const cells = z.free.length;
    const rows = Math.ceil(cells / ZONE_COLS);
    const cv = el('canvas', { width: String(Math.min(cells, ZONE_COLS) * ZONE_CELL_PX), height: String(rows * ZONE_CELL_PX) });
    cv.dataset.layout = JSON.stringify({ base: z.base, cellBytes: z.cellBytes, cellPx: ZONE_CELL_PX, cols: ZONE_COLS, cells });
    const g = cv.getContext('2d');
    for (let c = 0; c < cells; c++) {
      g.fillStyle = cellColor(z, c);
      g.fillRect((c % ZONE_COLS) * ZONE_CELL_PX, Math.floor(c / ZONE_COLS) * ZONE_CELL_PX, ZONE_CELL_PX - 1, ZONE_CELL_PX - 1);
    }
    cv.addEventListener('mousemove', (ev) => {
      const r = cv.getBoundingClientRect();
      const c = Math.floor((ev.clientY - r.top) / ZONE_CELL_PX) * ZONE_COLS + Math.floor((ev.clientX - r.left) / ZONE_CELL_PX);
      if (c < 0 || c >= cells) return hideTip();
      showTip(ev, describeZoneCell(z, zoneMaps.owners, c));
    });
    cv.addEventListener('mouseleave', hideTip);
    const orders = st ? st.freeByOrder : [];
    const buddy = el('table', { class: 'orders' },
      el('tr', {}, el('th', {}, 'order'), orders.map((_, o) => el('th', { class: 'n' }, o))),
      el('tr', {}, el('td', {}, 'free blocks'), orders.map((n) => el('td', { class: 'n' }, n))));
    return el('div', { class: 'zone', 'data-zone': z.name },
      el('div', { class: 'zone-label' },
        el('span', { class: 'name' }, z.name),
        el('span', { class: 'stats' }, ` ${hex(z.base)} – ${hex(z.base + z.size)} · ${st ? size(st.free) : '–'} free of ${size(z.size)} · a cell is ${size(z.cellBytes)}`)),
      cv, buddy);
  }));
}
