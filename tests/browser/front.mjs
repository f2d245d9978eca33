// A shop's own front-end calling the local API from the browser (headless Chromium driven
// by playwright-core), as `orders serve --allow-origin` allows.
//
//   node tests/browser/front.mjs <base-url> <front-port> <order-json>
//
// Run by tests/browser.rs with a server started with --allow-origin http://localhost:<front-port>.
// Checks:
// 1. a page of that origin places an order with fetch (JSON and an Idempotency-Key: the
//    browser sends a CORS preflight first), reads the Location and X-Correlation-Id
//    headers, and reads the order's events;
// 2. the same fetch from a page of another origin fails in the browser (no CORS answer)
//    and places nothing.
// Exits non-zero with one line saying what did not hold.
import { createServer } from 'node:http';
import { check, inChromium } from './chromium.mjs';

const [base, frontPort, order] = process.argv.slice(2);
if (!base || !frontPort || !order) {
  console.error('usage: front.mjs <base-url> <front-port> <order-json>');
  process.exit(2);
}

// Both sites serve the same blank page; the scripts run in it with page.evaluate.
const site = () => createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>shop</title><p>shop</p>');
});
const front = site();
await new Promise((ok) => front.listen(Number(frontPort), '127.0.0.1', ok));
const other = site();
await new Promise((ok) => other.listen(0, '127.0.0.1', ok));

// What the shop's script does: place the order, then read its events.
async function placeAndRead([base, order, key]) {
  try {
    const placed = await fetch(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: order,
    });
    const answer = await placed.json();
    const events = await fetch(`${base}/orders/${answer.order_id}/events`);
    return {
      status: placed.status,
      location: placed.headers.get('location'),
      correlation: placed.headers.get('x-correlation-id'),
      orderId: answer.order_id,
      events: (await events.json()).events.map((e) => e.event_type),
    };
  } catch (e) {
    return { error: String(e) };
  }
}

const browser = {
  hostRules: 'MAP evil.example 127.0.0.1',
  cleanup: () => { front.close(); other.close(); },
};
await inChromium('front', browser, async (page) => {
  const preflights = [];
  page.on('request', (r) => { if (r.method() === 'OPTIONS') preflights.push(r.url()); });

  // 1. The allowed origin.
  await page.goto(`http://localhost:${frontPort}/`);
  const mine = await page.evaluate(placeAndRead, [base, order, 'front-1']);
  check(!mine.error, `the front-end's fetch failed: ${mine.error}`);
  check(mine.status === 201, `the front-end's order was answered ${mine.status}`);
  check(mine.location === `/orders/${mine.orderId}`, `the front-end read Location ${mine.location}`);
  check(!!mine.correlation, 'the front-end could not read X-Correlation-Id');
  // The workflow may already have appended the confirmation after the placement.
  check(mine.events?.[0] === 'OrderPlaced', `the front-end read events ${JSON.stringify(mine.events)}`);

  // 2. Another origin: the browser refuses to hand over the answer, and nothing is placed.
  await page.goto(`http://evil.example:${other.address().port}/`);
  const theirs = await page.evaluate(placeAndRead, [base, order, 'evil-1']);
  check(!!theirs.error, `a page of another origin placed order ${theirs.orderId}`);
  return `allowed origin placed ${mine.orderId} after ${preflights.length} preflight(s); another origin was refused`;
});
