/**
 * The web dashboard in a real browser: the daemon started with
 * `--http 127.0.0.1:0`, the page opened in headless Chromium (Debian's
 * /usr/bin/chromium, driven by playwright-core) with the admin cookie as
 * `#token=`, and real client processes (test/fixtures/client.mjs) doing the
 * work it shows:
 *
 * - "texture-app" allocates in the 2 MiB 'huge' pool (slab, large extent and
 *   a 5 MiB direct buffer, plus a lazily backed one that holds a hugepage
 *   reservation), in 'default', and a write-combine buffer it registers with
 *   the built-in non-coherent 'gpu'; it passes a buffer to "compositor"; an
 *   admin shrinks the 2 MiB hugepage pool so in-use pages become surplus.
 * - The page goes live with no page errors, console errors or CSP
 *   violations; a new buffer is in the event log at once and in the buffers
 *   table within 1 s; hugepages, pool maps (canvas pixels in the legend's
 *   colours), clients, drivers, violations and the event log match the
 *   daemon's status; a full-page screenshot goes to test/output/dashboard.png.
 *   Clients appear by name (the buffers table's creator and holders too).
 * - A wrong token never goes live and shows nothing; no token shows the form.
 *
 * Hover, arenas, zones, cut lists, refusals and a daemon gone:
 * dashboard-views.test.ts. The browser helpers: test/helpers/browser.ts.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type WebSocket as PwWebSocket } from 'playwright-core';
import { startDaemon, ROOT } from '../helpers/daemon.js';
import { CHROMIUM, ARGS, EVENTUALLY_MS, becomes, inPage, rowsJs, feedJs, watchedPage } from '../helpers/browser.js';
import { spawnClient } from '../helpers/procs.js';
import { client, KiB, MiB } from '../helpers/drivers.js';
import { cookiePathFor } from '../../protocol/paths.js';
import type { HandleInfo, Status } from '../../client/index.js';

const root = t;
const OUT_DIR = join(ROOT, 'test', 'output');
const SHOT = join(OUT_DIR, 'dashboard.png');
const VIEWPORT = { width: 1400, height: 1000 };
/** The spec'd budget: a new buffer is on the page within this long. */
const VISIBLE_MS = 1000;

/** The canvas colours of the legend (app.js COLORS, slabColor), computed here independently. */
const LARGE = [0xa8, 0x55, 0xf7];
const DIRECT = [0xf5, 0x9e, 0x0b];
const FREE = [0x2a, 0x31, 0x3c];
function hsl(h: number, s: number, l: number): number[] {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}
/** slabColor(fill) for every fill: hsl(217 91% 38..72%). */
const SLAB = Array.from({ length: 72 - 38 + 1 }, (_, i) => hsl(217, 0.91, (38 + i) / 100));

if (!existsSync(CHROMIUM)) {
  t.fail(`the dashboard test needs headless Chromium at ${CHROMIUM} (Debian package 'chromium'), which is not installed: .ci/run installs it (apt-get install chromium)`);
} else {
  await run();
}

