// Opens the API's documentation (Swagger UI at /docs, served by the node itself) in Debian's
// headless Chromium and sends one request from it: GET /datasets through "Try it out" and
// "Execute", then checks that the answer (its status and the built-in data sets) appears.
// The page must run under its Content-Security-Policy: any violation fails the test.
//
// usage: node tests/browser/docs.mjs <base-url> <screenshot-path>
// Exits 0 when every step passed, 1 with the failed step's message otherwise.
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update',
];
const STEP_TIMEOUT_MS = 30_000;
const OPERATION = '#operations-datasets-list_datasets';

const started = Date.now();
function log(message) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${seconds}s] ${message}`);
}

async function main() {
  const [base, screenshot] = process.argv.slice(2);
  if (!base || !screenshot) throw new Error('usage: docs.mjs <base-url> <screenshot-path>');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const violations = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(`${base}/docs`);
    log(`opened ${page.url()}`);
    await page.waitForSelector(OPERATION);
    log('Swagger UI lists the operations of /openapi.json');
    await page.click(`${OPERATION} .opblock-summary`);
    await page.click(`${OPERATION} button.try-out__btn`);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/datasets') && r.request().method() === 'GET'),
      page.click(`${OPERATION} button.execute`),
    ]);
    log(`executed GET /datasets: ${response.status()}`);
    if (response.status() !== 200) throw new Error(`GET /datasets answered ${response.status()}`);
    const answer = `${OPERATION} .live-responses-table`;
    await page.waitForFunction(
      (sel) => {
        const table = document.querySelector(sel);
        return table && /200/.test(table.textContent) && /friedman1/.test(table.textContent);
      },
      answer,
    );
    log('the answer (200, the built-in data sets) is shown');
    await page.screenshot({ path: screenshot, fullPage: true });
    if (violations.length) throw new Error(`CSP violations: ${violations.join(' | ')}`);
    log('no Content-Security-Policy violation');
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`FAILED: ${e.message}`);
    process.exit(1);
  },
);
