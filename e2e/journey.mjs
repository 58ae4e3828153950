#!/usr/bin/env node
// The examplebank front end in a real browser (Debian's Chromium, driven by playwright-core):
// a person's whole journey on the phone simulator, the XSS and CSP cases, and the admin console.
// Saves a screenshot of each screen into docs/screenshots/ (or $E2E_SCREENSHOTS_DIR).
//
//   node e2e/journey.mjs URL ADMIN_USERNAME ADMIN_PASSWORD
//
// The server must be running at URL with an administrator already created
// (`examplebank admin create NAME`). Exits 0 when every check passes.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const [rawUrl, adminUser, adminPassword] = process.argv.slice(2);
if (!rawUrl || !adminUser || !adminPassword) {
  console.error('usage: node e2e/journey.mjs URL ADMIN_USERNAME ADMIN_PASSWORD');
  process.exit(64);
}
const BASE = rawUrl.replace(/\/+$/, '');
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = process.env.E2E_SCREENSHOTS_DIR ?? path.join(HERE, '..', 'docs', 'screenshots');
const CHROMIUM = process.env.EXAMPLEBANK_TEST_CHROMIUM ?? '/usr/bin/chromium';
const PHONE = { width: 390, height: 844 };
const EXPECTED_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const XSS = '<img src=x onerror=alert(1)>';
const RATES = { transport: 1, coffee: 1, groceries: 2 };

const deadline = setTimeout(() => {
  console.error('journey: FAILED: gave up after 300 s');
  process.exit(2);
}, 300_000);

// ---------- small helpers ----------

let stepNumber = 0;
async function step(name, body) {
  stepNumber += 1;
  const started = Date.now();
  try {
    await body();
  } catch (error) {
    console.error(`not ok ${stepNumber} - ${name}`);
    throw error;
  }
  console.log(`ok ${stepNumber} - ${name} (${Date.now() - started} ms)`);
}

function cents(text) {
  const match = /^(\d[\d,]*)\.(\d\d)$/.exec(String(text).trim());
  assert.ok(match, `not an amount: ${text}`);
  return Number(match[1].replace(/,/g, '')) * 100 + Number(match[2]);
}

/** An amount as the server writes it (no thousands separator). */
function plainMoney(value) {
  return `${Math.trunc(value / 100)}.${String(value % 100).padStart(2, '0')}`;
}

