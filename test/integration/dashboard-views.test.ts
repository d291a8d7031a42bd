/**
 * The dashboard's views in a real browser (headless Chromium, as
 * dashboard.test.ts), on a daemon whose config adds a `monitor` token (the
 * page's, so it still works after a restart) and sends every allocation as
 * its own event:
 *
 * - Pool maps are grouped by arena and labelled with the arena's client;
 *   hovering a page cell names the buffer in it, its client and its
 *   physical address (the mouse moved to the cell the canvas's layout puts
 *   at the buffer's address).
 * - Each zone is drawn by physical address with its free blocks per order
 *   (as status has them); hovering the bounce pool's cells names it.
 * - Clients appear by name; a driver's refusal is a table of what it needs
 *   and what the buffer has, not JSON; cut lists say "200 of N".
 * - The daemon stops: the page dims its last numbers and says so; the
 *   daemon starts again on the same socket and port: live again.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient, rejection } from '../helpers/procs.js';
import { client, KiB, MiB } from '../helpers/drivers.js';
import { CHROMIUM, ARGS, becomes, inPage, rowsJs, watchedPage } from '../helpers/browser.js';
import { DEFAULT_MACHINE } from '../../daemon/config/default-machine.js';
import type { HandleInfo, Status } from '../../client/index.js';

const root = t;
const VIEWPORT = { width: 1400, height: 1000 };
const SECRET = 'dashboard-viewer-secret-0123456789';
const CONFIG = {
  ...DEFAULT_MACHINE,
  events: { allocRate: 100_000 },
  auth: { ...DEFAULT_MACHINE.auth, tokens: [{ name: 'viewer', secret: SECRET, capabilities: ['monitor'] }] },
};
/** Waits that span a daemon restart and the page's reconnection backoff; a bound on "never", not a timing assertion. */
const RESTART_MS = 30_000;

const hex = (n: number) => `0x${n.toString(16)}`;

if (!existsSync(CHROMIUM)) {
  t.fail(`the dashboard test needs headless Chromium at ${CHROMIUM} (Debian package 'chromium'), which is not installed: .ci/run installs it (apt-get install chromium)`);
} else {
  await run();
}

/** A canvas's data-layout: where each address is drawn. */
interface Layout {
  cellBytes: number;
  cellPx: number;
  cols: number;
  bases?: number[];
  tileBytes?: number;
  gap?: number;
  base?: number;
}

/** Move the mouse over the cell of `addr` in a pool-map or zone canvas (its data-layout says where), and return the tooltip's lines. */
async function hover(page: Page, selector: string, addr: number): Promise<string[]> {
  // a live snapshot redraws the canvases (new elements) about once a second: when one was replaced under
  // the steps below (scroll, layout, box, mouse), start again on the fresh one, from outside it
  for (let attempt = 0; ; attempt++) {
    try {
      return await hoverOnce(page, selector, addr);
    } catch (e) {
      if (attempt >= 4 || !/not attached|detached|no tooltip/.test((e as Error).message)) throw e;
      await page.mouse.move(0, 0);
    }
  }
}

async function hoverOnce(page: Page, selector: string, addr: number): Promise<string[]> {
  const loc = page.locator(selector).first();
  await loc.scrollIntoViewIfNeeded();
  const l = JSON.parse(await inPage<string>(page, `document.querySelector(${JSON.stringify(selector)}).dataset.layout`)) as Layout;
  let x: number;
  let y: number;
  if (l.bases !== undefined) {
    // pool map: squares of 32×16 cells, `cols` squares to a row, `gap` px apart
    const i = l.bases.findIndex((b) => addr >= b && addr < b + l.tileBytes!);
    if (i < 0) throw new Error(`${hex(addr)} is in no square of ${selector}`);
    const j = Math.floor((addr - l.bases[i]!) / l.cellBytes);
    x = (i % l.cols) * (32 * l.cellPx + l.gap!) + (j % 32) * l.cellPx;
    y = Math.floor(i / l.cols) * (16 * l.cellPx + l.gap!) + Math.floor(j / 32) * l.cellPx;
  } else {
    // zone: cells from its base, `cols` to a row
    const c = Math.floor((addr - l.base!) / l.cellBytes);
    x = (c % l.cols) * l.cellPx;
    y = Math.floor(c / l.cols) * l.cellPx;
  }
  const box = await loc.boundingBox();
  if (box === null) throw new Error(`${selector} detached before the mouse got there`);
  await page.mouse.move(box.x + x + l.cellPx / 2, box.y + y + l.cellPx / 2);
  if (!(await becomes(page, `!document.getElementById('tip').hidden`))) throw new Error(`no tooltip over ${selector}`);
  return inPage<string[]>(page, `[...document.querySelectorAll('#tip div')].map((d) => d.textContent)`);
}

