// What a page on another site can do to the local server through a real browser
// (headless Chromium driven by playwright-core).
//
//   node tests/browser/guard.mjs <base-url> <order-id> <dead-letter-message-id>
//
// Run by tests/browser.rs once the message is in the fulfilment dead-letter queue.
// `evil.example` resolves to 127.0.0.1 inside this browser (--host-resolver-rules), as a
// rebinding attacker's name would. Checks:
// 1. a page on evil.example auto-submits the console's redrive form to the server: the
//    browser marks it cross-site and the server answers 403; the message stays dead;
// 2. the attacker's name pointed at the server itself (DNS rebinding) is answered 403,
//    without the order;
// 3. the console's own redrive button still works.
// Exits non-zero with one line saying what did not hold.
import { createServer } from 'node:http';
import { check, inChromium } from './chromium.mjs';

const [base, orderId, poison] = process.argv.slice(2);
if (!base || !orderId || !poison) {
  console.error('usage: guard.mjs <base-url> <order-id> <dead-letter-message-id>');
  process.exit(2);
}
const port = new URL(base).port;

// The attacker's site: a form that posts itself to the console as soon as it loads.
const attacker = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(`<!doctype html><form id="f" method="post" action="${base}/console/queues/redrive">
    <input type="hidden" name="message_id" value="${poison}"></form>
    <script>document.getElementById('f').submit()</script>`);
});
await new Promise((ok) => attacker.listen(0, '127.0.0.1', ok));
const evil = `http://evil.example:${attacker.address().port}`;

const browser = { hostRules: 'MAP evil.example 127.0.0.1', cleanup: () => attacker.close() };
await inChromium('guard', browser, async (page) => {
  // 1. The forged form post.
  const forged = page.waitForResponse((r) => r.url() === `${base}/console/queues/redrive`);
  await page.goto(`${evil}/`);
  const answer = await forged;
  const sent = await answer.request().allHeaders();
  check(sent['sec-fetch-site'] === 'cross-site', `the browser sent Sec-Fetch-Site ${sent['sec-fetch-site']}`);
  check(answer.status() === 403, `the forged redrive was answered ${answer.status()}, not 403`);
  const problem = await answer.json();
  check(problem.field === 'Sec-Fetch-Site', `the refusal names ${problem.field}`);

  // 2. The attacker's name, rebound to the server.
  const rebound = await page.goto(`http://evil.example:${port}/orders/${orderId}`);
  check(rebound.status() === 403, `the rebound request was answered ${rebound.status()}, not 403`);
  const body = await rebound.text();
  check(!body.includes(orderId), 'the rebound request was shown the order');

  // 3. The console itself: the message is still dead, and its own button redrives it.
  await page.goto(`${base}/console/queues`, { waitUntil: 'load' });
  const card = page.locator(`#q-orders-fulfilment-dlq #m-${poison}`);
  check(await card.count() === 1, 'the dead letter left the DLQ after the forged post');
  await Promise.all([
    page.waitForURL(/\/console\/queues\?moved=1$/),
    card.locator('form.redrive button').click(),
  ]);
  // The poller may already have failed it back into the DLQ: the server's count says.
  const notice = await page.locator('main').innerText();
  check(notice.includes('Moved 1 message(s)'), 'the console\'s own redrive did not move the message');
  return 'forged post and rebound host refused; the console redrove';
});
