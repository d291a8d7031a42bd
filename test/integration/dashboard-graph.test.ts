/**
 * The dashboard's ownership graph in a real browser (headless Chromium, as
 * dashboard.test.ts): the same nodes and edges as `graph` answers, drawn
 * live — a buffer passed from one process to another appears with its
 * holders, and the two leak shapes (held only by a token, only by a
 * registration) are drawn red and listed; when they are resolved, they go.
 */
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { startDaemon } from '../helpers/daemon.js';
import { spawnClient } from '../helpers/procs.js';
import { client } from '../helpers/drivers.js';
import { CHROMIUM, ARGS, becomes, inPage, watchedPage } from '../helpers/browser.js';
import type { HandleInfo } from '../../client/index.js';

if (!existsSync(CHROMIUM)) {
  t.fail(`the dashboard test needs headless Chromium at ${CHROMIUM} (Debian package 'chromium'), which is not installed`);
} else {
  t.test('the graph drawn live, leak shapes red and listed', async (t) => {
    await run(t);
  });
}

async function run(t: Test): Promise<void> {
  const d = await startDaemon(t, { args: ['--http', '127.0.0.1:0'] });
  const admin = await client(t, d.socket, 'admin', { useCookie: true });
  const url = (await admin.status()).dashboard!;
  const { readCookie } = await import('../../client/connect.js');
  const token = readCookie(d.socket)!;
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  t.teardown(() => browser.close());
  const { page, problems } = await watchedPage(browser, { width: 1400, height: 1000 });

  const cam = await spawnClient(t, d.socket, 'camera');
  const enc = await spawnClient(t, d.socket, 'encoder');
  await enc.call('accept', ['camera']);
  const frame = await cam.call<HandleInfo>('alloc', { pool: 'default', size: 64 * 1024 });
  await cam.call('send', frame.handle, 'encoder', { rights: ['read'] });
  await enc.wait((l) => l['event'] === 'handle', 'the frame');
  const orphan = await cam.call<HandleInfo>('alloc', { pool: 'default', size: 4096 });
  const tok = await cam.call<{ token: string }>('export', orphan.handle);
  await cam.call('close', orphan.handle);
  const scratch = await cam.call<HandleInfo>('alloc', { for: ['gpu'], size: 4096 });
  await cam.call('register', scratch.handle, 'gpu');
  await cam.call('close', scratch.handle);

  await page.goto(`${url}#token=${token}`);
  t.ok(await becomes(page, `document.getElementById('conn').textContent === 'live'`), 'live');

  // the page draws what the daemon's graph says, node for node and edge for edge
  const g = await admin.graph();
  const nodes = `[...document.querySelectorAll('#graph g.node')].map((n) => n.dataset.id)`;
  const ok = await becomes(page, `JSON.stringify(${nodes}) === ${JSON.stringify(JSON.stringify(g.nodes.map((n) => n.id)))}`);
  t.ok(ok, 'the nodes of graph, in its order', ok ? {} : { shown: await inPage(page, nodes), want: g.nodes.map((n) => n.id) });
  const edges = `[...document.querySelectorAll('#graph path.edge')].map((e) => [e.dataset.type, e.dataset.from, e.dataset.to].join(' '))`;
  t.same(await inPage(page, edges), g.edges.map((e) => `${e.type} ${e.from} ${e.to}`), 'the edges of graph');
  t.ok(g.edges.some((e) => e.type === 'passed-to' && e.from === `client:${cam.id}` && e.to === `client:${enc.id}`), 'camera passed the frame to encoder');
  t.same(await inPage(page, `[...document.querySelectorAll('#graph g.node.leak')].map((n) => n.dataset.id)`), [`buffer:${orphan.buffer}`, `buffer:${scratch.buffer}`], 'the leak shapes drawn red');
  const leaks = `[...document.querySelectorAll('#graph-leaks li.bad')].map((l) => l.textContent)`;
  t.same(await inPage(page, leaks), [
    `buffer #${orphan.buffer} (4 KiB, default) is held only by an export token in flight`,
    `buffer #${scratch.buffer} (4 KiB, ${scratch.pool}) is held only by driver registrations`,
  ]);
  t.match(await inPage<string>(page, `document.getElementById('graph-count').textContent`), /^3 buffers · 2 clients · 1 drivers · \d+ edges$/);

  // resolved: the token imported, the registration dropped — live, the list empties
  await enc.call('import', tok.token);
  await cam.call('unregister', { buffer: scratch.buffer }, 'gpu');
  t.ok(await becomes(page, `document.querySelectorAll('#graph-leaks li.bad').length === 0 && document.querySelectorAll('#graph g.node.leak').length === 0`), 'no leak shapes left');
  t.ok(await becomes(page, `document.querySelector('#graph-leaks li.none')?.textContent === 'no buffer is held only by a token or only by registrations'`));
  t.same(problems, [], 'no page errors');
  t.same(await inPage(page, 'window.__csp'), [], 'no CSP violations');
  await cam.cmd('exit');
  await enc.cmd('exit');
}
