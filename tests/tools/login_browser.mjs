#!/usr/bin/env node
// Log in through the test IdP (idp.mjs, oidc-provider's dev interactions) with a real
// headless Chromium, driven by npm `playwright-core`.
//
//   node login_browser.mjs --start-url URL --login ID [--password P] [--map host1,host2]
//     [--map-to ADDRESS] [--allow-host HOST ...]
//     [--until URL_PREFIX] [--screenshot FILE] [--timeout MS] [--then URL ...]
//     [--then-screenshots DIR] [--cancel]
//
// Opens URL, fills the IdP's login form (fields `login` and `password`; or, on
// jetbridge's development provider, clicks the demo user whose sub is --login), submits, clicks
// the consent form's "Continue" if it is shown, and waits until the page is back on the
// start URL's origin (or on a URL starting with --until). Then prints one JSON line:
//   {"ok":true,"final_url":"...","body_text":"...","logged_in":true,"blocked":[...],
//    "then":[{"url":"...","status":200,"final_url":"...","body_text":"..."}, ...]}
// exit 0; on failure
//   {"ok":false,"error":"...","final_url":"...","html":"<first 2000 chars>","blocked":[...]}
// exit 1 (2 on bad usage).
//
// Browser: env JETBRIDGE_CHROMIUM or /usr/bin/chromium. Every host named in --map
// (comma-separated, may repeat; "*.example.test" wildcards allowed) resolves to 127.0.0.1
// (or --map-to ADDRESS, e.g. a Service's cluster IP) via --host-resolver-rules. Requests
// to any host that is neither loopback, mapped, nor named by --allow-host (e.g. an IdP
// listening on another local address) are aborted (the IdP's page imports a web font from the internet, for one) and listed
// in "blocked". Each --then URL is then opened in turn in the same browser (cookies kept,
// redirects followed), and its final status, URL and text are listed in "then".
// --then-screenshots DIR saves each --then page as DIR/then-<n>.png (n from 1).
// --cancel, instead of signing in, cancels at the IdP's login page (oidc-provider's
// /interaction/<uid>/abort, as its "Cancel" link does), so the IdP refuses the sign-in.
// TLS errors are ignored (test certificates are self-signed).
// Notes: Chromium refuses a few "unsafe" ports outright (e.g. 6000, 6665-6669, 10080);
// the landing page must be HTML (a body Chromium would download never becomes the page).
// JETBRIDGE_BROWSER_DEBUG=1 logs every request and response to stderr.

import { writeFileSync } from 'node:fs';

import { chromium } from 'playwright-core';

import { emit, parseOptions } from './json_line.mjs';

const args = parseOptions(
  {
    'start-url': { type: 'string' },
    login: { type: 'string' },
    password: { type: 'string', default: 'x' },
    map: { type: 'string', multiple: true, default: [] },
    'map-to': { type: 'string', default: '127.0.0.1' },
    'allow-host': { type: 'string', multiple: true, default: [] },
    until: { type: 'string' },
    screenshot: { type: 'string' },
    timeout: { type: 'string', default: '30000' },
    then: { type: 'string', multiple: true, default: [] },
    'then-screenshots': { type: 'string' },
    cancel: { type: 'boolean', default: false },
  },
  (a) => {
    if (!a['start-url'] || !a.login) throw new Error('--start-url and --login are required');
    new URL(a['start-url']); // eslint-disable-line no-new
  },
);
if (!args) process.exit();

const timeoutMs = Number(args.timeout);
const mapped = args.map.flatMap((m) => m.split(',')).map((h) => h.trim().toLowerCase()).filter(Boolean);
const startUrl = new URL(args['start-url']);
const untilPrefix = args.until ?? `${startUrl.origin}/`;

function isLoopback(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function isMapped(hostname) {
  const h = hostname.toLowerCase();
  return mapped.some((m) => (m.startsWith('*.') ? h.endsWith(m.slice(1)) : h === m))
    || args['allow-host'].some((a) => a.toLowerCase() === h);
}

function isDone(url) {
  return url.startsWith(untilPrefix) || `${url}/` === untilPrefix;
}

const launchArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];
if (mapped.length) {
  const rules = mapped.map((h) => `MAP ${h} ${args['map-to']}`).join(',');
  launchArgs.push(`--host-resolver-rules=${rules}`);
}

const blocked = [];
// The --screenshot is of the landing page, taken before any --then page.
let shotTaken = false;
let browser;
let page;

async function pageHtml() {
  try {
    return (await page.content()).slice(0, 2000);
  } catch {
    return '';
  }
}