async function run(): Promise<void> {
  const d = await startDaemon(t, { config: CONFIG, args: ['--http', '127.0.0.1:0'], logLevel: 'info' });
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  const url = (await admin.status()).dashboard!;
  const port = Number(new URL(url).port);
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  t.teardown(() => browser.close());
  const { page, problems } = await watchedPage(browser, VIEWPORT);

  let app: Awaited<ReturnType<typeof spawnClient>>;
  let comp: Awaited<ReturnType<typeof spawnClient>>;
  let direct: HandleInfo, large: HandleInfo, tile: HandleInfo, theirs: HandleInfo;
  let st: Status;

  t.test('texture-app and compositor allocate; the page goes live with the monitor token', async (t) => {
    // killed at the end of the file, not of this subtest
    app = await spawnClient(root, d.socket, 'texture-app');
    comp = await spawnClient(root, d.socket, 'compositor');
    direct = await app.call<HandleInfo>('alloc', { pool: 'huge', size: 5 * MiB });
    large = await app.call<HandleInfo>('alloc', { pool: 'huge', size: 300 * KiB });
    tile = await app.call<HandleInfo>('alloc', { pool: 'default', size: 2048 });
    theirs = await comp.call<HandleInfo>('alloc', { pool: 'huge', size: 700 * KiB });
    await app.call('send', tile.handle, 'compositor');
    await comp.wait((l) => l['event'] === 'handle', 'the handle event');
    t.match([direct.kind, large.kind, theirs.kind], ['direct', 'large', 'large']);
    await page.goto(`${url}#token=${SECRET}`);
    t.ok(await becomes(page, `document.getElementById('conn').textContent === 'live'`), '#conn says live');
    t.ok(await becomes(page, `document.querySelectorAll('#facts dd')[1]?.textContent === '${d.proc.pid}'`), "the daemon's pid");
  });

  t.test('pool squares grouped and labelled by arena (client)', async (t) => {
    const groups = `[...document.querySelectorAll('div.pool[data-pool="huge"] .arena')].map((a) => [a.dataset.owner, a.querySelector('.who').textContent])`;
    const want = [[String(app.id), 'texture-app'], [String(comp.id), 'compositor']].sort();
    const ok = await becomes(page, `JSON.stringify((${groups}).sort()) === ${JSON.stringify(JSON.stringify(want))}`);
    t.ok(ok, 'the huge pool: an arena for texture-app, one for compositor, labelled by name', ok ? {} : { shown: await inPage(page, groups) });
    const bases = (owner: number) => inPage<number[]>(page, `JSON.parse(document.querySelector('div.pool[data-pool="huge"] .arena[data-owner="${owner}"] canvas').dataset.layout).bases`);
    const square = (addr: number) => addr - (addr % (2 * MiB));
    const mine = await bases(app.id);
    const yours = await bases(comp.id);
    t.ok(mine.includes(square(direct.segments[0]!.addr)) && mine.includes(square(large.segments[0]!.addr)), "texture-app's squares hold its buffers");
    t.ok(yours.includes(square(theirs.segments[0]!.addr)), "compositor's square holds its buffer");
    t.same(mine.filter((b) => yours.includes(b)), [], 'no square in both');
  });

  t.test('hovering a page cell names the buffer, its client and its physical address', async (t) => {
    const sel = (owner: number) => `div.pool[data-pool="huge"] .arena[data-owner="${owner}"] canvas`;
    const a = direct.segments[0]!.addr;
    const lines = await hover(page, sel(app.id), a);
    t.match(lines[0], new RegExp(`^${hex(a)} – 0x[0-9a-f]+ · pool huge$`), 'the cell: its address range and pool');
    t.ok(lines.some((l) => l.startsWith(`buffer #${direct.buffer} of texture-app at ${hex(a)} (`)), 'the direct buffer, its client, its address', { lines });
    t.ok(lines.includes('direct buffer') && lines.includes('arena: texture-app'), 'what the cell is, whose arena', { lines });
    const b = theirs.segments[0]!.addr + 8 * KiB;
    const other = await hover(page, sel(comp.id), b);
    t.ok(other.some((l) => l.startsWith(`buffer #${theirs.buffer} of compositor at ${hex(theirs.segments[0]!.addr)}`)), "compositor's large buffer", { other });
    t.ok(other.includes('large extent'), 'a large extent', { other });
  });

  t.test('zones laid out by physical address, with their free blocks per order', async (t) => {
    st = await admin.status();
    const zones = st.memory.regions.flatMap((r) => r.zones);
    t.ok(await becomes(page, `document.querySelectorAll('#zones .zone').length === ${zones.length}`), `a view per zone (${zones.length})`);
    for (const z of zones) {
      const q = `document.querySelector('#zones .zone[data-zone="${z.name}"]')`;
      const label = await inPage<string>(page, `${q}.querySelector('.zone-label').textContent`);
      t.match(label, `${z.name} ${hex(z.base)} – ${hex(z.base + z.size)} · `, `${z.name}: its address range`);
      const orders = `[...${q}.querySelectorAll('table.orders tr:nth-child(2) td.n')].map((c) => Number(c.textContent))`;
      const ok = await becomes(page, `JSON.stringify(${orders}) === ${JSON.stringify(JSON.stringify(z.freeByOrder))}`);
      t.ok(ok, `${z.name}: free blocks per order as status says`, ok ? {} : { shown: await inPage(page, orders), status: z.freeByOrder });
    }
    const bounce = st.dma.bounce!;
    const mid = bounce.base + bounce.size / 2;
    const zone = zones.find((z) => mid >= z.base && mid < z.base + z.size)!;
    const lines = await hover(page, `#zones .zone[data-zone="${zone.name}"] canvas`, mid);
    t.match(lines[0], new RegExp(`^${zone.name} · 0x[0-9a-f]+ – 0x[0-9a-f]+$`), 'the cell: zone and address range');
    const [lo, hi] = lines[0]!.split(' · ')[1]!.split(' – ').map((x) => Number(x));
    t.ok(lo! <= mid && mid < hi!, 'the range holds the address hovered');
    t.ok(lines.includes('swiotlb bounce pool: 100%'), 'held by the bounce pool', { lines });
    t.ok(lines.includes('nothing free'));
  });

  t.test('clients by name, not #id', async (t) => {
    const row = `(${rowsJs('buffers')})['buffer-${tile.buffer}']`;
    const ok = await becomes(page, `${row} === ${JSON.stringify(`#${tile.buffer}|default|2 KiB|small|texture-app|texture-app, compositor|–`)}`);
    t.ok(ok, 'creator and holders by name', ok ? {} : { shown: await inPage(page, row) });
    const ids = await inPage<string[]>(page, `[...document.querySelectorAll('#buffers tr[data-id] td:nth-child(5), #buffers tr[data-id] td:nth-child(6), #drivers td:nth-child(2)')].map((c) => c.textContent).filter((x) => /#\\d/.test(x))`);
    t.same(ids, [], 'no client shown as #id');
  });

  t.test("a driver's refusal as rows: what it needs, what the buffer has", async (t) => {
    const e = await rejection(app.call('register', tile.handle, 'display'));
    t.equal(e.code, 'EATTR');
    const mm = (e.details as { mismatches: { attribute: string; required: unknown; actual: unknown }[] }).mismatches;
    const li = `[...document.querySelectorAll('#events li')].find((li) => li.textContent.includes('display refused buffer #${tile.buffer} of texture-app (EATTR)'))`;
    t.ok(await becomes(page, `${li} !== undefined`), 'the refusal in the event log, the client by name');
    const rows = await inPage<{ title: string; cells: string[] }[]>(page, `[...${li}.querySelectorAll('table.refusal tr')].map((r) => ({ title: r.cells[0].title, cells: [...r.cells].map((c) => c.textContent) }))`);
    t.same(rows[0]!.cells, ['attribute', 'display needs', 'the buffer has'], 'a header');
    t.same(rows.slice(1).map((r) => r.title), mm.map((m) => m.attribute), 'a row per mismatch');
    const cache = mm.find((m) => m.attribute === 'cache')!;
    t.same(rows.find((r) => r.title === 'cache')?.cells, ['cache policy', (cache.required as string[]).join(' or '), String(cache.actual)], 'the cache row in words');
    t.notOk(rows.some((r) => r.cells.some((c) => /["[\]{}]/.test(c))), 'no quoted JSON', { rows });
  });

  t.test('lists cut to their newest say how many of how many they show', async (t) => {
    const bulk = await client(t, d.socket, 'bulk');
    for (let i = 0; i < 400; i++) await bulk.alloc({ pool: 'default', size: 64 });
    st = await admin.status();
    const want = `200 of ${st.buffers.live} live buffers shown (the newest)`;
    const ok = await becomes(page, `document.getElementById('buffers-count').textContent === ${JSON.stringify(want)}`);
    t.ok(ok, `#buffers-count: ${want}`, ok ? {} : { shown: await inPage(page, `document.getElementById('buffers-count').textContent`) });
    t.equal(await inPage<number>(page, `document.querySelectorAll('#buffers tr[data-id]').length`), 200, '200 rows');
    t.ok(await becomes(page, `document.querySelectorAll('#events li').length === 300`), 'the event log keeps 300');
    const count = await inPage<string>(page, `document.getElementById('events-count').textContent`);
    const m = /^300 of (\d+) since this page opened shown \(the newest\)$/.exec(count);
    t.ok(m !== null && Number(m[1]) >= 400, `#events-count: ${count}`);
  });

  t.test('no page errors, console errors or CSP violations while the daemon ran', async (t) => {
    t.same(problems, [], 'pageerror and console errors');
    t.same(await inPage(page, `window.__csp`), [], 'securitypolicyviolation events');
  });

  t.test('the daemon gone: the last numbers dimmed and said to be stale; back: live again', async (t) => {
    const state = `({ stale: document.body.classList.contains('stale'), banner: document.getElementById('stale').hidden ? null : document.getElementById('stale').textContent, conn: document.getElementById('conn').textContent, opacity: Number(getComputedStyle(document.querySelector('main')).opacity), pid: document.querySelectorAll('#facts dd')[1].textContent })`;
    t.match(await inPage(page, state), { stale: false, banner: null, conn: 'live', opacity: 1 }, 'live: not dimmed, no banner');
    await d.stop('SIGTERM');
    t.ok(await becomes(page, `document.body.classList.contains('stale')`, RESTART_MS), 'dimmed once the WebSocket closed');
    const gone = await inPage<{ banner: string; conn: string; pid: string }>(page, state);
    t.match(gone, { stale: true, conn: 'daemon gone, reconnecting…', pid: String(d.proc.pid) }, 'says so; the numbers stay');
    t.match(gone.banner, /^The daemon is gone: the numbers below are its last, from .+, and no longer change\. Reconnecting…/);
    t.ok(await becomes(page, `Number(getComputedStyle(document.querySelector('main')).opacity) < 0.6`), 'the numbers dimmed');

    const d2 = await startDaemon(t, { config: CONFIG, socket: d.socket, args: ['--http', `127.0.0.1:${port}`], logLevel: 'info' });
    t.ok(await becomes(page, `document.querySelectorAll('#facts dd')[1].textContent === '${d2.proc.pid}'`, RESTART_MS), 'the new daemon on the page');
    t.match(await inPage(page, state), { stale: false, banner: null, conn: 'live' }, 'live again, not dimmed');
  });
}