function money(value) {
  const whole = String(Math.trunc(value / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${whole}.${String(value % 100).padStart(2, '0')}`;
}

async function http(method, pathname, { token, json, form, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, redirect: 'manual' };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  if (form) {
    init.headers['Content-Type'] = 'application/x-www-form-urlencoded';
    init.body = new URLSearchParams(form);
  }
  return fetch(BASE + pathname, init);
}

/** True when the server has a route (an unauthenticated call answers 401, not 404/405). */
async function routeExists(method, pathname) {
  const response = await http(method, pathname, method === 'GET' || method === 'DELETE' ? {} : { json: {} });
  return response.status !== 404 && response.status !== 405;
}

/** Closes the notifications, as a person would, so they do not cover the screen. */
async function dismissNotes(page) {
  const close = page.locator('.note-close').first();
  for (let i = 0; i < 5 && (await close.count()) > 0; i += 1) {
    await close.click({ timeout: 1_000 }).catch(() => {});
  }
  await page.locator('.note').first().waitFor({ state: 'detached', timeout: 2_000 }).catch(() => {});
}

async function shot(page, name, { keepNotes = false, scale = 'device', fullPage = false } = {}) {
  mkdirSync(SHOTS, { recursive: true });
  if (!keepNotes) await dismissNotes(page);
  // Let transitions and the notification drop-in settle.
  await page.waitForTimeout(350);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), animations: 'disabled', caret: 'hide', scale, fullPage });
}

async function note(page, pattern, timeout = 10_000) {
  const locator = page.locator('.note', { hasText: pattern }).first();
  await locator.waitFor({ state: 'visible', timeout });
  return (await locator.textContent()) ?? '';
}

async function tokensOf(page, app = 'bank') {
  return page.evaluate((key) => JSON.parse(sessionStorage.getItem(key) ?? 'null'), `eb.tokens.${app}`);
}

async function goHome(page) {
  await page.click('#home-button');
  await page.locator('.tiles').waitFor();
}

async function openBank(page, tab) {
  await page.evaluate((hash) => {
    window.location.hash = hash;
  }, `#/bank/${tab}`);
  await page.locator(`.tab[aria-current="page"]`, { hasText: new RegExp(tab, 'i') }).waitFor();
}

async function login(page, username, password) {
  await page.waitForURL((u) => u.pathname === '/identity/v1/authorize', { timeout: 15_000 });
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type="submit"]');
}

// ---------- the run ----------

const profileDir = mkdtempSync(path.join(tmpdir(), 'examplebank-chromium-'));
const downloadsDir = mkdtempSync(path.join(tmpdir(), 'examplebank-downloads-'));
let context;
const problems = { dialogs: [], pageErrors: [], csp: [], foreign: [] };

function watch(page) {
  page.on('dialog', async (dialog) => {
    problems.dialogs.push(dialog.message());
    await dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => problems.pageErrors.push(error.message));
  page.on('console', (message) => {
    const text = message.text();
    if (/Content Security Policy|Refused to (execute|load|apply|connect)/i.test(text)) problems.csp.push(text);
  });
}

try {
  const username = `journey-${Date.now().toString(36)}`;
  const password = 'correct-horse-battery-42';
  const has = {
    consents: await routeExists('GET', '/bank/v1/users/self/consents'),
    export: await routeExists('GET', '/bank/v1/users/self/export'),
    restriction: await routeExists('PUT', '/bank/v1/users/self/restriction'),
    requests: await routeExists('GET', '/bank/v1/users/self/requests'),
    adminRequests: await routeExists('GET', '/admin/v1/requests'),
    audit: await routeExists('GET', '/admin/v1/audit'),
    insights: await routeExists('GET', '/bank/v1/users/self/insights'),
    objection: await routeExists('PUT', '/bank/v1/users/self/objection'),
    analytics: await routeExists('GET', '/admin/v1/analytics'),
  };
  console.log(`# server at ${BASE}; endpoints present: ${JSON.stringify(has)}`);

  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-quic',
      '--disable-sync',
    ],
    viewport: PHONE,
    deviceScaleFactor: 2,
    isMobile: false,
    hasTouch: false,
    locale: 'en-GB',
    timezoneId: 'UTC',
    acceptDownloads: true,
    downloadsPath: downloadsDir,
  });
  context.setDefaultTimeout(10_000);
  context.on('request', (request) => {
    const url = new URL(request.url());
    if ((url.protocol === 'http:' || url.protocol === 'https:') && url.origin !== BASE) {
      problems.foreign.push(request.url());
    }
  });
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);

  await step('pages and assets are served with their content types and the strict CSP', async () => {
    for (const pathname of ['/', '/callback', '/admin']) {
      const response = await http('GET', pathname);
      assert.equal(response.status, 200, pathname);
      assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8', pathname);
      assert.equal(response.headers.get('content-security-policy'), EXPECTED_CSP, pathname);
      const html = await response.text();
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, `${pathname} has an inline script`);
      assert.doesNotMatch(html, /\sstyle=|<style/i, `${pathname} has inline style`);
    }
    const types = {
      '/assets/phone.js': 'text/javascript; charset=utf-8',
      '/assets/app.css': 'text/css; charset=utf-8',
      '/assets/icon-bank.svg': 'image/svg+xml',
    };
    for (const [pathname, type] of Object.entries(types)) {
      const response = await http('GET', pathname);
      assert.equal(response.status, 200, pathname);
      assert.equal(response.headers.get('content-type'), type, pathname);
    }
    const missing = await http('GET', '/assets/no-such-file.js');
    assert.equal(missing.status, 404);
    assert.match(missing.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const response = await page.goto(`${BASE}/`);
    assert.equal(response.headers()['content-security-policy'], EXPECTED_CSP);
  });

  await step('home screen: the Bank app and merchant tiles; a charge while signed out is refused in plain words', async () => {
    await page.locator('.tiles').waitFor();
    assert.equal(await page.locator('.tile').count(), 9);
    for (const label of ['Bank', 'Ride share', 'Cafe', 'Groceries', 'Food delivery', 'Fuel']) {
      await page.getByRole(label === 'Bank' ? 'link' : 'button', { name: label, exact: true }).waitFor();
    }
    await page.getByRole('button', { name: 'Ride share', exact: true }).click();
    const text = await note(page, 'not signed in');
    assert.match(text, /Open the Bank app and sign in/);
  });

  const other = { username: `other-${Date.now().toString(36)}`, password: 'another-long-password-9' };
  await step('an account made on the login page’s own sign-up form chooses its consents after login', async () => {
    await page.goto(`${BASE}/identity/v1/signup`);
    await page.fill('#username', other.username);
    await page.fill('#password', other.password);
    await page.fill('#givenName', 'Grace');
    await page.fill('#familyName', 'Hopper');
    await page.fill('#email', 'grace.journey@example.org');
    await page.click('button[type="submit"]');
    await page.getByRole('link', { name: 'Open the app' }).click();
    await page.getByRole('link', { name: 'Bank', exact: true }).click();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await login(page, other.username, other.password);
    await page.getByRole('heading', { name: 'Finish setting up' }).waitFor();
    for (const purpose of ['rewards', 'analytics', 'profiling']) {
      assert.equal(await page.isChecked(`#setup-consent-${purpose}`), false, `${purpose} must start unchecked`);
    }
    await page.getByRole('button', { name: 'Save my choices' }).click();
    await page.locator('.empty', { hasText: 'No transactions yet' }).waitFor();
    assert.match(await note(page, 'Welcome to examplebank'), /rewards off/);
    await goHome(page);
    await page.getByRole('button', { name: 'Cafe', exact: true }).click();
    assert.match(await note(page, 'Card declined'), /not consented to the rewards programme/);
    await openBank(page, 'account');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await goHome(page);
  });

  await step('sign-up with the consent choices written out and unchecked, then the PKCE login', async () => {
    await page.getByRole('link', { name: 'Bank', exact: true }).click();
    await page.getByRole('link', { name: 'Create an account' }).click();
    await page.locator('#su-username').waitFor();
    for (const purpose of ['rewards', 'analytics', 'profiling']) {
      assert.equal(await page.isChecked(`#su-consent-${purpose}`), false, `${purpose} must start unchecked`);
    }
    const fieldset = (await page.locator('fieldset.consents').textContent()) ?? '';
    assert.match(fieldset, /compute reward points/);
    assert.match(fieldset, /groups of at least five people/);
    assert.match(fieldset, /personalised insights shown only to you/);
    await page.fill('#su-username', username);
    await page.fill('#su-password', password);
    await page.fill('#su-given', 'Ada');
    await page.fill('#su-family', 'Lovelace');
    await page.fill('#su-email', 'ada.journey@example.org');
    await page.check('#su-consent-rewards');
    await page.check('#su-consent-analytics');
    await shot(page, 'signup');
    await page.getByRole('button', { name: 'Create account' }).click();
    await login(page, username, password);
    await page.waitForURL(`${BASE}/#/bank/transactions`, { timeout: 15_000 });
    const welcome = await note(page, 'Welcome to examplebank');
    assert.match(welcome, /rewards on/);
    if (has.consents) assert.match(welcome, /analytics on/);
    else assert.match(welcome, /not available yet/);
    assert.ok((await tokensOf(page))?.refreshToken, 'tokens are kept in sessionStorage');
    const cookies = await context.cookies(BASE);
    assert.equal(cookies.length, 0, 'no cookies');
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  });

  await step('consent: the choices show in Account; withdrawing rewards makes the card refuse; giving it back', async () => {
    await openBank(page, 'account');
    const rewards = page.locator('#consent-rewards');
    await page.locator('#consent-rewards:not([disabled])').waitFor();
    assert.equal(await rewards.isChecked(), true);
    if (has.consents) {
      assert.equal(await page.isChecked('#consent-analytics'), true);
      assert.equal(await page.isChecked('#consent-profiling'), false);
      await page.locator('.history li').first().waitFor();
    }
    await rewards.click();
    await page.locator('.status.ok', { hasText: 'consent withdrawn' }).waitFor();
    if (has.consents) await page.locator('.receipt', { hasText: 'signed by examplebank' }).waitFor();
    await goHome(page);
    await page.getByRole('button', { name: 'Cafe', exact: true }).click();
    assert.match(await note(page, 'Card declined'), /not consented to the rewards programme/);
    await openBank(page, 'account');
    await page.locator('#consent-rewards:not([disabled])').waitFor();
    assert.equal(await page.isChecked('#consent-rewards'), false);
    await page.locator('#consent-rewards').click();
    await page.locator('.status.ok', { hasText: 'consent given' }).waitFor();
  });

  const charges = [];
  await step('three charges from the home screen (one with the keyboard)', async () => {
    await goHome(page);
    await page.evaluate(() => {
      window.journeyMarker = 'no reload';
    });
    for (const [label, category] of [
      ['Ride share', 'transport'],
      ['Cafe', 'coffee'],
      ['Groceries', 'groceries'],
    ]) {
      const tile = page.getByRole('button', { name: label, exact: true });
      if (label === 'Groceries') {
        await tile.focus();
        await page.keyboard.press('Enter');
      } else {
        await tile.click();
      }
      const text = await note(page, new RegExp(`Paid .* \\(${category}\\)`, 'i'));
      const match = /Paid ([\d,]+\.\d\d) at (.+?) \(/.exec(text);
      assert.ok(match, text);
      charges.push({ category, amount: cents(match[1]), merchant: match[2] });
    }
    await shot(page, 'home', { keepNotes: true });
    // On a desktop screen the simulator is a phone-sized frame.
    await page.setViewportSize({ width: 1280, height: 900 });
    const frame = await page.locator('#phone').boundingBox();
    assert.ok(frame.width >= 380 && frame.width <= 420, `the phone frame is phone-sized on a desktop (${frame.width}px)`);
    await shot(page, 'desktop', { keepNotes: true, scale: 'css' });
    await page.setViewportSize(PHONE);
  });

  const expectedPoints = charges.reduce((sum, c) => sum + Math.floor((c.amount * RATES[c.category]) / 100), 0);
  await step('transactions: merchant, date, amount; points appear and the pending marker goes, without a reload', async () => {
    await page.getByRole('link', { name: 'Bank', exact: true }).click();
    await page.locator('.tx').first().waitFor();
    const sawPending = (await page.locator('.badge.pending').count()) > 0;
    await page.waitForFunction(() => document.querySelectorAll('.tx').length === 3 && document.querySelectorAll('.badge.pending').length === 0, null, { timeout: 15_000 });
    for (const charge of charges) {
      const row = page.locator('.tx', { hasText: charge.merchant }).first();
      const text = (await row.textContent()) ?? '';
      assert.ok(text.includes(money(charge.amount)), `${charge.merchant}: ${text}`);
      const points = Math.floor((charge.amount * RATES[charge.category]) / 100);
      assert.ok(text.includes(`+${points} pts`), `${charge.merchant} should show +${points} pts: ${text}`);
      assert.match(text, /\d{4}/, 'a date');
    }
    await page.locator('.points-chip', { hasText: `${expectedPoints} pts` }).waitFor();
    assert.equal(await page.evaluate(() => window.journeyMarker), 'no reload');
    console.log(`#   ${expectedPoints} points; the pending marker was ${sawPending ? 'seen' : 'already gone'} on first render`);
    await shot(page, 'transactions');
  });

  await step('spending by category: an SVG chart with the values also as text', async () => {
    await page.getByRole('link', { name: 'Spending' }).click();
    await page.locator('svg.chart').waitFor();
    assert.equal(await page.locator('svg.chart g.chart-row').count(), 3);
    assert.equal(await page.locator('svg.chart rect.bar').count(), 3);
    for (const charge of charges) {
      const row = page.locator(`.spending-table tr[data-category="${charge.category}"] td.amount`);
      assert.equal((await row.textContent())?.trim(), money(charge.amount));
      const svgText = await page.locator(`svg.chart g[data-category="${charge.category}"] .chart-value`).textContent();
      assert.equal(svgText?.trim(), money(charge.amount));
    }
    const total = charges.reduce((sum, c) => sum + c.amount, 0);
    assert.match((await page.locator('.total').textContent()) ?? '', new RegExp(money(total).replace('.', '\\.')));
    await shot(page, 'spending');
  });

  await step('points balance and an idempotent redemption', async () => {
    await page.getByRole('link', { name: 'Points', exact: true }).click();
    await page.locator('.points-balance', { hasText: String(expectedPoints) }).waitFor();
    await page.fill('#redeem-points', '1');
    await page.getByRole('button', { name: 'Redeem points' }).click();
    await page.locator('.status.ok', { hasText: 'Redeemed 1 point' }).waitFor();
    await page.locator('.points-balance', { hasText: String(expectedPoints - 1) }).waitFor();
    await shot(page, 'points');
  });

  await step('a merchant named with markup shows as text: no element, no script, no dialog', async () => {
    const { accessToken } = await tokensOf(page);
    const response = await http('POST', '/bank/v1/transactions', {
      token: accessToken,
      json: { transactionName: XSS, category: 'other', amount: '1.00' },
    });
    assert.equal(response.status, 204, await response.text());
    await openBank(page, 'transactions');
    const name = page.locator('.tx-name', { hasText: 'onerror' });
    await name.waitFor();
    assert.equal(await name.textContent(), XSS);
    assert.equal(await page.evaluate(() => document.querySelectorAll('img').length), 0, 'no <img> element');
    assert.match(await name.evaluate((el) => el.innerHTML), /^&lt;img src=x onerror=alert\(1\)&gt;$/);
    await page.waitForTimeout(300);
    assert.deepEqual(problems.dialogs, [], 'no dialog fired');
  });

  await step('a refused access token is refreshed once and the rotated refresh token is kept', async () => {
    const before = await tokensOf(page);
    await page.evaluate((t) => {
      sessionStorage.setItem('eb.tokens.bank', JSON.stringify({ ...t, accessToken: 'not.a.token', expiresAt: Date.now() + 600_000 }));
    }, before);
    await page.reload();
    await page.locator('.tx').first().waitFor();
    const after = await tokensOf(page);
    assert.notEqual(after.accessToken, 'not.a.token');
    assert.notEqual(after.refreshToken, before.refreshToken, 'the refresh token rotated');
    assert.equal(await page.evaluate(() => document.cookie), '');
  });

  await step('account: download my data, restrict processing, my requests', async () => {
    await openBank(page, 'account');
    await page.locator('#download-data').waitFor();
    // A server without the endpoint: the control says so and nothing breaks.
    await page.route('**/bank/v1/users/self/export', (route) =>
      route.fulfill({
        status: 404,
        contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'urn:examplebank:problem:not-found', title: 'Not Found', status: 404, detail: 'there is nothing at this address' }),
      }),
    );
    await page.click('#download-data');
    await page.locator('.status', { hasText: 'not available yet' }).first().waitFor();
    await page.unroute('**/bank/v1/users/self/export');
    if (has.export) {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-data')]);
      assert.match(download.suggestedFilename(), /^examplebank-my-data-\d{4}-\d{2}-\d{2}\.json$/);
      const file = path.join(downloadsDir, 'export.json');
      await download.saveAs(file);
      const exported = JSON.parse(readFileSync(file, 'utf8'));
      assert.equal(exported.profile.username, username);
      assert.equal(exported.profile.email, 'ada.journey@example.org');
      assert.equal(exported.transactions.length, 4);
      assert.ok(exported.transactions.some((t) => t.transactionName === XSS));
      await page.locator('.status.ok', { hasText: 'Your data is ready' }).waitFor();
    } else {
      await page.click('#download-data');
      await page.locator('.status', { hasText: 'not available yet' }).first().waitFor();
    }
    if (has.restriction) {
      await page.getByRole('button', { name: 'Restrict processing' }).click();
      await page.locator('.status.ok', { hasText: 'Processing is now restricted' }).waitFor();
      await goHome(page);
      await page.getByRole('button', { name: 'Fuel', exact: true }).click();
      assert.match(await note(page, 'restricted the processing'), /Lift the restriction/);
      await openBank(page, 'account');
      await page.getByRole('button', { name: 'Lift the restriction' }).click();
      await page.locator('.status.ok', { hasText: 'The restriction is lifted' }).waitFor();
    }
    if (has.requests) {
      await openBank(page, 'spending');
      await openBank(page, 'account');
      await page.locator('.request-list li').first().waitFor();
      const kinds = await page.locator('.request-kind').allTextContents();
      if (has.export) assert.ok(kinds.includes('export'), kinds.join(','));
    } else {
      await page.locator('.requests', { hasText: 'not available yet' }).waitFor();
    }
    await page.locator('.bank-content').evaluate((el) => el.scrollTo(0, 0));
    await shot(page, 'account');
  });

  await step('profiling: consent brings insights on Spending; an objection stops them, in plain words; withdrawing it brings them back', async () => {
    assert.ok(has.insights && has.objection, 'the insights and objection endpoints are served');
    // The three charges and the 1.00 of the markup case: the server divides with truncation.
    const total = charges.reduce((sum, c) => sum + c.amount, 0) + 100;
    const average = plainMoney(Math.trunc(total / 4));
    const insights = page.locator('section.insights');
    const expectInsights = async () => {
      await openBank(page, 'spending');
      await insights.locator('.insight-list li', { hasText: `Your average charge is ${average}.` }).waitFor();
      await insights.locator('.hint', { hasText: 'from 4 transactions, because you consented to profiling' }).waitFor();
    };
    const self = async () => {
      const { accessToken } = await tokensOf(page);
      const response = await http('GET', '/bank/v1/users/self', { token: accessToken });
      assert.equal(response.status, 200);
      return response.json();
    };

    await openBank(page, 'account');
    const profiling = page.getByRole('switch', { name: 'Personal insights (profiling)' });
    await page.locator('#consent-profiling:not([disabled])').waitFor();
    assert.equal(await profiling.isChecked(), false);
    await profiling.click();
    await page.locator('.status.ok', { hasText: 'Personal insights (profiling): consent given' }).waitFor();
    await expectInsights();
    await insights.scrollIntoViewIfNeeded();
    await shot(page, 'insights');

    await openBank(page, 'account');
    await page.getByRole('button', { name: 'Object to profiling', exact: true }).click();
    await page.locator('.status.ok', { hasText: 'Your objection is recorded' }).waitFor();
    const withdraw = page.getByRole('button', { name: 'Withdraw my objection', exact: true });
    assert.equal(await withdraw.getAttribute('aria-pressed'), 'true');
    await page.locator('.state', { hasText: 'You object to profiling.' }).waitFor();
    const objected = await self();
    assert.equal(objected.objectedToProfiling, true);
    assert.equal(objected.consents.profiling, true, 'the objection leaves the consent as it was');
    await openBank(page, 'spending');
    await insights.locator('p', { hasText: 'No insights: you objected to profiling, so no insights are computed about you.' }).waitFor();
    assert.equal(await insights.locator('.insight-list').count(), 0, 'no insight is shown');
    assert.doesNotMatch((await insights.textContent()) ?? '', /average charge/);

    await openBank(page, 'account');
    await withdraw.click();
    await page.locator('.status.ok', { hasText: 'Your objection is withdrawn' }).waitFor();
    await page.getByRole('button', { name: 'Object to profiling', exact: true }).waitFor();
    assert.equal((await self()).objectedToProfiling, false);
    await expectInsights();
    await openBank(page, 'account');
  });

  await step('log out revokes the session; signing in again works', async () => {
    const before = await tokensOf(page);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.equal(await tokensOf(page), null, 'tokens cleared');
    const refused = await http('POST', '/identity/v1/token', {
      form: { grant_type: 'refresh_token', refresh_token: before.refreshToken, client_id: 'simulator' },
    });
    assert.equal(refused.status, 400, 'the revoked refresh token no longer works');
    const stale = await http('GET', '/bank/v1/points', { token: before.accessToken });
    assert.equal(stale.status, 401, 'the access token died with its session');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await login(page, username, password);
    await page.waitForURL(`${BASE}/#/bank/transactions`);
    await page.locator('.tx').first().waitFor();
  });

  await step('delete my data: a confirmation, the receipt, and the tokens die', async () => {
    await openBank(page, 'account');
    const { accessToken } = await tokensOf(page);
    await page.getByRole('button', { name: 'Delete my data', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete all your data?' });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Yes, delete my data' }).click();
    await page.getByRole('heading', { name: 'Your data is being deleted' }).waitFor();
    const receipt = (await page.locator('.erasure-receipt .facts').textContent()) ?? '';
    assert.match(receipt, /[0-9a-f]{8}-[0-9a-f]{4}-/, 'the request id is shown');
    await page.locator('.status.ok', { hasText: 'signed out' }).waitFor();
    await shot(page, 'erasure');
    let status = 0;
    for (let i = 0; i < 60 && status !== 401; i += 1) {
      status = (await http('GET', '/bank/v1/users/self', { token: accessToken })).status;
      if (status !== 401) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.equal(status, 401, 'the erased person’s token is refused');
  });

  await step('logging in again fails', async () => {
    await page.getByRole('link', { name: 'Back to the home screen' }).click();
    await page.getByRole('link', { name: 'Bank', exact: true }).click();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await login(page, username, password);
    await page.locator('.error[role="alert"]', { hasText: 'The username or password is incorrect.' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/identity/v1/authorize');
  });

  await step('sign-in refusals are explained: a forged answer, an administrator in the bank, a person in the console', async () => {
    await page.goto(`${BASE}/callback?code=forged&state=forged`);
    // The failed login just before left a sign-in open in this tab: its state does not match.
    await page.locator('[role="alert"]', { hasText: /state does not match|not started from this tab/ }).waitFor();
    assert.equal(new URL(page.url()).search, '', 'the code is removed from the address bar');
    await page.goto(`${BASE}/#/bank`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await login(page, adminUser, adminPassword);
    await page.locator('[role="alert"]', { hasText: 'administrators have no bank account' }).waitFor();
    assert.equal(await tokensOf(page), null);
    await page.goto(`${BASE}/admin`);
    await page.getByRole('button', { name: 'Sign in as administrator' }).click();
    await login(page, other.username, other.password);
    await page.locator('[role="alert"]', { hasText: 'not an administrator' }).waitFor();
    assert.equal(await tokensOf(page, 'admin'), null);
  });

  let admin;
  await step('admin console: sign in with the admin scope, see and change a reward rule, outbox', async () => {
    admin = await context.newPage();
    watch(admin);
    await admin.goto(`${BASE}/admin`);
    await admin.getByRole('button', { name: 'Sign in as administrator' }).click();
    await login(admin, adminUser, adminPassword);
    await admin.waitForURL(`${BASE}/admin`);
    await admin.locator('table.rules tbody tr').first().waitFor();
    const categories = await admin.locator('table.rules tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.category));
    for (const c of ['coffee', 'fuel', 'groceries']) assert.ok(categories.includes(c), categories.join(','));
    assert.equal(await admin.inputValue('#rule-groceries'), '2');
    await admin.fill('#rule-coffee', '5');
    await admin.getByRole('button', { name: 'Save the rule for Coffee' }).click();
    await admin.locator('.status.ok', { hasText: 'Coffee now earns 5 points' }).waitFor();
    await admin.locator('#panel-outbox dl.stats').waitFor();
    if (has.adminRequests) {
      await admin.locator('#panel-requests:not([hidden]) table').waitFor();
      assert.ok((await admin.locator('#panel-requests td', { hasText: 'erasure' }).count()) > 0, 'the erasure is in the queue');
    }
    if (has.audit) await admin.locator('#panel-audit:not([hidden])', { hasText: 'intact' }).waitFor();
    await admin.waitForTimeout(500);
    await shot(admin, 'admin');
    await admin.setViewportSize({ width: 1280, height: 1000 });
    await shot(admin, 'admin-wide', { scale: 'css', fullPage: true });
    await admin.setViewportSize(PHONE);
    await admin.reload();
    await admin.locator('table.rules tbody tr').first().waitFor();
    assert.equal(await admin.inputValue('#rule-coffee'), '5', 'the change was stored');
    const rules = await (await http('GET', '/admin/v1/reward-rules', { token: (await tokensOf(admin, 'admin')).accessToken })).json();
    assert.equal(rules.find((r) => r.category === 'coffee').pointsPerUnit, 5);
    // Put it back, so the run leaves the server as it found it.
    await admin.fill('#rule-coffee', '1');
    await admin.getByRole('button', { name: 'Save the rule for Coffee' }).click();
    await admin.locator('.status.ok', { hasText: 'Coffee now earns 1 point' }).waitFor();
  });

  await step('admin console: anonymised analytics (cells of at least 5 people, or a sentence saying so), the audit chain intact; log out', async () => {
    assert.ok(has.analytics && has.audit, 'the analytics and audit endpoints are served');
    const { accessToken } = await tokensOf(admin, 'admin');
    const analytics = await (await http('GET', '/admin/v1/analytics', { token: accessToken })).json();
    assert.equal(analytics.minContributors, 5);
    for (const cell of analytics.cells) assert.ok(cell.contributors >= 5, `a cell of ${cell.contributors} people is shown`);
    const panel = admin.locator('#panel-analytics:not([hidden])');
    await panel.getByRole('heading', { name: 'Anonymised analytics' }).waitFor();
    await panel.locator('.hint', { hasText: 'A cell is shown only when at least 5 people contributed' }).waitFor();
    if (analytics.cells.length > 0) {
      await panel.getByRole('region', { name: 'Analytics cells' }).locator('tbody tr').first().waitFor();
      assert.equal(await panel.locator('tbody tr').count(), analytics.cells.length);
    } else {
      await panel.locator('.muted', { hasText: 'No cell has enough people yet.' }).waitFor();
      assert.equal(await panel.locator('table').count(), 0);
    }
    console.log(`#   analytics: ${analytics.cells.length} cell(s) shown, ${analytics.suppressedCells} held back`);
    const audit = await (await http('GET', '/admin/v1/audit', { token: accessToken })).json();
    assert.equal(audit.intact, true, JSON.stringify(audit));
    await admin.locator('#panel-audit:not([hidden]) .status.ok', { hasText: 'The chain is intact: every entry verifies.' }).waitFor();
    assert.equal(await admin.locator('#panel-audit [role="alert"]').count(), 0, 'no alarm in the audit panel');
    await admin.getByRole('button', { name: 'Log out' }).click();
    await admin.getByRole('button', { name: 'Sign in as administrator' }).waitFor();
  });

  await step('no dialog, no script error, no CSP violation, no request to another site', async () => {
    assert.deepEqual(problems.dialogs, [], 'dialogs');
    assert.deepEqual(problems.pageErrors, [], 'page errors');
    assert.deepEqual(problems.csp, [], 'CSP violations');
    assert.deepEqual(problems.foreign, [], 'third-party requests');
  });

  console.log(`journey: ok (${stepNumber} steps; screenshots in ${SHOTS})`);
} catch (error) {
  console.error(`journey: FAILED: ${error.stack ?? error}`);
  for (const [kind, list] of Object.entries(problems)) {
    if (list.length) console.error(`# ${kind}: ${JSON.stringify(list)}`);
  }
  if (context) {
    for (const [i, page] of context.pages().entries()) {
      try {
        const file = path.join(tmpdir(), `examplebank-journey-failure-${i}.png`);
        await page.screenshot({ path: file });
        console.error(`# page ${i} at ${page.url()}; screenshot ${file}`);
        console.error(`# visible text: ${(await page.locator('body').innerText()).slice(0, 1500)}`);
      } catch {
        // The page may be gone.
      }
    }
  }
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profileDir, { recursive: true, force: true });
  rmSync(downloadsDir, { recursive: true, force: true });
  clearTimeout(deadline);
}
