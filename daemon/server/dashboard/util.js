// bufferd dashboard: small helpers shared by the page's modules. Every
// string from the daemon goes into the page as text, never as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'style') Object.assign(e.style, v); // CSSOM: allowed by the page's CSP, unlike style=
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

export function size(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  // round first, then pick the unit: 4 GiB − 4 KiB is "4 GiB", not "4.0 GiB" or "4096 MiB"
  const digits = (x) => (x < 10 ? 1 : 0);
  while (i < u.length - 1 && Number(v.toFixed(digits(v))) >= 1024) { v /= 1024; i++; }
  return `${i === 0 ? v : String(Number(v.toFixed(digits(v))))} ${u[i]}`;
}

export const hex = (n) => (n === null || n === undefined ? '–' : `0x${n.toString(16)}`);

export const ms = (t) => {
  const s = Math.floor(t / 1000);
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
};

export function replace(id, ...kids) {
  const e = $(id);
  e.replaceChildren(...kids.flat());
  return e;
}

/** "200 of 666" when a list is cut, else "" (the caller adds what they are). */
export const shownOf = (shown, total) => (shown < total ? `${shown} of ${total}` : '');

// ---- client names -------------------------------------------------------------

let names = new Map();

/** The connected clients, from the last snapshot (and client events between). */
export function setClients(clients) {
  names = new Map(clients.map((c) => [c.id, c.name]));
}
export function clientConnected(id, name) {
  names.set(id, name ?? null);
}

/** A client by name: "texture-app"; unnamed "client 24"; gone "client 24 (disconnected)". */
export function clientName(id) {
  if (id === 0) return 'shared';
  if (!names.has(id)) return `client ${id} (disconnected)`;
  return names.get(id) || `client ${id}`;
}

/** A span naming a client, its id in the tooltip. */
export function clientSpan(id) {
  return el('span', { class: 'client', title: `client #${id}` }, clientName(id));
}

// ---- the tooltip -------------------------------------------------------------

/** Show lines of text beside the pointer. */
export function showTip(ev, lines) {
  const tip = $('tip');
  tip.replaceChildren(...lines.map((l, i) => el('div', { class: i === 0 ? 'tip-head' : '' }, l)));
  tip.hidden = false;
  const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = ev.clientY + 16 + tip.offsetHeight > window.innerHeight ? ev.clientY - tip.offsetHeight - 10 : ev.clientY + 16;
  Object.assign(tip.style, { left: `${Math.max(4, x)}px`, top: `${Math.max(4, y)}px` });
}

export function hideTip() {
  $('tip').hidden = true;
}
