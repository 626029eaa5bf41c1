// Shows a resumed task in the web panel of a running trainyard node, in Debian's headless
// Chromium: its row opens its detail, whose facts say where the attempt resumed.
//
// usage: node tests/browser/resume.mjs <base-url> <task-id> <resumed-from-step>
// Exits 0 when the panel shows "Resumed from step N" for the task, 1 otherwise.
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update',
];
const STEP_TIMEOUT_MS = 30_000;

async function run(baseUrl, taskId, step) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const response = await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
    if (!response?.ok()) throw new Error(`GET ${baseUrl} answered ${response?.status()}`);
    const row = `[data-testid="task-row"][data-task-id="${taskId}"]`;
    await page.waitForSelector(row, { timeout: STEP_TIMEOUT_MS });
    await page.click(`${row} .id`);
    const expected = `Resumed from\nstep ${step}`;
    try {
      await page.waitForFunction(
        (text) => document.getElementById('detail-facts')?.innerText.includes(text),
        expected,
        { timeout: STEP_TIMEOUT_MS, polling: 100 },
      );
    } catch {
      const shown = await page.locator('#detail-facts').innerText().catch(() => '(none)');
      throw new Error(`the task's facts do not say "${expected}": ${JSON.stringify(shown)}`);
    }
    const starts = await page.locator('#detail-facts').innerText();
    if (!starts.includes(`2: step ${step}`)) throw new Error(`no attempt starts shown: ${starts}`);
    console.log(`the panel shows: ${starts.replace(/\n/g, ' | ')}`);
    if (errors.length) throw new Error(`the page threw: ${errors.join('; ')}`);
  } finally {
    await browser.close();
  }
}

const [baseUrl, taskId, step] = process.argv.slice(2);
if (!baseUrl || !taskId || !step) {
  console.error('usage: node tests/browser/resume.mjs <base-url> <task-id> <resumed-from-step>');
  process.exit(2);
}
run(baseUrl, taskId, step).then(
  () => console.log('PASS: the panel shows the resumed attempt'),
  (error) => {
    console.error(`FAIL: ${error.message}`);
    process.exit(1);
  },
);