async function run(): Promise<void> {
  const started = Date.now();
  const d = await startDaemon(t, { args: ['--http', '127.0.0.1:0'], logLevel: 'info' });
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  const status0 = await admin.status();
  if (status0.dashboard === null) throw new Error(`status.dashboard is null although the daemon was started with --http; stderr: ${d.stderr()}`);
  const url = status0.dashboard;
  const token = readFileSync(cookiePathFor(d.socket), 'utf8').trim();

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  t.teardown(() => browser.close());

  // the page under test, with every error it reports
  const { page, problems } = await watchedPage(browser, VIEWPORT);
  // the snapshots the page receives (the 1 s test allocates right after one)
  let snapshots = 0;
  let snapshotWaiters: (() => void)[] = [];
  const nextSnapshot = () => new Promise<void>((resolve) => snapshotWaiters.push(resolve));
  page.on('websocket', (ws: PwWebSocket) =>
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string' && f.payload.startsWith('{"event":"snapshot"')) {
        snapshots++;
        const w = snapshotWaiters;
        snapshotWaiters = [];
        for (const r of w) r();
      }
    }),
  );

  let app: Awaited<ReturnType<typeof spawnClient>>;
  let comp: Awaited<ReturnType<typeof spawnClient>>;
  const bufs: Record<string, HandleInfo> = {};
  /** ms from the new buffer's alloc reply to its row in #buffers; null: not within the budget. */
  let freshRow: number | null = null;
  /** The status the page shows from the hugepages subtest on (nothing changes until the violation). */
  let st: Status;

  t.test('the dashboard URL and the page going live', async (t) => {
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'status.dashboard is the loopback listener');
    t.match(token, /^\S{16,}$/, 'the admin cookie beside the socket');
    const loaded = Date.now();
    const res = await page.goto(`${url}#token=${token}`);
    t.equal(res?.status(), 200, 'the page is served');
    t.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/, 'with its CSP');
    t.ok(await becomes(page, `document.getElementById('conn').textContent === 'live'`), '#conn says live');
    t.equal(await inPage(page, `document.getElementById('conn').className`), 'conn up');
    t.ok(await becomes(page, `document.querySelectorAll('#facts dd').length === 4`), 'a snapshot is rendered: the facts line');
    const facts = await inPage<string[]>(page, `[...document.querySelectorAll('#facts dd')].map((e) => e.textContent)`);
    t.equal(facts[0], status0.version, 'version');
    t.equal(facts[1], String(d.proc.pid), "the daemon's pid");
    t.equal(facts[3], d.socket, 'socket');
    t.comment(`page live and rendered ${Date.now() - loaded} ms after goto`);
    t.same(problems, [], 'no page errors so far');
  });

  t.test('texture-app and compositor populate the daemon; the event log shows it', async (t) => {
    // killed at the end of the file, not of this subtest
    app = await spawnClient(root, d.socket, 'texture-app');
    comp = await spawnClient(root, d.socket, 'compositor');
    const alloc = async (key: string, opts: Record<string, unknown>) => (bufs[key] = await app.call<HandleInfo>('alloc', opts));
    // the 2 MiB pool: small (slab) and large classes, a direct 5 MiB buffer, a lazily backed one
    for (let i = 0; i < 24; i++) await alloc(`small${i}`, { pool: 'huge', size: [256, 1000, 4096, 9000][i % 4] });
    for (let i = 0; i < 6; i++) await alloc(`large${i}`, { pool: 'huge', size: [64 * KiB, 300 * KiB, 700 * KiB][i % 3] });
    await alloc('direct', { pool: 'huge', size: 5 * MiB });
    await alloc('lazy', { pool: 'huge', size: 4 * MiB, populate: false });
    await alloc('plain', { pool: 'default', size: 100_000 });
    await alloc('tile', { pool: 'default', size: 2048 });
    await alloc('texture', { pool: 'wc', size: 1 * MiB });
    t.match(bufs['direct'], { kind: 'direct', pool: 'huge' });
    t.match(bufs['large0'], { kind: 'large', pool: 'huge' });
    t.match(bufs['small0'], { kind: 'small', pool: 'huge' });
    const reg = await app.call<{ driver: string }>('register', bufs['texture']!.handle, 'gpu');
    t.match(reg, { driver: 'gpu' }, 'the texture is registered with the gpu');
    await app.call('send', bufs['tile']!.handle, 'compositor');
    await comp.wait((l) => l['event'] === 'handle', 'the handle event');
    // shrink the 2 MiB pool below what is in use: the balance becomes surplus
    const hp = (await admin.status()).hugepages.find((h) => h.size === 2 * MiB)!;
    t.ok(hp.inUse >= 3 && hp.reserved >= 2, `2 MiB hugepages in use (${hp.inUse}) and reserved (${hp.reserved})`);
    await admin.setHugepages(2 * MiB, 2);
    const after = (await admin.status()).hugepages.find((h) => h.size === 2 * MiB)!;
    t.ok(after.surplus > 0, `surplus hugepages after the shrink (${after.surplus})`);

    const tex = bufs['texture']!.buffer;
    const wanted: [string, string, string][] = [
      ['alloc', `buffer #${bufs['direct']!.buffer}: 5 MiB from huge by texture-app (#${app.id})`, 'the direct allocation'],
      ['alloc', `buffer #${bufs['small0']!.buffer}: 256 B from huge by texture-app (#${app.id})`, 'a small allocation'],
      ['handles', `buffer #${bufs['tile']!.buffer} passed texture-app (#${app.id}) → compositor (#${comp.id})`, 'the pass to compositor'],
      ['drivers', `gpu registered buffer #${tex} at 0x`, "the gpu's registration"],
      ['clients', `texture-app (#${app.id}) connected as anonymous`, "texture-app's connection"],
      ['hugepages', '2 MiB hugepages resized: asked 2', 'the resize'],
    ];
    for (const [topic, text, what] of wanted) {
      const js = `(${feedJs('events')}).some(([t, x]) => t === ${JSON.stringify(topic)} && x.includes(${JSON.stringify(text)}))`;
      const ok = await becomes(page, js);
      t.ok(ok, `event log: a ${topic} line for ${what}`, ok ? {} : { wanted: text, lines: (await inPage<string[][]>(page, feedJs('events'))).slice(0, 15) });
    }
  });

  t.test('a new buffer: the event log shows it at once', async (t) => {
    // Allocate right after a snapshot reached the page: the next one is a whole interval away.
    await nextSnapshot();
    const fresh = await app.call<HandleInfo>('alloc', { pool: 'default', size: 12_345 });
    const t0 = Date.now();
    const sel = `#buffers tr[data-id="buffer-${fresh.buffer}"]`;
    const row = page.waitForSelector(sel, { timeout: VISIBLE_MS }).then(
      () => Date.now() - t0,
      () => null,
    );
    const line = becomes(page, `(${feedJs('events')}).some(([t, x]) => t === 'alloc' && x.includes('buffer #${fresh.buffer}: 12 KiB from default by texture-app'))`, VISIBLE_MS).then((ok) => (ok ? Date.now() - t0 : null));
    const lineMs = await line;
    t.not(lineMs, null, `the alloc line for buffer #${fresh.buffer} is in #events within ${VISIBLE_MS} ms`);
    t.comment(`alloc line in #events after ${lineMs} ms`);
    const rowMs = await row;
    t.comment(rowMs === null ? `buffers row not there ${VISIBLE_MS} ms after the alloc` : `buffers row after ${rowMs} ms`);
    bufs['fresh'] = fresh;
    freshRow = rowMs;
    // the alloc event adds a provisional row; the next snapshot fills in the rest (kind)
    const want = `#${fresh.buffer}|default|12 KiB|small|texture-app|texture-app|–`;
    const full = await becomes(page, `(${rowsJs('buffers')})[${JSON.stringify(`buffer-${fresh.buffer}`)}] === ${JSON.stringify(want)}`);
    const cells = (await inPage<Record<string, string>>(page, rowsJs('buffers')))[`buffer-${fresh.buffer}`];
    t.ok(full, 'its row after a snapshot: id, pool, size, kind, creator, holders, registrations', { cells, want });
  });

  t.test(
    `a new buffer is in the buffers table within ${VISIBLE_MS} ms`,
    {},
    async (t) => {
      t.not(freshRow, null, `#buffers tr[data-id="buffer-${bufs['fresh']?.buffer}"] within ${VISIBLE_MS} ms of the alloc (allocated right after a snapshot)`);
    },
  );

  t.test('hugepages: the 2 MiB pool as status says', async (t) => {
    st = await admin.status();
    const hp = st.hugepages.find((h) => h.size === 2 * MiB)!;
    const label = `free ${hp.free} · reserved ${hp.reserved} · surplus ${hp.surplus} · nr ${hp.nr} (asked ${hp.requested})`;
    const js = `[...document.querySelectorAll('#hugepages .card.hp')].find((c) => c.querySelector('.v').textContent === '2 MiB × ${hp.total}')?.querySelector('.l').textContent ?? ''`;
    const ok = await becomes(page, `(${js}).startsWith(${JSON.stringify(label)})`);
    t.ok(ok, `the 2 MiB card: ${label}`, ok ? {} : { shown: await inPage<string>(page, js) });
    t.ok(hp.surplus > 0 && hp.reserved > 0, 'non-zero surplus and reserved numbers to compare');
    const legendJs = `[...document.querySelectorAll('#hugepages .card.hp')].find((c) => c.querySelector('.v').textContent === '2 MiB × ${hp.total}')?.querySelector('.legend').textContent ?? ''`;
    const legend = `in use ${hp.inUse}reserved ${hp.reserved}free ${hp.free - hp.reserved}surplus ${hp.surplus}`;
    const lok = await becomes(page, `(${legendJs}) === ${JSON.stringify(legend)}`);
    t.ok(lok, `the legend counts surplus pages as in use: ${legend}`, lok ? {} : { shown: await inPage<string>(page, legendJs) });
    const gig = st.hugepages.find((h) => h.size === 1024 * MiB)!;
    t.ok(await becomes(page, `[...document.querySelectorAll('#hugepages .card.hp .v')].some((v) => v.textContent === '1 GiB × ${gig.total}')`), 'the 1 GiB card too');
    const live = await inPage<string[]>(page, `[...document.querySelectorAll('#summary .card')].map((c) => c.textContent)`);
    t.ok(live.includes(`${st.buffers.live}live buffers`), `summary: ${st.buffers.live} live buffers`, { cards: live });
  });

  t.test('armed fault injection: a card says what is armed and how many failures were injected; none before', async (t) => {
    const cards = `[...document.querySelectorAll('#summary .card')].map((c) => c.textContent)`;
    t.notOk((await inPage<string[]>(page, cards)).some((c) => c.includes('failures injected')), 'no card while nothing is armed');
    await admin.faults.set('iova', { times: 5 });
    const ok = await becomes(page, `(${cards}).some((c) => c === '0failures injected (armed: iova 0/0)')`);
    t.ok(ok, 'the card, within a snapshot', ok ? {} : { cards: await inPage<string[]>(page, cards) });
    await admin.faults.clear();
    t.ok(await becomes(page, `!(${cards}).some((c) => c.includes('failures injected'))`), 'gone once cleared (nothing was injected)');
  });

  t.test('pools: the huge pool map draws slab, large and direct pages', async (t) => {
    const box = `div.pool[data-pool="huge"]`;
    t.ok(await becomes(page, `document.querySelector('${box} canvas') !== null`), 'a canvas for the huge pool');
    const huge = st.pools.find((p) => p.name === 'huge')!;
    t.match(await inPage<string>(page, `document.querySelector('${box} .stats').textContent`), new RegExp(`^${huge.buffers} buffers · allocated `), 'its stats line');
    const px = await inPage<{ width: number; height: number; png: number; counts: Record<string, number> }>(
      page,
      `(() => {
        const cv = document.querySelector('${box} canvas');
        const px = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
        const palette = ${JSON.stringify({ slab: SLAB, large: [LARGE], direct: [DIRECT], free: [FREE] })};
        const near = (r, g, b, c) => Math.abs(r - c[0]) <= 1 && Math.abs(g - c[1]) <= 1 && Math.abs(b - c[2]) <= 1;
        const counts = { slab: 0, large: 0, direct: 0, free: 0 };
        for (let i = 0; i < px.length; i += 4) {
          for (const k of Object.keys(palette)) if (palette[k].some((c) => near(px[i], px[i + 1], px[i + 2], c))) { counts[k]++; break; }
        }
        return { width: cv.width, height: cv.height, png: cv.toDataURL('image/png').length, counts };
      })()`,
    );
    t.comment(`huge canvas ${px.width}×${px.height}: ${JSON.stringify(px.counts)}`);
    t.ok(px.width > 0 && px.height > 0, 'the canvas has a size');
    t.ok(px.png > 1000, 'toDataURL gives a non-trivial PNG');
    t.ok(px.counts['slab']! > 0, 'slab pixels (blue, darker = fuller)');
    t.ok(px.counts['large']! > 0, 'large extent pixels (purple)');
    t.ok(px.counts['direct']! > 0, 'direct buffer pixels (amber)');
    t.ok(px.counts['free']! > 0, 'free pixels in the chunks');
    // on 2 MiB tiles a cell is 4 KiB, drawn 3×3 px: 5 MiB is 1280 cells
    t.ok(px.counts['direct']! >= (5 * MiB) / 4096 * 9, 'at least the 5 MiB direct buffer in direct cells');
    t.ok(await becomes(page, `document.querySelector('div.pool[data-pool="default"] canvas') !== null`), "a canvas for 'default'");
    t.ok(await becomes(page, `document.querySelector('div.pool[data-pool="wc"] canvas') !== null`), "a canvas for 'wc' (the texture)");
    t.equal(await inPage<string>(page, `document.querySelector('div.pool[data-pool="giant"] .empty')?.textContent ?? ''`), 'holds no pages', "'giant' holds no pages");
    t.equal(await inPage<number>(page, `document.querySelectorAll('div.pool').length`), st.pools.length, 'one box per pool');
  });

  t.test('clients: texture-app by name', async (t) => {
    const c = st.clients.find((x) => x.id === app.id)!;
    t.ok(await becomes(page, `document.querySelector('#clients tr[data-id="client-${app.id}"]') !== null`), 'a row for texture-app');
    const rows = await inPage<Record<string, string>>(page, rowsJs('clients'));
    const cells = rows[`client-${app.id}`]!.split('|');
    const size = (n: number) => inPage<string>(page, `import(new URL('util.js', document.baseURI).href).then((m) => m.size(${n}))`); // the page's own formatting
    t.same(cells, ['texture-app', String(app.id), String(c.pid), String(c.uid), 'anonymous', String(c.handles), await size(c.bytes), cells[7]], 'name, id, pid, uid, principal, handles, its own bytes, connected');
    // the quota is the principal's: its use once per principal, in a table of its own
    const principals = await inPage<Record<string, string>>(page, rowsJs('principals'));
    const anonymous = st.clients.filter((x) => x.principal === 'anonymous');
    t.same(principals['principal-anonymous']!.split('|'), ['anonymous', String(anonymous.length), await size(anonymous[0]!.principalBytes), 'none'], 'principal, clients, bytes, quota');
    t.match(rows[`client-${comp.id}`], /^compositor\|/, 'compositor too');
    t.equal(await inPage<string>(page, `document.getElementById('clients-count').textContent`), `${st.clients.length} connected`);
  });

  t.test('drivers: gpu with one registration', async (t) => {
    t.ok(await becomes(page, `document.querySelector('#drivers tr[data-id="driver-gpu"]') !== null`), 'a row for gpu');
    const rows = await inPage<Record<string, string>>(page, rowsJs('drivers'));
    const gpu = rows['driver-gpu']!.split('|');
    t.same(gpu.slice(0, 5), ['gpu', 'builtin', 'no', 'yes', '1'], 'name, kind, coherent, iommu, registrations 1');
    t.equal(gpu[5], '1 MiB', '1 MiB registered');
    t.match(gpu[6], /^1 MiB \/ 4(\.0)? GiB$/, 'IOVA used of the 4 GiB space');
    t.equal(rows['driver-jpeg']!.split('|')[4], '0', 'jpeg: no registrations');
    t.equal(Object.keys(rows).length, st.drivers.length, 'every driver');
    const buffers = await inPage<Record<string, string>>(page, rowsJs('buffers'));
    t.match(buffers[`buffer-${bufs['texture']!.buffer}`], /\|wc\|1 MiB\|large\|.*\|gpu$/, 'the texture row says registered with gpu');
  });

  t.test('violations: a device write then an unsynced CPU read appears in #violations', async (t) => {
    const h = bufs['texture']!;
    t.equal(await inPage<string>(page, `document.querySelector('#violations li').textContent`), 'no violations: every transfer was synced', 'none before');
    await app.cmd('devfill', { driver: 'gpu', handle: h.handle, length: 4096, seed: 7 });
    const before = (await admin.violations()).total;
    await app.cmd('verify', { handle: h.handle, length: 4096, seed: 7 }); // no sync {phase:'start'}
    const vs = (await admin.violations({ buffer: h.buffer })).violations;
    t.equal((await admin.violations()).total, before + 1, 'one violation');
    t.match(vs.at(-1), { kind: 'cpu-access-while-device-owned', client: { id: app.id, name: 'texture-app' }, driver: 'gpu' });
    const want = `cpu-access-while-device-owned: client ${app.id} read buffer ${h.buffer} while device 'gpu' owns it`;
    const ok = await becomes(page, `[...document.querySelectorAll('#violations li')].some((li) => li.textContent.includes(${JSON.stringify(want)}))`);
    t.ok(ok, '#violations lists it', ok ? {} : { shown: await inPage(page, feedJs('violations')) });
    t.ok(
      await becomes(page, `(${feedJs('events')}).some(([t, x]) => t === 'violations' && x.includes(${JSON.stringify(want)}))`),
      'the event log has the violations line',
    );
    // after the next snapshot: one line, not the event's and the snapshot's both, and the count
    await nextSnapshot();
    await nextSnapshot();
    const lines = await inPage<string[][]>(page, feedJs('violations'));
    t.equal(lines.filter(([, x]) => x!.includes(want)).length, 1, 'listed once after a snapshot');
    t.equal(await inPage<string>(page, `document.getElementById('violations-count').textContent`), `${before + 1} since start`);
  });

  t.test('screenshot of the populated page', async (t) => {
    mkdirSync(OUT_DIR, { recursive: true });
    rmSync(SHOT, { force: true });
    await page.screenshot({ path: SHOT, fullPage: true });
    t.ok(existsSync(SHOT), 'written');
    const png = readFileSync(SHOT);
    t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
    t.equal(png.toString('latin1', 12, 16), 'IHDR');
    const w = png.readUInt32BE(16);
    const h = png.readUInt32BE(20);
    t.equal(w, VIEWPORT.width, 'the viewport width');
    t.ok(h > VIEWPORT.height, `full page: taller than the viewport (${h} px)`);
    const size = statSync(SHOT).size;
    t.ok(size > 50 * 1024 && size < 20 * MiB, `a reasonable size (${size} bytes)`);
    t.comment(`screenshot: ${SHOT} (${w}×${h}, ${size} bytes)`);
  });

  t.test('a wrong token never goes live and shows no data', async (t) => {
    const ctx = await browser.newContext({ viewport: VIEWPORT });
    t.teardown(() => ctx.close());
    const bad = await ctx.newPage();
    const errors: string[] = [];
    bad.on('pageerror', (e) => errors.push(e.message));
    let frames = 0;
    const closed = new Set<PwWebSocket>();
    let twoClosed: () => void;
    const twoAttempts = new Promise<boolean>((resolve) => (twoClosed = () => resolve(true)));
    bad.on('websocket', (ws: PwWebSocket) => {
      ws.on('framereceived', () => frames++);
      const done = () => {
        closed.add(ws);
        if (closed.size === 2) twoClosed();
      };
      ws.on('close', done);
      ws.on('socketerror', done);
    });
    await bad.goto(`${url}#token=${'0'.repeat(token.length)}`);
    const gaveUp = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), EVENTUALLY_MS).unref());
    t.ok(await Promise.race([twoAttempts, gaveUp]), 'the first attempt and a retry both end', { attempts: closed.size });
    t.ok(await becomes(bad, `document.getElementById('conn').className === 'conn down'`), '#conn is down');
    const conn = await inPage<string>(bad, `document.getElementById('conn').textContent`);
    t.not(conn, 'live', `#conn: ${conn}`);
    t.equal(frames, 0, 'the daemon sent nothing');
    const empty = await inPage<Record<string, number>>(
      bad,
      `Object.fromEntries(['facts', 'summary', 'hugepages', 'zones', 'pools', 'buffers', 'clients', 'drivers', 'violations'].map((id) => [id, document.getElementById(id).childElementCount]))`,
    );
    t.same(empty, { facts: 0, summary: 0, hugepages: 0, zones: 0, pools: 0, buffers: 0, clients: 0, drivers: 0, violations: 0 }, 'no data anywhere');
    t.same(await inPage(bad, feedJs('events')), [['', 'waiting for activity…']], 'the event log is waiting');
    t.same(errors, [], 'no page errors');
  });

  t.test('no token: the login form', async (t) => {
    const ctx = await browser.newContext({ viewport: VIEWPORT });
    t.teardown(() => ctx.close());
    const p = await ctx.newPage();
    let sockets = 0;
    p.on('websocket', () => sockets++);
    await p.goto(url);
    t.ok(await becomes(p, `document.getElementById('login').hidden === false`), 'the form is shown');
    t.equal(await inPage<string>(p, `document.getElementById('conn').textContent`), 'no token');
    t.equal(sockets, 0, 'no WebSocket without a token');
  });

  t.test('no page errors, console errors or CSP violations on the live page', async (t) => {
    t.same(problems, [], 'pageerror and console errors');
    t.same(await inPage(page, `window.__csp`), [], 'securitypolicyviolation events');
    t.equal(await inPage<string>(page, `document.getElementById('conn').textContent`), 'live', 'still live');
    t.ok(snapshots >= 3, `snapshots received (${snapshots})`);
    t.comment(`whole test ${Date.now() - started} ms`);
  });
}
