/**
 * The dashboard tests' browser: Debian's headless Chromium driven by
 * playwright-core, a page that records its own errors, and page-side checks
 * passed as strings (the DOM is not in the tests' lib, and the TypeScript
 * loader may add helpers to compiled functions that the page does not have).
 */
import type { Browser, Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** How long a correctness wait may take before it counts as "never" (not a timing assertion). */
export const EVENTUALLY_MS = 5000;

/**
 * Whether a page expression becomes truthy within `timeout` ms, polled from
 * here with page.evaluate (DevTools evaluation, which the page's CSP does not
 * govern). Not page.waitForFunction: it re-evaluates a string predicate with
 * eval() inside the page, which the CSP (no 'unsafe-eval') refuses, and that
 * refusal would be counted as the page's own CSP violation.
 */
export async function becomes(page: Page, js: string, timeout = EVENTUALLY_MS): Promise<boolean> {
  const end = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(js)) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Evaluate a page expression (a string: see the header). */
export function inPage<T>(page: Page, js: string): Promise<T> {
  return page.evaluate(js) as Promise<T>;
}

/** The text of every row of a table, cells joined by '|', keyed by data-id. */
export const rowsJs = (table: string) =>
  `Object.fromEntries([...document.querySelectorAll('#${table} tr[data-id]')].filter((r) => r.dataset.id !== '').map((r) => [r.dataset.id, [...r.cells].map((c) => c.textContent).join('|')]))`;
/** The feed's lines, newest first: [topic, text]. */
export const feedJs = (id: string) => `[...document.querySelectorAll('#${id} li')].map((li) => [li.querySelector('.t')?.textContent ?? '', li.textContent])`;

/** A new page that records page errors, console errors, crashes and CSP violations (window.__csp). */
export async function watchedPage(browser: Browser, viewport: { width: number; height: number }): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('crash', () => problems.push('the page crashed'));
  await page.addInitScript(`window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`);
  return { page, problems };
}
