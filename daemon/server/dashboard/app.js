// bufferd dashboard: one WebSocket (/ws) carrying snapshots and activity
// events. Plain browser JavaScript modules, no build step. Every string
// from the daemon is put in the page as text, never as HTML. When the
// daemon goes away the page keeps its last numbers, dimmed, and says so.

import { $, el, size, ms, replace, setClients } from './util.js';
import { renderPools, renderZones } from './maps.js';
import { setBuffers, renderClients, renderDrivers, renderViolations, activity } from './lists.js';
import { renderGraph } from './graph.js';

// ---- token and connection ------------------------------------------------

function token() {
  const h = new URLSearchParams(location.hash.slice(1));
  return h.get('token') || sessionStorage.getItem('bufferd-token') || '';
}

let ws = null;
let backoff = 500;
let lastStatus = null;
let lastSnapshotAt = null; // local time of the last snapshot shown

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
    if (lastStatus !== null) {
      // the numbers on the page are the last ones the daemon sent: dim them and say so
      setStale(true);
      setConn(false, opened && c.code !== 1006 ? `closed ${c.code} ${c.reason}, reconnecting…` : 'daemon gone, reconnecting…');
    } else {
      // refused before anything was shown: most likely the token; offer to type another
      if (!opened) $('login').hidden = false;
      setConn(false, !opened ? 'refused (wrong token?) or daemon unreachable' : c.code === 1006 ? 'disconnected (daemon gone, or this page read too slowly)' : `closed ${c.code} ${c.reason}`);
    }
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

function setStale(stale) {
  document.body.classList.toggle('stale', stale);
  const b = $('stale');
  b.hidden = !stale;
  if (stale) {
    const at = lastSnapshotAt === null ? 'before' : lastSnapshotAt.toLocaleTimeString();
    b.textContent = `The daemon is gone: the numbers below are its last, from ${at}, and no longer change. Reconnecting… (if it restarted with a new admin cookie, open the link 'bufctl dashboard' prints).`;
  }
}

// ---- rendering ---------------------------------------------------------------

function card(value, label, cls) {
  return el('div', { class: `card ${cls || ''}` }, el('div', { class: 'v' }, value), el('div', { class: 'l' }, label));
}

function render(st) {
  lastStatus = st;
  lastSnapshotAt = new Date();
  setStale(false);
  setClients(st.clients);
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
    card(st.dma.bounce ? `${st.dma.bounce.used}/${st.dma.bounce.slots}` : '–', 'swiotlb slots used'),
    ...faultCards(st.faults));
  renderHugepages(st.hugepages);
  renderZones(st.memory.regions, st.zoneMaps);
  renderPools(st.pools, st.maps || [], st.placements);
  setBuffers(st.buffersList || [], st.buffers.live);
  renderClients(st.clients);
  renderDrivers(st.drivers);
  renderViolations(st.violationsRecent || [], st.coherency.violations.total);
  renderGraph(st.graph);
}

/** Fault injection, when anything is armed or was injected: what every client sees is not the machine's own doing. */
function faultCards(f) {
  if (!f || (f.armed.length === 0 && f.total === 0)) return [];
  const armed = f.armed.map((a) => `${a.point} ${a.fired}/${a.calls}`).join(', ');
  return [card(f.total, `failures injected (${armed === '' ? 'nothing armed now' : `armed: ${armed}`})`, f.armed.length > 0 ? 'bad' : '')];
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

$('events').append(el('li', { class: 'none' }, 'waiting for activity…'));
window.addEventListener('hashchange', () => { if (ws) ws.close(); });
window.addEventListener('resize', () => { if (lastStatus) renderPools(lastStatus.pools, lastStatus.maps || [], lastStatus.placements); });
connect();
