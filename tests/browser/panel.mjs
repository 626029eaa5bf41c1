// Drives the web panel of a running trainyard node in Debian's headless Chromium.
//
// usage: node tests/browser/panel.mjs <base-url> <screenshot-path> [token]
//
// With a token, the node refuses the panel's first calls (401): the test enters the token in the
// token bar, checks that it is kept in sessionStorage (not localStorage), and goes on.
// The page must run under its Content-Security-Policy: any violation fails the test.
// Trains an mlp and waits for its bar, state, metrics and loss curve; cancels an endless one;
// checks the nodes list, a prediction, the models section (register, alias, predict by
// alias), an API error and phone width; saves a full-page
// screenshot.
// Exits 0 when every step passed, 1 with the failed step's message otherwise.
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update',
];
const OVERALL_TIMEOUT_MS = 240_000;
const STEP_TIMEOUT_MS = 30_000;
// The training whose curve is checked: a second or more on an idle machine, so that its
// progress is written while it trains (the first write comes 50 ms in; a training that ends
// sooner has only its end, one point). Waited for generously: a busy machine is slower.
const CURVE_EPOCHS = 300;
const TRAINING_TIMEOUT_MS = 120_000;
// The most epochs the API takes: a training that is still running when the cancel arrives.
const ENDLESS_EPOCHS = 100_000;
// The built-in friedman1 has 8 features (src/training/data.rs), not scikit-learn's 10.
const FRIEDMAN1_FEATURES = 8;
const PHONE = { width: 375, height: 800 };

const started = Date.now();

