// Drives the status page in a real headless Chromium (Debian's /usr/bin/chromium, through playwright-core) for
// tests/it/status_page.rs: signs in with the key, reads what the page shows, takes a screenshot, clicks the
// dead letter's Replay button, and prints one JSON document of what it saw on stdout.
//
//   node tests/browser/status_page.mjs <page url> <status page key> <screenshot path>
import { chromium } from 'playwright-core';

const [url, key, screenshot] = process.argv.slice(2);
if (!url || !key || !screenshot) {
  console.error('usage: node tests/browser/status_page.mjs <page url> <key> <screenshot path>');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const seen = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  // Without the key: 401 and the sign-in form only.
  const first = await page.goto(url);
  seen.unauthenticated = { status: first.status(), text: await page.locator('body').innerText() };

  // Sign in.
  await page.fill('input[name=key]', key);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  seen.signedIn = { url: page.url(), title: await page.title() };
  const cookies = await context.cookies();
  seen.cookies = cookies.map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure }));

  const read = async () => ({
    totals: await page.$$eval('#totals tr[data-outcome]', (rows) =>
      Object.fromEntries(rows.map((r) => [r.dataset.outcome, Number(r.querySelector('td.n').textContent)]))),
    chart: await page.$$eval('#chart rect[data-outcome]', (rects) => {
      const sums = {};
      for (const r of rects) sums[r.dataset.outcome] = (sums[r.dataset.outcome] || 0) + Number(r.dataset.count);
      return sums;
    }),
    runs: await page.$$eval('#runs tr[data-outcome]', (rows) =>
      rows.map((r) => ({ outcome: r.dataset.outcome, function: r.dataset.function, reference: r.dataset.reference, ticket: r.dataset.ticket }))),
    work: await page.$$eval('#work tr[data-work]', (rows) => rows.map((r) => ({ id: r.dataset.work, state: r.dataset.state }))),
    haloLinks: await page.$$eval('a[href*="/tickets?id="]', (links) => links.map((a) => a.href)),
    replayButtons: await page.locator('button.replay').count(),
  });
  seen.before = await read();
  seen.html = await page.content();
  await page.screenshot({ path: screenshot, fullPage: true });

  // A narrow (phone) viewport: the page still fits its width.
  await page.setViewportSize({ width: 390, height: 844 });
  seen.phone = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
  await page.setViewportSize({ width: 1280, height: 900 });

  // Replay the dead letter.
  if (seen.before.replayButtons > 0) {
    await Promise.all([page.waitForNavigation(), page.locator('button.replay').first().click()]);
    seen.afterReplay = { url: page.url(), notice: await page.locator('#notice').textContent().catch(() => null) };
  }
  seen.externalRequests = requests.filter((r) => !r.startsWith(new URL(url).origin));
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(seen));
