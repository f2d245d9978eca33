// The console in a real browser (headless Chromium driven by playwright-core).
//
//   node tests/browser/console.mjs <base-url> <order-id> <screenshot-dir>
//
// Run by tests/browser.rs after it placed the order and its execution succeeded; NODE_PATH
// points at .tools/node/node_modules (scripts/tools installs playwright-core, and Debian's
// chromium at /usr/bin/chromium). Exits non-zero with one line saying what did not hold.
import { join } from 'node:path';
import { check, inChromium } from './chromium.mjs';

const [base, orderId, shots] = process.argv.slice(2);
if (!base || !orderId || !shots) {
  console.error('usage: console.mjs <base-url> <order-id> <screenshot-dir>');
  process.exit(2);
}

// The three Parallel branches' tasks, the Parallel itself, and the recorder after it.
const RAN = ['Notify customer and request fulfilment', 'Prepare order summary',
  'Publish order placed notification', 'Prepare fulfilment request', 'Request fulfilment',
  'Send confirmation email', 'Record outcome'];
// Catch handlers: nothing failed, so they were never entered.
const SKIPPED = ['Order notification failed', 'Fulfilment request failed', 'Confirmation email failed'];

await inChromium('console', { viewport: { width: 1400, height: 900 } }, async (page) => {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  // Failed loads are reported by URL below (the browser's own /favicon.ico probe aside).
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) problems.push(`${r.status()} for ${r.url()}`);
  });
  // Everything is embedded in the binary: no request may leave the local server.
  page.on('request', (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith('data:')) problems.push(`external request: ${r.url()}`);
  });

  // The list: the execution is there, succeeded.
  await page.goto(`${base}/console/executions`, { waitUntil: 'load' });
  const row = page.locator(`tr.execution[data-name="${orderId}"]`);
  check(await row.count() === 1, `the list has no row for execution ${orderId}`);
  check(await row.getAttribute('data-status') === 'SUCCEEDED', `execution ${orderId} is not SUCCEEDED in the list`);
  const label = (await row.locator('.status').innerText()).trim();
  check(label === 'Succeeded', `the list shows "${label}" instead of Succeeded`);
  await page.screenshot({ path: join(shots, 'list.png'), fullPage: true });

  // The detail: reached from the list.
  await row.locator('a').first().click();
  await page.waitForSelector('svg.graph');
  check(page.url().endsWith(`/console/executions/${orderId}`), `the link went to ${page.url()}`);
  for (const name of RAN) {
    const cls = await page.locator(`svg.graph [data-state="${name}"]`).getAttribute('class');
    check(cls && cls.split(' ').includes('succeeded'), `state "${name}" has class "${cls}", not succeeded`);
  }
  for (const name of SKIPPED) {
    const cls = await page.locator(`svg.graph [data-state="${name}"]`).getAttribute('class');
    check(cls && cls.split(' ').includes('not-reached'), `state "${name}" has class "${cls}", not not-reached`);
  }
  // The branches are side by side: their first states share a row, left to right.
  const boxes = [];
  for (const name of ['Prepare order summary', 'Prepare fulfilment request', 'Send confirmation email']) {
    boxes.push(await page.locator(`svg.graph [data-state="${name}"] rect`).boundingBox());
  }
  check(boxes.every((b) => b && Math.abs(b.y - boxes[0].y) < 1), 'the branch starts are not on one row');
  check(boxes[0].x + boxes[0].width <= boxes[1].x && boxes[1].x + boxes[1].width <= boxes[2].x,
    'the branches overlap');

  // A click on a state shows its input and output in the panel.
  await page.locator('svg.graph [data-state="Send confirmation email"]').click();
  await page.waitForFunction(() => document.getElementById('panel-name').textContent === 'Send confirmation email');
  const input = await page.locator('#panel-input').innerText();
  const output = await page.locator('#panel-output').innerText();
  check(input.includes(orderId), `the panel's input does not mention the order: ${input.slice(0, 200)}`);
  const out = JSON.parse(output);
  check(out.channel === 'email' && out.status === 'SENT' && out.message_id,
    `the panel's output is not the sent email: ${output.slice(0, 200)}`);
  check(await page.locator('#panel-status').innerText() === 'Succeeded', 'the panel does not say Succeeded');
  check(await page.locator('svg.graph [data-state="Send confirmation email"]').getAttribute('class')
    .then((c) => c.includes('selected')), 'the clicked state is not marked selected');
  // The history table lists AWS's event types.
  const types = await page.locator('table.history tr.event').evaluateAll((rows) => rows.map((r) => r.dataset.type));
  for (const t of ['ExecutionStarted', 'ParallelStateEntered', 'TaskScheduled', 'TaskSucceeded', 'ExecutionSucceeded']) {
    check(types.includes(t), `the history has no ${t}`);
  }
  await page.screenshot({ path: join(shots, 'detail.png'), fullPage: true });

  // The projections page's Replay button: the job's page reloads itself (no script) until
  // it shows what the replay switched.
  await page.goto(`${base}/console/projections`, { waitUntil: 'load' });
  await page.locator('form.replay select[name="projection"]').selectOption('all');
  await page.locator('form.replay button[type="submit"]').first().click();
  await page.waitForSelector('.replay-done', { timeout: 30000 });
  check(/\/console\/jobs\/\d+$/.test(page.url()), `the replay's outcome is at ${page.url()}`);
  const done = await page.locator('.replay-done').innerText();
  check(/Replayed \d+ events and rebuilt 1 orders/.test(done), `the replay says: ${done}`);
  const switched = await page.locator('ul.switches li').count();
  check(switched === 2, `${switched} projections switched, not 2`);
  await page.screenshot({ path: join(shots, 'replay.png'), fullPage: true });

  check(problems.length === 0, problems.join('; '));
  return `${types.length} history events, screenshots in ${shots}`;
});