function log(message) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${seconds}s] ${message}`);
}

const row = (taskId) => `[data-testid="task-row"][data-task-id="${taskId}"]`;

/** Submits the form with these values and answers the new task's id. */
async function submitTraining(page, { model, epochs }) {
  await page.selectOption('[data-testid="model-type"]', model);
  await page.fill('[data-testid="epochs"]', String(epochs));
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes(`/train/${model}/async`) && r.request().method() === 'POST'),
    page.click('[data-testid="submit"]'),
  ]);
  const body = await response.json().catch(() => null);
  if (response.status() !== 202 || !body?.task_id) {
    throw new Error(`submit answered ${response.status()}: ${JSON.stringify(body)}`);
  }
  await page.waitForSelector(row(body.task_id));
  return body.task_id;
}

/** Waits until the task's row carries this state (and, when asked, a bar at 100 %). */
async function waitForRowState(page, taskId, state, { fullBar = false, timeout = STEP_TIMEOUT_MS } = {}) {
  try {
    await page.waitForFunction(
      ({ selector, state, fullBar }) => {
        const element = document.querySelector(selector);
        if (!element || element.dataset.state !== state) return false;
        const bar = element.querySelector('[data-testid="progress-bar"]');
        return !fullBar || Number(bar?.getAttribute('aria-valuenow')) >= 100;
      },
      { selector: row(taskId), state, fullBar },
      { timeout, polling: 100 },
    );
  } catch {
    const seen = await page.$eval(row(taskId), (element) => ({
      state: element.dataset.state,
      percent: element.querySelector('[data-testid="progress-bar"]')?.getAttribute('aria-valuenow'),
      text: element.innerText,
    })).catch(() => 'no row');
    const live = await page.locator('[data-testid="live"]').innerText().catch(() => '?');
    throw new Error(`task ${taskId} did not reach ${state}${fullBar ? ' at 100%' : ''}; `
      + `row: ${JSON.stringify(seen)}; live updates: ${live}`);
  }
}

async function checkTrainingSucceeds(page) {
  log(`submit mlp, ${CURVE_EPOCHS} epochs`);
  const taskId = await submitTraining(page, { model: 'mlp', epochs: CURVE_EPOCHS });
  log(`task ${taskId} submitted; waiting for SUCCESS with a full bar`);
  await waitForRowState(page, taskId, 'SUCCESS', { fullBar: true, timeout: TRAINING_TIMEOUT_MS });
  const metric = page.locator('[data-testid="metrics"] [data-metric="test_r2"]');
  await metric.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  const r2 = Number(await metric.innerText());
  if (!Number.isFinite(r2)) throw new Error(`metrics show test_r2 "${await metric.innerText()}", not a number`);
  const chartPoints = await page.$eval('[data-testid="loss-chart"] polyline', (line) => line.getAttribute('points').split(' ').length)
    .catch(() => 0);
  if (chartPoints < 2) throw new Error(`loss chart has ${chartPoints} points`);
  log(`SUCCESS, bar at 100, test_r2 = ${r2}, loss chart has ${chartPoints} points`);
  return taskId;
}

async function checkCancel(page) {
  log(`submit mlp, ${ENDLESS_EPOCHS} epochs`);
  const taskId = await submitTraining(page, { model: 'mlp', epochs: ENDLESS_EPOCHS });
  await page.waitForFunction(
    (selector) => ['STARTED', 'PROGRESS'].includes(document.querySelector(selector)?.dataset.state),
    row(taskId),
    { timeout: STEP_TIMEOUT_MS, polling: 100 },
  );
  log(`task ${taskId} running; cancel it from its row`);
  await page.click(`${row(taskId)} [data-testid="cancel"]`);
  await waitForRowState(page, taskId, 'REVOKED');
  log('REVOKED');
}

async function checkNodes(page) {
  const trainers = page.locator('[data-testid="nodes"] [data-testid="trainer"]');
  await trainers.first().waitFor({ timeout: STEP_TIMEOUT_MS });
  const names = await trainers.evaluateAll((items) => items.map((item) => item.dataset.trainer));
  log(`nodes list trainers: ${names.join(', ')}`);
}

async function checkPredict(page, taskId) {
  log(`open task ${taskId} and predict on ${FRIEDMAN1_FEATURES} values`);
  await page.click(`${row(taskId)} .id`);
  await page.locator('[data-testid="predict-input"]').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  const values = Array.from({ length: FRIEDMAN1_FEATURES }, (_, i) => ((i + 1) / 10).toFixed(1));
  await page.fill('[data-testid="predict-input"]', values.join(', '));
  await page.click('[data-testid="predict-button"]');
  const output = page.locator('[data-testid="predict-output"]');
  try {
    await page.waitForFunction(
      () => /-?\d+(\.\d+)?/.test(document.querySelector('[data-testid="predict-output"]')?.textContent || ''),
      null,
      { timeout: STEP_TIMEOUT_MS, polling: 100 },
    );
  } catch {
    const shown = await page.locator('[data-testid="predict-error"]').innerText().catch(() => '');
    throw new Error(`no prediction shown; error area says: ${shown || '(nothing)'}`);
  }
  log(`predict output: ${await output.innerText()}`);
}

/** Registers the open task's model, points an alias at it and predicts through the alias. */
async function checkModels(page) {
  log('register the open task\'s model as panel-model');
  await page.fill('[data-testid="register-name"]', 'panel-model');
  await page.click('[data-testid="register-button"]');
  const item = page.locator('[data-testid="model"][data-model="panel-model"]');
  await item.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await page.locator('[data-testid="model-version"][data-version="1"]').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  log('set alias production to version 1');
  await page.fill('[data-testid="alias-name"]', 'production');
  await page.fill('[data-testid="alias-version"]', '1');
  await page.click('[data-testid="alias-button"]');
  await page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid="model-target"] option')].some((o) => o.value === 'aliases/production'),
    null, { timeout: STEP_TIMEOUT_MS });
  if (!/production/.test(await item.innerText())) throw new Error('the models list does not show the alias');
  log('predict by alias production');
  await page.selectOption('[data-testid="model-target"]', 'aliases/production');
  await page.fill('[data-testid="model-predict-input"]', Array(FRIEDMAN1_FEATURES).fill('0.5').join(', '));
  await page.click('[data-testid="model-predict-button"]');
  await page.waitForFunction(
    () => /^v1: -?\d/.test(document.querySelector('[data-testid="model-predict-output"]')?.textContent || ''),
    null, { timeout: STEP_TIMEOUT_MS });
  log(`model predict output: ${await page.locator('[data-testid="model-predict-output"]').innerText()}`);
}

/** With the result cache asked for, an equal second training is answered at once from the
 * first one's result, and the panel says so. */
async function checkResultCache(page) {
  log('submit an mlp twice with the result cache: the second is answered from the first');
  // The option is under "More options".
  await page.evaluate(() => { document.querySelector('#use-cache').closest('details').open = true; });
  await page.check('[data-testid="cache"]');
  const first = await submitTraining(page, { model: 'mlp', epochs: 2 });
  await waitForRowState(page, first, 'SUCCESS');
  let copy = null;
  // The first result is indexed for the cache just after it is written.
  for (let tries = 0; tries < 50 && !copy; tries += 1) {
    const id = await submitTraining(page, { model: 'mlp', epochs: 2 });
    const note = await page.locator('[data-testid="submit-result"]').innerText();
    if (note.includes('answered from')) copy = id;
    else await page.waitForTimeout(200);
  }
  if (!copy) throw new Error('an equal training with the result cache was never answered from the first');
  await waitForRowState(page, copy, 'SUCCESS');
  await page.click(row(copy));
  await page.waitForFunction(
    (from) => document.body.innerText.includes('Cached from') && document.body.innerText.includes(from),
    first.slice(0, 8), { timeout: STEP_TIMEOUT_MS });
  await page.uncheck('[data-testid="cache"]');
  log(`${copy} answered from ${first}`);
}

async function checkApiError(page) {
  log('submit epochs = 0, expect the 422 message');
  await page.selectOption('[data-testid="model-type"]', 'mlp');
  await page.fill('[data-testid="epochs"]', '0');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes('/train/mlp/async')),
    page.click('[data-testid="submit"]'),
  ]);
  if (response.status() !== 422) throw new Error(`epochs = 0 answered ${response.status()}, expected 422`);
  const error = page.locator('[data-testid="error"]');
  await error.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  const text = await error.innerText();
  if (!/epochs/i.test(text)) throw new Error(`error area says "${text}", expected it to name epochs`);
  log(`error shown: ${text.replace(/\s+/g, ' ')}`);
}

async function checkPhoneWidth(page) {
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300); // let layout settle after the resize
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  if (scrollWidth > innerWidth) {
    throw new Error(`horizontal scroll at ${PHONE.width} px: scrollWidth ${scrollWidth} > innerWidth ${innerWidth}`);
  }
  log(`phone width ${PHONE.width} px: scrollWidth ${scrollWidth} <= innerWidth ${innerWidth}`);
}

/** Enters the token the panel asks for, and checks where it keeps it. */
async function enterToken(page, token) {
  log('the node wants a token: enter it in the token bar');
  await page.locator('#token-bar').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await page.fill('#token-input', token);
  await page.press('#token-input', 'Enter');
  await page.locator('#token-bar').waitFor({ state: 'hidden', timeout: STEP_TIMEOUT_MS });
  const kept = await page.evaluate(() => ({
    session: sessionStorage.getItem('trainyard.token'),
    local: localStorage.length,
  }));
  if (kept.session !== token || kept.local !== 0) {
    throw new Error(`the token should be in sessionStorage only: ${JSON.stringify(kept)}`);
  }
  log('token kept in sessionStorage only');
}

async function run(baseUrl, screenshotPath, token) {
  log(`launch ${CHROMIUM}`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    // Chromium reports what the Content-Security-Policy blocked on the console.
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
    });
    log(`open ${baseUrl}`);
    const response = await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
    if (!response?.ok()) throw new Error(`GET ${baseUrl} answered ${response?.status()}: does the node serve the panel?`);
    await page.waitForSelector('[data-testid="submit-form"]', { timeout: STEP_TIMEOUT_MS });
    if (token) await enterToken(page, token);

    const finishedTaskId = await checkTrainingSucceeds(page);
    await checkCancel(page);
    await checkNodes(page);
    await checkPredict(page, finishedTaskId);
    await checkModels(page);
    await checkResultCache(page);
    await checkApiError(page);
    await checkPhoneWidth(page);

    await page.screenshot({ path: screenshotPath, fullPage: true });
    log(`screenshot saved to ${screenshotPath}`);
    if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join('; ')}`);
  } finally {
    await browser.close();
  }
}

async function main() {
  const [baseUrl, screenshotPath, token] = process.argv.slice(2);
  if (!baseUrl || !screenshotPath) {
    console.error('usage: node tests/browser/panel.mjs <base-url> <screenshot-path>');
    process.exit(2);
  }
  const deadline = setTimeout(() => {
    console.error(`FAIL: the panel test ran past ${OVERALL_TIMEOUT_MS / 1000} s`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  try {
    await run(baseUrl, screenshotPath, token);
    log('PASS: panel works');
    clearTimeout(deadline);
  } catch (error) {
    console.error(`FAIL: ${error.message}`);
    process.exit(1);
  }
}

main();
