// The web UI end to end in a real headless Chromium: single sign-on through
// the test IdP (oidc_provider.mjs), a request by alice, live updates on
// bob's approvals page and on alice's request page, approval, the
// credential, revocation, CSRF refusals, who may see what, sign-out ending
// the session on the server, and the phone width. Run by
// crates/hallpass-cli/tests/e2e/web.rs, which starts the IdP and the server
// and applies the access configuration this expects.
//
// Environment:
//   HALLPASS_URL      the server, e.g. http://127.0.0.1:7070 (required)
//   SCREENSHOT_DIR    where the screenshots go (default: a new temp dir)
//   RESULT_FILE       if set, JSON written there once known: {"request_id": ...,
//                     "auditor_cookie": ..., "approver_cookie": ...}
//   CLI_LOGIN_URLS    `hallpass login` addresses (space-separated) alice allows
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   AUDITOR_USER      an IdP account in group `auditors` (default carol;
//                     empty: the audit page steps are skipped)
//   TIMEOUT_MS        bound of each action (default 5000; navigations get twice that)
//   LIVE_TIMEOUT_MS   bound of each live update (default 3000)
//
// Accounts the IdP must know: alice (group dev), bob (a group that the
// server maps to `approvers`). Role `db-admin` must be requestable by dev,
// need one approval from group `approvers`, and allow 30m. Exits 0 when every
// step passed; otherwise prints what failed and what the pages showed, and
// exits 1.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium, request } from 'playwright-core';

const BASE = (process.env.HALLPASS_URL ?? '').replace(/\/+$/, '');
if (!BASE) {
  console.error('scenario: HALLPASS_URL is not set');
  process.exit(2);
}
const SHOTS = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), 'hallpass-web-'));
mkdirSync(SHOTS, { recursive: true });
const TIMEOUT = Number(process.env.TIMEOUT_MS || 5000);
const LIVE = Number(process.env.LIVE_TIMEOUT_MS || 3000);
const AUDITOR = process.env.AUDITOR_USER ?? 'carol';
const ROLE = 'db-admin';
const PAYLOAD = '<img src=x onerror=alert(1)>';
const SESSION_COOKIE = 'hallpass_session';
// The whole run is bounded too: a hung step must not hang the test.
const DEADLINE_MS = Number(process.env.SCENARIO_DEADLINE_MS || 180000);

const log = (line) => console.log(`[scenario] ${line}`);
let stepName = '';
function step(name) {
  stepName = name;
  log(`-- ${name}`);
}

// Every page, by label, for the dump when something fails; every dialog
// any page opened (the XSS payload must never open one).
const pages = new Map();
const dialogs = [];