async function has(selector) {
  try {
    return (await page.locator(selector).count()) > 0;
  } catch {
    return false; // the page navigated while we looked
  }
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

// Submit the page's form once, then wait until the browser has left this URL: the
// dev interaction pages post back to their own URL and redirect on, and a second
// click on a page that is already navigating away would post a stale form.
const submitted = new Set();
async function submitAndWait(url, deadline) {
  submitted.add(url);
  await page.click('form button[type="submit"]');
  await page.waitForURL((u) => u.href !== url, {
    timeout: Math.max(1, deadline - Date.now()),
    waitUntil: 'domcontentloaded',
  }).catch(() => {});
}

async function run() {
  browser = await chromium.launch({
    executablePath: process.env.JETBRIDGE_CHROMIUM || '/usr/bin/chromium',
    args: launchArgs,
    headless: true,
    timeout: timeoutMs,
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(timeoutMs);
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (!/^(https?|wss?):$/.test(u.protocol) || isLoopback(u.hostname) || isMapped(u.hostname)) {
      return route.continue();
    }
    blocked.push(u.origin);
    return route.abort('blockedbyclient');
  });
  page = await context.newPage();
  if (process.env.JETBRIDGE_BROWSER_DEBUG) {
    page.on('request', (r) => console.error(`> ${r.method()} ${r.url()}`));
    page.on('response', (r) => console.error(`< ${r.status()} ${r.url()}`));
  }

  const deadline = Date.now() + timeoutMs;
  await page.goto(startUrl.href, { waitUntil: 'domcontentloaded' });

  let loginSubmitted = false;
  let loginCount = 0;
  let consentClicks = 0;
  let settledSince = null;
  while (Date.now() < deadline) {
    const url = page.url();
    if (isDone(url) && !(await has('input[name="login"]'))) {
      // Back on the target. Without a login it must stay there for a moment (no script redirect).
      if (loginSubmitted) break;
      settledSince ??= Date.now();
      if (Date.now() - settledSince > 1000) break;
    } else {
      settledSince = null;
    }
    if (await has('h1:has-text("oops! something went wrong")')) {
      throw new Error('the IdP showed its error page');
    }
    if (args.cancel && !submitted.has(url) && (await has('form input[name="login"]'))) {
      submitted.add(url);
      const abort = new URL(url);
      abort.pathname = `${abort.pathname.replace(/\/$/, '')}/abort`;
      abort.search = '';
      await page.goto(abort.href, { waitUntil: 'domcontentloaded' });
      continue;
    }
    if (!submitted.has(url) && (await has('form input[name="login"]'))) {
      loginCount += 1;
      if (loginCount > 3) throw new Error('the IdP keeps showing its login form');
      await page.fill('input[name="login"]', args.login);
      await page.fill('input[name="password"]', args.password);
      await submitAndWait(url, deadline);
      loginSubmitted = true;
      continue;
    }
    // jetbridge's built-in development provider: a "pick a demo user" page.
    const pick = `form input[name="txn"] ~ ul button[name="user"][value="${args.login}"], form button[name="user"][value="${args.login}"]`;
    if (!submitted.has(url) && (await has(pick))) {
      submitted.add(url);
      await page.click(`form button[name="user"][value="${args.login}"]`);
      await page.waitForURL((u) => u.href !== url, {
        timeout: Math.max(1, deadline - Date.now()),
        waitUntil: 'domcontentloaded',
      }).catch(() => {});
      loginSubmitted = true;
      continue;
    }
    if (!submitted.has(url) && (await has('form input[name="prompt"][value="consent"]'))) {
      consentClicks += 1;
      if (consentClicks > 3) throw new Error('the IdP keeps showing its consent page');
      await submitAndWait(url, deadline);
      continue;
    }
    await sleep(100);
  }
  if (!isDone(page.url())) {
    throw new Error(`timed out after ${timeoutMs} ms waiting for a URL starting with ${untilPrefix}`);
  }
  await page.waitForLoadState('load').catch(() => {});
  const bodyText = await page.evaluate(() => document.body?.innerText ?? '');
  const finalUrl = page.url();
  if (args.screenshot) {
    writeFileSync(args.screenshot, await page.screenshot({ fullPage: true }));
    shotTaken = true;
  }
  const then = [];
  for (const [i, url] of args.then.entries()) {
    const response = await page.goto(url, { waitUntil: 'load' });
    if (args['then-screenshots']) {
      writeFileSync(`${args['then-screenshots']}/then-${i + 1}.png`, await page.screenshot({ fullPage: true }));
    }
    then.push({
      url,
      status: response ? response.status() : null,
      final_url: page.url(),
      body_text: await page.evaluate(() => document.body?.innerText ?? ''),
    });
  }
  return { loginSubmitted, bodyText, finalUrl, then };
}

let result;
try {
  const { loginSubmitted, bodyText, finalUrl, then } = await run();
  result = {
    ok: true, final_url: finalUrl, body_text: bodyText, logged_in: loginSubmitted, blocked, then,
  };
} catch (err) {
  result = {
    ok: false,
    error: `${err.name}: ${err.message}`.split('\n')[0],
    final_url: page ? page.url() : null,
    html: page ? await pageHtml() : '',
    blocked,
  };
}
if (args.screenshot && page && !shotTaken) {
  try {
    writeFileSync(args.screenshot, await page.screenshot({ fullPage: true }));
  } catch (err) {
    result.screenshot_error = err.message;
  }
}
await browser?.close().catch(() => {});
emit(result, result.ok ? 0 : 1);
