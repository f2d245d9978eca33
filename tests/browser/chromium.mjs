// What the browser scripts share: a headless Chromium (playwright-core, with Debian's
// chromium) in a throw-away profile, and the one-line verdict tests/browser.rs reads.
//
// NODE_PATH (set by tests/browser.rs) points at .tools/node/node_modules; it applies to
// require(), not to ES imports, so playwright-core is resolved through createRequire.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// Quiet and offline: nothing but the pages under test may cause a request.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

export function check(cond, what) {
  if (!cond) throw new Error(what);
}

// Runs `body(page)` in a fresh browser. Prints `<script>.mjs: ok (<what body returned>)`,
// or `<script>.mjs: FAILED: <why>` and sets a non-zero exit code; then closes the browser,
// runs `cleanup` (the scripts' own servers) and removes the profile.
// `hostRules`: Chromium's --host-resolver-rules (names a test points at 127.0.0.1).
export async function inChromium(script, { viewport, hostRules, cleanup } = {}, body) {
  const profile = mkdtempSync(join(tmpdir(), `${script}-chromium-`));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      ...(viewport ? { viewport } : {}),
      args: [...ARGS, ...(hostRules ? [`--host-resolver-rules=${hostRules}`] : [])],
    });
    const page = context.pages()[0] || await context.newPage();
    const summary = await body(page);
    console.log(`${script}.mjs: ok (${summary})`);
  } catch (e) {
    console.error(`${script}.mjs: FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    if (context) await context.close();
    if (cleanup) cleanup();
    rmSync(profile, { recursive: true, force: true });
  }
}