function watch(label, page) {
  pages.set(label, page);
  page.on('dialog', (dialog) => {
    dialogs.push(`${label}: ${dialog.type()} "${dialog.message()}" at ${page.url()}`);
    log(`!! dialog in ${label}: ${dialog.type()} "${dialog.message()}"`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => log(`!! page error in ${label}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') log(`console error in ${label}: ${message.text()}`);
  });
  return page;
}

async function newContext(browser) {
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT);
  context.setDefaultNavigationTimeout(2 * TIMEOUT);
  return context;
}

async function newPage(context, label) {
  return watch(label, await context.newPage());
}

const path = (page) => new URL(page.url()).pathname;
const url = (p) => `${BASE}${p}`;

async function screenshot(page, name) {
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
  log(`screenshot ${name}`);
}

// Every page's title is "PAGE — Hallpass".
async function checkTitle(page) {
  const title = await page.title();
  assert.match(title, / — Hallpass$/, `the title of ${page.url()} is "${title}", expected "PAGE — Hallpass"`);
}

// Marks the document, so a later check can tell it was never reloaded.
async function markDocument(page) {
  await page.evaluate(() => {
    window.__hallpassNotReloaded = true;
  });
}

async function assertNotReloaded(page, what) {
  const same = await page.evaluate(() => window.__hallpassNotReloaded === true);
  assert.ok(same, `${what}: the page was reloaded or left (${page.url()}); the update must come live`);
}

// A response of the live event stream, if the page opens one within the bound.
function sseResponse(page, timeout = 2 * TIMEOUT) {
  return page
    .waitForResponse((response) => new URL(response.url()).pathname === '/ui/events', { timeout })
    .then((response) => {
      log(`/ui/events answered ${response.status()} (${response.headers()['content-type'] ?? 'no content-type'})`);
      return response;
    })
    .catch(() => {
      log('!! no /ui/events response seen: live updates will not come');
      return null;
    });
}

// Waits for `selector` on `page`, which must come by a live update (the
// page listens to /ui/events), not by a reload.
// Waits for a live update; logs how long it took from `since` (ms since
// the epoch, when the change was made), or from the start of the wait.
async function waitLive(page, selector, what, since = Date.now()) {
  try {
    await page.locator(selector).first().waitFor({ timeout: LIVE });
  } catch {
    throw new Error(`${what}: ${selector} did not appear within ${LIVE} ms without a reload (live update through /ui/events)`);
  }
  log(`${what}: shown live after ${Date.now() - since} ms`);
  await assertNotReloaded(page, what);
}

async function assertNoInjectedImage(page, where) {
  const injected = await page.locator('img[src="x"]').count();
  assert.equal(injected, 0, `${where}: the reason was inserted as HTML (an <img src=x> exists)`);
}

// The IdP's login page: a "Username" field and a "Sign in" button.
async function idpLogin(page, username) {
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

// Signs `username` in from a signed-out page `start`: redirected to
// /login?next=..., "Sign in", the IdP, and back on `start`.
async function signIn(page, username, start) {
  await page.goto(url(start));
  assert.equal(path(page), '/login', `signed out, ${start} should redirect to /login; it is at ${page.url()}`);
  const next = new URL(page.url()).searchParams.get('next');
  log(`${username}: at /login (next=${next})`);
  await checkTitle(page);
  await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  await page.getByLabel('Username', { exact: true }).waitFor();
  assert.ok(!page.url().startsWith(BASE), `"Sign in" should lead to the IdP; it is at ${page.url()}`);
  await idpLogin(page, username);
  await page.waitForURL((u) => u.href.startsWith(BASE) && u.pathname === start, { timeout: 2 * TIMEOUT });
  await page.getByRole('button', { name: 'Sign out', exact: true }).waitFor();
  log(`${username}: signed in, on ${path(page)}`);
}

const results = {};
// When the clicks that live updates follow were made (ms since the epoch).
const clicked = { request: 0 };
// Adds to what the Rust test reads back (RESULT_FILE) once the scenario ends.
function record(values) {
  Object.assign(results, values);
  if (process.env.RESULT_FILE) writeFileSync(process.env.RESULT_FILE, JSON.stringify(results));
}

async function sessionCookie(context) {
  const cookies = await context.cookies(BASE);
  return cookies.find((cookie) => cookie.name === SESSION_COOKIE);
}

function checkSecurityHeaders(response, where) {
  const headers = response.headers();
  const csp = headers['content-security-policy'];
  assert.ok(csp, `${where}: no Content-Security-Policy header`);
  const directives = Object.fromEntries(
    csp.split(';').map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([name, ...values]) => [name, values]),
  );
  const scripts = directives['script-src'] ?? directives['default-src'];
  assert.ok(scripts, `${where}: the CSP has neither script-src nor default-src: ${csp}`);
  assert.ok(!scripts.includes("'unsafe-inline'"), `${where}: the CSP allows inline script: ${csp}`);
  assert.equal(headers['x-frame-options']?.toUpperCase(), 'DENY', `${where}: X-Frame-Options`);
  assert.match(headers['cache-control'] ?? '', /no-store/, `${where}: Cache-Control`);
}

async function signInBoth(browser) {
  step('a. alice signs in');
  const aliceContext = await newContext(browser);
  const alice = await newPage(aliceContext, 'alice');
  await signIn(alice, 'alice', '/');
  const home = await alice.goto(url('/'));
  assert.equal(home.status(), 200, 'alice GET /');
  checkSecurityHeaders(home, 'GET /');
  await checkTitle(alice);
  const nav = alice.getByRole('navigation');
  for (const name of ['Request', 'My requests', 'Approvals', 'Configuration']) {
    await nav.getByRole('link', { name, exact: true }).first().waitFor();
  }
  // The audit and admin views are not offered to an ordinary user (and
  // refused if reached anyway, step h).
  for (const name of ['Audit', 'Admin']) {
    assert.equal(await nav.getByRole('link', { name, exact: true }).count(), 0, `alice's navigation offers ${name}`);
  }
  const cookie = await sessionCookie(aliceContext);
  assert.ok(cookie, `no ${SESSION_COOKIE} cookie after sign-in`);
  assert.equal(cookie.httpOnly, true, `${SESSION_COOKIE} must be HttpOnly`);
  assert.equal(cookie.sameSite, 'Lax', `${SESSION_COOKIE} must be SameSite=Lax`);

  step('b. bob signs in from /approvals and sees no request yet');
  const bobContext = await newContext(browser);
  const bob = await newPage(bobContext, 'bob');
  // Signing in goes through the IdP first: a longer bound.
  const bobEvents = sseResponse(bob, 6 * TIMEOUT);
  await signIn(bob, 'bob', '/approvals');
  await checkTitle(bob);
  await bobEvents;
  const before = await bob.locator('tr[data-request-id]').count();
  assert.equal(before, 0, `bob's /approvals lists ${before} request(s) before alice asks`);
  await markDocument(bob);
  return { aliceContext, alice, bobContext, bob };
}

async function requestAccess({ alice }) {
  step('c. alice asks for db-admin with the XSS payload as the reason');
  const form = await alice.goto(url('/request'));
  assert.equal(form.status(), 200, 'alice GET /request');
  await checkTitle(alice);
  // A label wrapping its <select> names it with the chosen option too ("Role db-admin").
  await alice.getByLabel(/^\s*Role\b/).selectOption(ROLE);
  await alice.getByLabel('Duration', { exact: true }).fill('30m');
  await alice.getByLabel('Reason', { exact: true }).fill(PAYLOAD);
  await screenshot(alice, 'request.png');
  const aliceEvents = sseResponse(alice);
  clicked.request = Date.now();
  await alice.getByRole('button', { name: 'Request access', exact: true }).click();
  await alice.waitForURL((u) => /^\/requests\/[^/]+$/.test(u.pathname), { timeout: 2 * TIMEOUT });
  const id = decodeURIComponent(path(alice).split('/')[2]);
  log(`request ${id} created`);
  record({ request_id: id });
  await checkTitle(alice);
  await alice.locator('#state[data-state="pending"]').waitFor();
  assert.equal((await alice.locator('#state').innerText()).trim(), 'pending', 'the text of #state');
  const heading = await alice.getByRole('heading', { level: 1 }).innerText();
  assert.ok(heading.includes(ROLE), `the h1 "${heading}" does not name the role`);
  await alice.getByText(PAYLOAD, { exact: true }).first().waitFor();
  await assertNoInjectedImage(alice, 'the request page');
  await aliceEvents;
  await markDocument(alice);
  await screenshot(alice, 'request-pending.png');
  return id;
}

async function approvalsShowIt({ bob }, id) {
  step('d. the request appears on bob\'s /approvals without a reload');
  const row = bob.locator(`tr[data-request-id="${id}"]`);
  await waitLive(bob, `tr[data-request-id="${id}"]`, 'the new request on bob\'s /approvals', clicked.request);
  const reason = row.getByText(PAYLOAD, { exact: true });
  assert.ok((await reason.count()) >= 1, `the row does not show the reason as text: ${await row.innerText()}`);
  const rowText = await row.innerText();
  for (const needed of ['alice', ROLE]) {
    assert.ok(rowText.includes(needed), `the row does not name ${needed}: ${rowText}`);
  }
  await assertNoInjectedImage(bob, '/approvals');
  assert.deepEqual(dialogs, [], 'a dialog opened');
  await screenshot(bob, 'approvals.png');
  return row;
}

// POST `path` from `context` (its cookies) with `form`; redirects not followed.
async function post(context, p, form) {
  const response = await context.request.post(url(p), { form, maxRedirects: 0, failOnStatusCode: false });
  return response.status();
}

async function forgedApprovalsAreRefused({ bobContext, bob }, id) {
  step('g1. CSRF: an approval without the csrf field, or with a wrong one, is refused with 403');
  assert.equal(await post(bobContext, `/requests/${id}/approve`, { comment: 'forged' }), 403, 'approve without csrf');
  assert.equal(
    await post(bobContext, `/requests/${id}/approve`, { comment: 'forged', csrf: 'wrong' }),
    403,
    'approve with a wrong csrf',
  );
  await bob.goto(url(`/requests/${id}`));
  assert.equal(await bob.locator('#state').getAttribute('data-state'), 'pending', 'after the forged approvals');
}

async function approve(world, id) {
  const { bob, alice, row } = world;
  step('e. bob approves; alice\'s open page turns active without a reload');
  await bob.goto(url('/approvals'));
  await row.locator(`a[href$="/requests/${id}"]`).first().click();
  await bob.waitForURL((u) => u.pathname === `/requests/${id}`);
  await checkTitle(bob);
  await forgedApprovalsAreRefused(world, id);
  await bob.getByLabel('Comment', { exact: true }).fill('ok, for the incident');
  const approvedAt = Date.now();
  await bob.getByRole('button', { name: 'Approve', exact: true }).click();
  await bob.locator('#state[data-state="approved"], #state[data-state="active"]').waitFor({ timeout: 2 * TIMEOUT });
  log(`bob's page: ${await bob.locator('#state').getAttribute('data-state')}`);
  await waitLive(alice, '#state[data-state="active"]', 'the approval on alice\'s request page', approvedAt);
  assert.equal((await alice.locator('#state').innerText()).trim(), 'active', 'the text of #state');
  const timeLeft = alice.locator('#time-left');
  await timeLeft.waitFor();
  const first = (await timeLeft.innerText()).trim();
  assert.match(first, /\d/, `#time-left shows no time: "${first}"`);
  await alice.waitForTimeout(1500);
  const second = (await timeLeft.innerText()).trim();
  log(`#time-left: "${first}", 1.5 s later "${second}"`);
}

async function revealCredential({ alice, aliceContext }, id) {
  step('e2. alice reveals the credential (Cache-Control: no-store)');
  await alice.getByRole('button', { name: 'Release', exact: true }).waitFor();
  const credentialResponse = alice.waitForResponse(
    (response) => new URL(response.url()).pathname === `/requests/${id}/credential`,
  );
  await alice.getByRole('button', { name: 'Reveal credential', exact: true }).click();
  const response = await credentialResponse;
  assert.equal(response.status(), 200, 'GET /requests/ID/credential');
  assert.match(response.headers()['cache-control'] ?? '', /no-store/, 'the credential\'s Cache-Control');
  const credential = alice.locator('#credential');
  await credential.waitFor();
  await alice.waitForFunction(() => document.querySelector('#credential')?.textContent.trim().length > 0, null, {
    timeout: TIMEOUT,
  });
  await alice.getByRole('button', { name: 'Copy', exact: true }).waitFor();
  log(`credential shown (${(await credential.innerText()).trim().length} characters)`);
  await screenshot(alice, 'grant-active.png');
  // Reveal may load another document; what follows watches this one.
  await markDocument(alice);

  step('g2. CSRF: a release without the csrf field, or with a wrong one, is refused with 403');
  assert.equal(await post(aliceContext, `/requests/${id}/release`, {}), 403, 'release without csrf');
  assert.equal(await post(aliceContext, `/requests/${id}/release`, { csrf: 'wrong' }), 403, 'release with a wrong csrf');
  assert.equal(await post(aliceContext, '/auth/logout', {}), 403, 'sign-out without csrf');
  await alice.waitForTimeout(500);
  assert.equal(await alice.locator('#state').getAttribute('data-state'), 'active', 'after the forged releases');
}

async function revoke({ bob, alice }, id) {
  step('f. bob revokes; alice\'s open page shows it without a reload');
  await bob.goto(url(`/requests/${id}`));
  await bob.getByLabel('Revoke reason', { exact: true }).fill('done with the test');
  const revokedAt = Date.now();
  await bob.getByRole('button', { name: 'Revoke', exact: true }).click();
  const ended = '#state[data-state="ended"], #state[data-state="revoked"]';
  await waitLive(alice, ended, 'the revocation on alice\'s request page', revokedAt);
  log(`alice's page: ${await alice.locator('#state').getAttribute('data-state')}`);
  await screenshot(alice, 'grant-revoked.png');
}

// GET `p` in a new page of `context`; expects a 403 page saying "not allowed".
async function forbidden(context, label, p) {
  const page = await newPage(context, `${label} ${p}`);
  const response = await page.goto(url(p));
  assert.equal(response.status(), 403, `${label} GET ${p}`);
  const text = await page.locator('body').innerText();
  assert.match(text, /not allowed/i, `${label}'s 403 page for ${p} says: ${text.slice(0, 500)}`);
  await page.close();
  pages.delete(`${label} ${p}`);
  log(`${label}: ${p} is 403`);
}

async function whoSeesWhat(browser, { aliceContext, bobContext }) {
  step('h. neither alice nor bob may see /audit or /admin');
  for (const [label, context] of [['alice', aliceContext], ['bob', bobContext]]) {
    await forbidden(context, label, '/audit');
    await forbidden(context, label, '/admin');
  }

  step('i. the configuration page');
  const config = await newPage(aliceContext, 'alice /config');
  const response = await config.goto(url('/config'));
  assert.equal(response.status(), 200, 'alice GET /config');
  await checkTitle(config);
  const text = await config.locator('body').innerText();
  assert.ok(text.includes(ROLE), `/config does not show role ${ROLE}`);
  assert.match(text, /managed as code/i, '/config should say "Managed as code"');
  await screenshot(config, 'config.png');

  if (!AUDITOR) {
    log('AUDITOR_USER is empty: skipping the audit page');
    return;
  }
  step(`i2. ${AUDITOR} (an auditor) sees /audit and verifies the chain`);
  const carolContext = await newContext(browser);
  const carol = await newPage(carolContext, AUDITOR);
  await signIn(carol, AUDITOR, '/audit');
  await checkTitle(carol);
  await assertNoInjectedImage(carol, '/audit');
  await carol.getByRole('link', { name: 'Export', exact: true }).waitFor();
  await screenshot(carol, 'audit.png');
  await carol.getByRole('button', { name: 'Verify chain', exact: true }).click();
  await carol.waitForFunction(
    () => /\bok\b|\bverified\b/i.test(document.querySelector('#verify-result')?.textContent ?? ''),
    null,
    { timeout: 2 * TIMEOUT },
  );
  const verdict = (await carol.locator('#verify-result').innerText()).trim();
  assert.doesNotMatch(verdict, /fail|broken|mismatch|not verified|error/i, `#verify-result: ${verdict}`);
  log(`#verify-result: ${verdict}`);
  await forbidden(carolContext, AUDITOR, '/admin');
  // The Rust test locks carol afterwards: her session must end with it.
  record({ auditor_cookie: (await sessionCookie(carolContext))?.value ?? '' });
  await carolContext.close();
}

// l. `hallpass login`: alice, signed in, allows each CLI sign-in the Rust
// test started (CLI_LOGIN_URLS, space-separated); the browser then lands on
// that CLI's loopback listener with the one-time code.
async function cliLogins({ alice }) {
  const urls = (process.env.CLI_LOGIN_URLS ?? '').split(/\s+/).filter(Boolean);
  for (const [index, address] of urls.entries()) {
    step(`l${index + 1}. alice allows a CLI sign-in`);
    const port = new URL(address).searchParams.get('port');
    const page = await alice.goto(address);
    assert.equal(page.status(), 200, `GET ${address}`);
    await alice.getByRole('heading', { name: 'Sign in the Hallpass CLI' }).waitFor();
    await checkTitle(alice);
    await alice.getByRole('button', { name: 'Allow', exact: true }).click();
    await alice.waitForURL((u) => u.host === `127.0.0.1:${port}` && u.pathname === '/callback', { timeout: 2 * TIMEOUT });
    log(`the browser reached the CLI's listener on port ${port}`);
  }
}

async function phoneWidth({ bobContext }, id) {
  step('k. phone width (390x844): no horizontal scrolling');
  const phone = await newPage(bobContext, 'bob phone');
  await phone.setViewportSize({ width: 390, height: 844 });
  for (const [p, shot] of [['/approvals', 'phone-approvals.png'], [`/requests/${id}`, 'phone-request.png'], ['/request', null], ['/', null]]) {
    await phone.goto(url(p));
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `${p} is ${width}px wide at a 390px viewport: it scrolls sideways`);
    log(`${p}: ${width}px wide`);
    if (shot) await screenshot(phone, shot);
  }
}

async function signOut({ alice, aliceContext }) {
  step('j. alice signs out; her old session cookie no longer works');
  const cookie = await sessionCookie(aliceContext);
  assert.ok(cookie, `no ${SESSION_COOKIE} cookie before signing out`);
  await alice.goto(url('/'));
  await alice.getByRole('button', { name: 'Sign out', exact: true }).click();
  await alice.waitForURL((u) => u.pathname === '/login');
  log('alice: on /login after "Sign out"');
  const replay = await request.newContext({
    extraHTTPHeaders: { cookie: `${SESSION_COOKIE}=${cookie.value}` },
  });
  try {
    const response = await replay.get(url('/'), { maxRedirects: 0, failOnStatusCode: false });
    const status = response.status();
    const location = response.headers().location ?? '';
    const toLogin = [302, 303, 307].includes(status) && new URL(location, BASE).pathname === '/login';
    assert.ok(toLogin || status === 401, `GET / with the old cookie answered ${status} ${location}: still signed in`);
    log(`GET / with the old cookie: ${status} ${location}`);
  } finally {
    await replay.dispose();
  }
}

async function dumpPages() {
  for (const [label, page] of pages) {
    if (page.isClosed()) continue;
    try {
      const text = (await page.locator('body').innerText({ timeout: 1000 })).slice(0, 3000);
      console.error(`\n--- page "${label}" at ${page.url()} (title "${await page.title()}"):\n${text}\n---`);
      const file = `failure-${label.replace(/[^a-z0-9]+/gi, '-')}.png`;
      await page.screenshot({ path: join(SHOTS, file), fullPage: true, timeout: 3000 });
      console.error(`(screenshot ${join(SHOTS, file)})`);
    } catch (error) {
      console.error(`--- page "${label}": could not be read: ${error.message}`);
    }
  }
}

async function main() {
  log(`Hallpass at ${BASE}; screenshots in ${SHOTS}`);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
    headless: true,
  });
  const deadline = setTimeout(async () => {
    console.error(`scenario: FAILED: still running after ${DEADLINE_MS} ms, in step "${stepName}"`);
    await dumpPages();
    process.exit(1);
  }, DEADLINE_MS);
  try {
    const world = await signInBoth(browser);
    const id = await requestAccess(world);
    world.row = await approvalsShowIt(world, id);
    await approve(world, id);
    await revealCredential(world, id);
    await revoke(world, id);
    await whoSeesWhat(browser, world);
    await phoneWidth(world, id);
    await cliLogins(world);
    // The Rust test changes bob's groups at the IdP afterwards.
    record({ approver_cookie: (await sessionCookie(world.bobContext))?.value ?? '' });
    await signOut(world);
    assert.deepEqual(dialogs, [], 'a dialog opened');
    log('all steps passed');
  } catch (error) {
    console.error(`\nscenario: FAILED in step "${stepName}": ${error.message}`);
    if (error.stack) console.error(error.stack);
    await dumpPages();
    process.exitCode = 1;
  } finally {
    clearTimeout(deadline);
    await browser.close();
  }
}

await main();
