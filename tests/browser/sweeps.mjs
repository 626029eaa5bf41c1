// Shows a sweep in the web panel of a running trainyard node, in Debian's headless Chromium.
//
// usage: node tests/browser/sweeps.mjs <base-url> <blocker-task-id> <sweep-to-cancel>
//        <sweep-id> <trials> <screenshot-path>
//
// Both sweeps (created through the API) wait behind the blocker, a long training that holds
// the node's one trainer. They must appear in the Sweeps section; the first is cancelled with
// its Cancel button and shows REVOKED. Selecting the second shows its trials table, none
// ended; the test then cancels the blocker, and the page (no reload) follows the sweep to its
// end: the best trial's row is highlighted and the chart has one line per trial (its rungs,
// then its end), the best one highlighted too. The page must run under its
// Content-Security-Policy, and a 375 px wide page must not scroll sideways.
// Exits 0 when every step passed, 1 with the failed step's message otherwise.
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update',
];
const OVERALL_TIMEOUT_MS = 240_000;
const STEP_TIMEOUT_MS = 30_000;
// A small sweep on a busy machine.
const SWEEP_TIMEOUT_MS = 180_000;
const PHONE = { width: 375, height: 800 };

const started = Date.now();

function log(message) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${seconds}s] ${message}`);
}

/** What the sweep's detail shows now, for a failure's message. */
async function shown(page) {
  return page.evaluate(() => ({
    state: document.querySelector('[data-testid="sweep-state"]')?.textContent,
    rows: [...document.querySelectorAll('[data-testid="sweep-trial"]')].map((row) => `${row.dataset.trial}:${row.dataset.state}${row.classList.contains('best') ? '*' : ''}`),
    lines: document.querySelectorAll('[data-testid="sweep-chart"] polyline').length,
    error: document.querySelector('[data-testid="sweeps-error"]')?.innerText,
  }));
}

/** Selects a listed sweep and waits for its trials table. */
async function selectSweep(page, id, trials) {
  const item = page.locator(`[data-testid="sweep"][data-sweep="${id}"]`);
  await item.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  log(`sweep ${id} listed: ${(await item.innerText()).replace(/\s+/g, ' ')}`);
  await item.locator('button.link').click();
  try {
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid="sweep-trial"]').length === n,
      trials, { timeout: STEP_TIMEOUT_MS, polling: 100 });
  } catch {
    throw new Error(`the trials table did not get ${trials} rows: ${JSON.stringify(await shown(page))}`);
  }
}

async function waitForSweepState(page, state, timeout) {
  try {
    await page.waitForFunction(
      (s) => document.querySelector('[data-testid="sweep-state"]')?.textContent === s,
      state, { timeout, polling: 200 });
  } catch {
    throw new Error(`the sweep did not show ${state}: ${JSON.stringify(await shown(page))}`);
  }
}

async function run(baseUrl, blockerId, cancelId, sweepId, trials, screenshotPath) {
  log(`launch ${CHROMIUM}`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
    });
    log(`open ${baseUrl}`);
    const response = await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
    if (!response?.ok()) throw new Error(`GET ${baseUrl} answered ${response?.status()}`);

    // Both sweeps wait behind the blocker, which holds the node's one trainer.
    await selectSweep(page, cancelId, 2);
    log('sweep to cancel shown; press its Cancel button');
    await page.click('[data-testid="sweep-cancel"]');
    await waitForSweepState(page, 'REVOKED', STEP_TIMEOUT_MS);
    log(`cancelled: ${JSON.stringify(await shown(page))}`);

    await selectSweep(page, sweepId, trials);
    const before = await shown(page);
    if (before.state !== 'RUNNING' || before.rows.some((row) => /SUCCESS|STOPPED/.test(row))) {
      throw new Error(`the sweep should wait behind the blocker: ${JSON.stringify(before)}`);
    }
    log(`trials table has ${trials} rows, none ended: ${JSON.stringify(before)}`);
    const cancelled = await page.request.post(`${baseUrl}/task/${blockerId}/cancel`);
    if (!cancelled.ok()) throw new Error(`cancelling the blocker answered ${cancelled.status()}`);
    log('blocker cancelled: the trials train now; the page follows without a reload');
    await waitForSweepState(page, 'SUCCESS', SWEEP_TIMEOUT_MS);
    log(`sweep SUCCESS: ${JSON.stringify(await shown(page))}`);

    const answer = await page.request.get(`${baseUrl}/sweeps/${sweepId}`);
    const sweep = await answer.json();
    const best = sweep.best?.trial;
    if (best === undefined) throw new Error(`the API gives no best trial: ${JSON.stringify(sweep)}`);
    await page.waitForFunction(
      (b) => {
        const rows = [...document.querySelectorAll('[data-testid="sweep-trial"].best')];
        return rows.length === 1 && rows[0].dataset.trial === String(b);
      },
      best, { timeout: STEP_TIMEOUT_MS, polling: 100 });
    const highlight = await page.$eval('[data-testid="sweep-trial"].best td', (cell) => getComputedStyle(cell).backgroundColor);
    if (/rgba\(0, 0, 0, 0\)|transparent/.test(highlight)) throw new Error(`the best row has no background: ${highlight}`);
    log(`best trial ${best} highlighted (${highlight})`);
    const bestText = await page.locator('[data-testid="sweep-best"]').innerText();
    if (!bestText.includes(sweep.best.task_id)) throw new Error(`the best line lacks the task id: ${bestText}`);
    // The best model registered at the end, as the API says.
    if (sweep.registered?.version !== 1) throw new Error(`the sweep did not register its best model: ${JSON.stringify(sweep)}`);
    await page.waitForFunction(
      () => document.querySelector('[data-testid="sweep-registered"]')?.innerText.includes('version 1'),
      null, { timeout: STEP_TIMEOUT_MS, polling: 100 });
    const registeredText = await page.locator('[data-testid="sweep-registered"]').innerText();
    if (!registeredText.includes('panel-search') || !registeredText.includes('production')) throw new Error(`the registration line: ${registeredText}`);
    log(`registration shown: ${registeredText}`);

    const lines = await page.$$eval('[data-testid="sweep-chart"] polyline[data-testid="trial-line"]', (all) => all.map((line) => ({
      trial: line.dataset.trial, best: line.hasAttribute('data-best'), points: line.getAttribute('points').split(' ').length,
    })));
    if (lines.length !== trials) throw new Error(`the chart has ${lines.length} lines for ${trials} trials: ${JSON.stringify(lines)}`);
    const trialsOnChart = new Set(lines.map((line) => line.trial));
    if (trialsOnChart.size !== trials) throw new Error(`the chart's lines are not one per trial: ${JSON.stringify(lines)}`);
    const bestLines = lines.filter((line) => line.best);
    if (bestLines.length !== 1 || bestLines[0].trial !== String(best)) throw new Error(`the chart highlights ${JSON.stringify(bestLines)}, not trial ${best}`);
    // Every trial's line: its rungs, then its end at the resource it used.
    for (const trial of sweep.trials) {
      const line = lines.find((l) => l.trial === String(trial.trial));
      const expected = trial.rungs.length + (trial.rungs.at(-1)?.step === trial.resource ? 0 : 1);
      if (line.points !== expected) throw new Error(`trial ${trial.trial}'s line has ${line.points} points, expected ${expected}: ${JSON.stringify(trial)}`);
    }
    log(`chart: ${lines.map((line) => `trial ${line.trial} ${line.points} points${line.best ? ' (best)' : ''}`).join(', ')}`);
    if (await page.locator('[data-testid="sweep-cancel"]').isVisible()) throw new Error('an ended sweep still offers Cancel');

    await page.setViewportSize(PHONE);
    await page.waitForTimeout(300);
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    }));
    if (scrollWidth > innerWidth) throw new Error(`horizontal scroll at ${PHONE.width} px: ${scrollWidth} > ${innerWidth}`);
    log(`phone width: scrollWidth ${scrollWidth} <= ${innerWidth}`);
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.locator('#sweeps-card').screenshot({ path: screenshotPath });
    log(`screenshot saved to ${screenshotPath}`);
    if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join('; ')}`);
  } finally {
    await browser.close();
  }
}

async function main() {
  const [baseUrl, blockerId, cancelId, sweepId, trials, screenshotPath] = process.argv.slice(2);
  if (!screenshotPath) {
    console.error('usage: node tests/browser/sweeps.mjs <base-url> <blocker-task-id> <sweep-to-cancel> <sweep-id> <trials> <screenshot-path>');
    process.exit(2);
  }
  const deadline = setTimeout(() => {
    console.error(`FAIL: the sweeps test ran past ${OVERALL_TIMEOUT_MS / 1000} s`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  try {
    await run(baseUrl, blockerId, cancelId, sweepId, Number(trials), screenshotPath);
    log('PASS: the panel shows the sweep');
    clearTimeout(deadline);
  } catch (error) {
    console.error(`FAIL: ${error.message}`);
    process.exit(1);
  }
}

main();
