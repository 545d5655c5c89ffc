// Browser test of the operator's administration pages (issue #19): Active Sessions with Watch
// (and a port forward listed with its kind and target) and the watched terminal's "is watching" notice, the Roles page, grants chosen from lists,
// approval policies, the header's count of pending access requests, the confirmations before
// reject, remove, disable, delete and deny, the header offering only usable pages, the skip link,
// keyboard-only navigation, and axe-core (no serious or critical violation) on every page.
// Started by crates/tether-e2e/tests/web_admin.rs (tether_e2e::browser::run_web_script) with:
//   TETHER_URL, TETHER_SCREENSHOTS, TETHER_USER / TETHER_PASSWORD (an administrator),
//   TETHER_OPERATOR / TETHER_OPERATOR_PASSWORD (the operator role on every device),
//   TETHER_DEVICE (an accepted, online device), TETHER_PENDING_DEVICE (a pending one) and
//   TETHER_FORWARD_TARGET (the HOST:PORT of a port forward to TETHER_DEVICE, running meanwhile).
// Exits 0 when every step and check passed; a failed check is reported and the run goes on.

import { mkdirSync } from 'node:fs';
import { createRun, env, launchBrowser, saveShots } from './script.mjs';
import { LIMIT, waitScreen } from './helpers.mjs';
import { assertAccessible, assertKeyboardReachable } from './a11y.mjs';

const url = env('TETHER_URL');
const device = env('TETHER_DEVICE');
const screenshots = env('TETHER_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });
const API = '/api/management/v1';

const run = createRun('admin.e2e');
const { log, begin, check, failedChecks } = run;

const browser = await launchBrowser();

/** A logged-in page of its own browser context (its own cookie). */
async function loggedIn(name, password) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => log(`${name}: page error: ${error.message}`));
  await page.goto(url);
  await page.waitForSelector('#username', { timeout: LIMIT });
  await page.fill('#username', name);
  await page.fill('#password', password);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('#devices', { timeout: LIMIT });
  return page;
}

/** Screenshots of `page` at both sizes (script.mjs). */
const shots = (page, name) => saveShots(page, screenshots, name, check);

/** axe-core and Tab navigation on the page as it is. */
async function accessible(page, what) {
  await check(`axe finds nothing serious on ${what}`, () => assertAccessible(page, what));
  await check(`the keyboard reaches every control of ${what}`, () => assertKeyboardReachable(page, what));
}

/** Visits `route` and waits for `selector`. */
async function visit(page, route, selector) {
  await page.goto(`${url}/#/${route}`);
  await page.waitForSelector(selector, { timeout: LIMIT });
  await page.waitForTimeout(300);
}

/** Answers the next window.confirm with `accept`, after `action`; returns what it asked. */
async function confirming(page, accept, action) {
  let asked = null;
  const answer = (dialog) => { asked = dialog.message(); (accept ? dialog.accept() : dialog.dismiss()); };
  page.once('dialog', answer);
  await action();
  await page.waitForTimeout(500);
  page.off('dialog', answer);
  if (asked === null) throw new Error('no confirmation was asked');
  return asked;
}

/** A JSON request from the page with its session's CSRF token. */
const api = (page, method, path, body) => page.evaluate(async ([method, path, body]) => {
  const session = await (await fetch('/api/management/v1/auth/web/session')).json();
  const response = await fetch(`/api/management/v1/${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: response.status === 204 ? null : await response.json() };
}, [method, path, body]);

const badgeCount = (page) => page.evaluate(() => {
  const badge = document.getElementById('pending-badge');
  return badge.hidden ? 0 : Number(badge.dataset.count);
});

try {
  begin('the login page: skip link first, axe');
  const anonymous = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
  await anonymous.goto(url);
  await anonymous.waitForSelector('#username', { timeout: LIMIT });
  await check('axe finds nothing serious on the login page', () => assertAccessible(anonymous, 'the login page'));

  begin('log in as the administrator and the operator');
  const admin = await loggedIn(env('TETHER_USER'), env('TETHER_PASSWORD'));
  const operator = await loggedIn(env('TETHER_OPERATOR'), env('TETHER_OPERATOR_PASSWORD'));
  const { body: { devices } } = await api(admin, 'GET', `devices?name=${encodeURIComponent(device)}`);
  const deviceId = devices[0].id;
  // A group for the grant and policy lists.
  await api(admin, 'PUT', `devices/${deviceId}/tags`, { tags: ['site-a'] });

  await check('the skip link is the first focusable element and moves the focus to the page', async () => {
    await admin.reload();
    await admin.waitForSelector('#devices', { timeout: LIMIT });
    await admin.keyboard.press('Tab');
    const first = await admin.evaluate(() => document.activeElement.id);
    if (first !== 'skip-link') throw new Error(`the first Tab focuses #${first}`);
    if (!(await admin.isVisible('#skip-link'))) throw new Error('the focused skip link is not shown');
    await admin.keyboard.press('Enter');
    const now = await admin.evaluate(() => document.activeElement.id);
    if (now !== 'app') throw new Error(`after the skip link the focus is on #${now}`);
    if (!admin.url().endsWith('#/devices')) throw new Error(`the skip link changed the route to ${admin.url()}`);
  });

  await check('the header offers an administrator every page, an operator only theirs', async () => {
    for (const link of ['users-link', 'roles-link']) {
      if (!(await admin.isVisible(`#${link}`))) throw new Error(`the administrator has no #${link}`);
      if (await operator.isVisible(`#${link}`)) throw new Error(`the operator is offered #${link}`);
    }
    for (const route of ['audit', 'recordings']) {
      if (!(await admin.isVisible(`header nav a[href="#/${route}"]`))) throw new Error(`the administrator has no ${route} link`);
      if (await operator.isVisible(`header nav a[href="#/${route}"]`)) throw new Error(`the operator is offered ${route}`);
    }
    if (!(await operator.isVisible('header nav a[href="#/sessions"]'))) throw new Error('the operator has no Sessions link');
  });

  begin('the operator runs a terminal; the sessions page lists it with Watch');
  await operator.goto(`${url}/#/device/${deviceId}`);
  await operator.click('#connect', { timeout: LIMIT });
  await operator.waitForSelector('#terminal-status[data-state=connected]', { timeout: LIMIT });
  await operator.click('#terminal');
  await operator.keyboard.type('echo watched-$((20+22))');
  await operator.keyboard.press('Enter');
  await waitScreen('#terminal', /^watched-42$/m, 'the operator terminal', operator);
  await visit(admin, 'sessions', '#sessions');
  const operatorName = env('TETHER_OPERATOR');
  const row = `#sessions tr[data-user="${operatorName}"][data-device="${device}"][data-kind="terminal"]`;
  await admin.waitForSelector(`${row} a:text("Watch")`, { timeout: LIMIT });
  const sid = await admin.getAttribute(row, 'data-sid');
  await check('the sessions page lists the port forward with its kind and target, without Watch', async () => {
    const forward = `#sessions tr[data-kind="port_forward"][data-device="${device}"]`;
    const target = env('TETHER_FORWARD_TARGET');
    await admin.waitForFunction(([selector, expected]) => {
      const cell = document.querySelector(`${selector} td.session-kind`);
      return cell && cell.textContent === `port forward TCP ${expected}`;
    }, [forward, target], { timeout: LIMIT });
    if (await admin.isVisible(`${forward} a:text("Watch")`)) throw new Error('a port forward is offered Watch');
    const since = await admin.textContent(`${forward} td:nth-child(3)`);
    if (!/ago|now/.test(since)) throw new Error(`the Since cell says ${since}`);
  });
  await shots(admin, 'sessions');
  await accessible(admin, 'the sessions page');

  begin('watching tells the operator, and leaving takes the notice away');
  await admin.click(`${row} a:text("Watch")`);
  await admin.waitForFunction(() => /Watching/.test(document.querySelector('#watch-status')?.textContent || ''), null, { timeout: LIMIT });
  await check('the watched terminal says who watches', async () => {
    await operator.waitForFunction((name) => {
      const notice = document.querySelector('.watchers-notice');
      return notice && !notice.hidden && notice.textContent.includes(`${name} is watching`);
    }, env('TETHER_USER'), { timeout: LIMIT });
  });
  await shots(operator, 'watched-terminal');
  await accessible(admin, 'the live watch page');
  await visit(admin, 'sessions', '#sessions');
  await check('the notice goes away when the watcher leaves', async () => {
    await operator.waitForFunction(() => {
      const notice = document.querySelector('.watchers-notice');
      return notice && notice.hidden;
    }, null, { timeout: LIMIT });
  });
  await check('the operator sees their own session, without Watch (no recordings permission)', async () => {
    const own = await operator.context().newPage();
    await visit(own, 'sessions', `#sessions tr[data-sid="${sid}"]`);
    if (await own.isVisible(`#sessions tr[data-sid="${sid}"] a:text("Watch")`)) throw new Error('the operator is offered Watch');
    await accessible(own, 'the operator’s sessions page');
    await own.close();
  });

  begin('the roles page: built-in and custom roles, create and delete (confirmed)');
  await visit(admin, 'roles', '#roles tr[data-role="operator"]');
  await check('the built-in roles are listed with their permissions', async () => {
    const operatorRole = await admin.textContent('#roles tr[data-role="operator"]');
    if (!/built-in/.test(operatorRole) || !/terminal/.test(operatorRole)) throw new Error(`operator row: ${operatorRole}`);
  });
  await admin.fill('#role-name', 'deployer');
  await admin.fill('#role-description', 'ships files');
  await admin.check('#role-permissions input[data-permission="file_write"]');
  await admin.check('#role-permissions input[data-permission="view_devices"]');
  await admin.click('#role-form button[type=submit]');
  await admin.waitForSelector('#roles tr[data-role="deployer"]', { timeout: LIMIT });
  await shots(admin, 'roles');
  await accessible(admin, 'the roles page');
  await check('cancelling the deletion keeps the role, confirming deletes it', async () => {
    await confirming(admin, false, () => admin.click('#roles tr[data-role="deployer"] button:text("Delete")'));
    if (!(await admin.isVisible('#roles tr[data-role="deployer"]'))) throw new Error('the role went though the deletion was cancelled');
    await confirming(admin, true, () => admin.click('#roles tr[data-role="deployer"] button:text("Delete")'));
    await admin.waitForSelector('#roles tr[data-role="deployer"]', { state: 'detached', timeout: LIMIT });
  });

  begin('users: a grant chosen from lists; disabling asks first');
  await visit(admin, 'users', '#users');
  await admin.fill('#user-name', 'dave');
  await admin.fill('#user-password', 'dave-correct-horse-battery');
  await admin.selectOption('#user-role', '');
  await admin.click('button:text("Create user")');
  const dave = '#users tr[data-user="dave"]';
  await admin.waitForSelector(dave, { timeout: LIMIT });
  await check('a grant chosen from the role and scope lists is saved', async () => {
    await admin.waitForSelector(`${dave} select.grant-scope option[value="tag:site-a"]`, { state: 'attached', timeout: LIMIT });
    await admin.selectOption(`${dave} select.grant-role`, 'auditor');
    await admin.selectOption(`${dave} select.grant-scope`, 'tag:site-a');
    await admin.click(`${dave} button:text("Add grant")`);
    await admin.waitForFunction(() => /saved/.test(document.querySelector('#users-message')?.textContent || ''), null, { timeout: LIMIT });
    const { body } = await api(admin, 'GET', 'users/dave/roles');
    const grants = body.grants.map((grant) => `${grant.role}@${grant.scope}`).join(', ');
    if (grants !== 'auditor@tag:site-a') throw new Error(`dave's grants are ${grants}`);
  });
  await check('the device list offers the device by name', async () => {
    const label = await admin.textContent(`${dave} select.grant-scope option[value="${deviceId}"]`);
    if (!label.includes(device)) throw new Error(`the device's option reads ${label}`);
  });
  await check('cancelling the disable keeps the user, confirming disables', async () => {
    await confirming(admin, false, () => admin.click(`${dave} button:text("Disable")`));
    if (/disabled/.test(await admin.textContent(dave))) throw new Error('dave was disabled though it was cancelled');
    await confirming(admin, true, () => admin.click(`${dave} button:text("Disable")`));
    await admin.waitForFunction((selector) => /disabled/.test(document.querySelector(selector)?.textContent || ''), dave, { timeout: LIMIT });
  });
  await shots(admin, 'users-admin');
  await accessible(admin, 'the users page');

  begin('the pending-requests badge counts, and deny asks first');
  await visit(admin, 'devices', '#devices');
  const before = await badgeCount(admin);
  const created = await api(operator, 'POST', 'access/requests', { scope: 'tag:site-a', permissions: ['terminal'], duration_secs: 3600, reason: 'badge test' });
  if (created.status !== 201 && created.status !== 200) throw new Error(`access request: ${JSON.stringify(created)}`);
  await check('the badge counts the new request by itself', async () => {
    await admin.waitForFunction((count) => {
      const badge = document.getElementById('pending-badge');
      return !badge.hidden && Number(badge.dataset.count) === count;
    }, before + 1, { timeout: 45000 });
  });
  if (await operator.isVisible('#pending-badge')) failedChecks.push('the operator, no approver, sees the badge');
  await visit(admin, 'access', '#access-all');
  const pending = `#access-all tr[data-request="${created.body.id}"]`;
  await admin.waitForSelector(pending, { timeout: LIMIT });
  await check('cancelling the deny keeps the request, confirming denies it and the badge drops', async () => {
    await confirming(admin, false, () => admin.click(`${pending} button:text("Deny")`));
    if (!(await admin.isVisible(`${pending} [data-status=pending]`))) throw new Error('the request changed though the deny was cancelled');
    await confirming(admin, true, () => admin.click(`${pending} button:text("Deny")`));
    await admin.waitForSelector(`${pending} [data-status=denied]`, { timeout: LIMIT });
    await admin.waitForFunction((count) => Number(document.getElementById('pending-badge').dataset.count || 0) === count, before, { timeout: LIMIT });
  });

  begin('approval policies edited on the Access page');
  await check('a policy is added from the list and removed', async () => {
    await admin.waitForSelector('#policy-scope option[value="tag:site-a"]', { state: 'attached', timeout: LIMIT });
    await admin.selectOption('#policy-scope', 'tag:site-a');
    await admin.click('#access-policies button:text("Require approval")');
    await admin.waitForSelector('#policies li[data-scope="tag:site-a"]', { timeout: LIMIT });
    const { body } = await api(admin, 'GET', 'access/policies');
    if (!body.require_approval.includes('tag:site-a')) throw new Error(`policies: ${body.require_approval}`);
    await shots(admin, 'access-admin');
    await accessible(admin, 'the access page');
    await admin.click('#policies li[data-scope="tag:site-a"] button');
    await admin.waitForSelector('#policies li[data-scope="tag:site-a"]', { state: 'detached', timeout: LIMIT });
  });

  begin('rejecting a device asks first');
  await visit(admin, 'devices', '#devices');
  const pendingDevice = env('TETHER_PENDING_DEVICE');
  await check('cancelling the reject keeps the device pending, confirming rejects it', async () => {
    const button = `button[data-reject="${pendingDevice}"]`;
    await admin.waitForSelector(button, { timeout: LIMIT });
    await confirming(admin, false, () => admin.click(button));
    const status = () => admin.evaluate((name) => document.querySelector(`#devices tr[data-device="${name}"]`)?.children[2].textContent, pendingDevice);
    if ((await status()) !== 'pending') throw new Error(`the device is ${await status()} though the reject was cancelled`);
    await confirming(admin, true, () => admin.click(button));
    await admin.waitForFunction((name) => document.querySelector(`#devices tr[data-device="${name}"]`)?.children[2].textContent === 'rejected', pendingDevice, { timeout: LIMIT });
  });

  begin('axe and the keyboard on every other page');
  const routes = [
    ['devices', '#devices'], [`device/${deviceId}`, '#connect'], ['audit', '#audit'], ['recordings', 'main h1'],
    [`play/${sid}`, 'main h1'], ['account', 'main h1'], ['access', '#access-mine'],
  ];
  for (const [route, selector] of routes) {
    await visit(admin, route, selector);
    await accessible(admin, `#/${route}`);
  }
  // Leaving the running shell asks first: yes.
  operator.on('dialog', (dialog) => dialog.accept());
  for (const [route, selector] of [['devices', '#devices'], ['access', '#access-mine'], ['account', 'main h1']]) {
    await visit(operator, route, selector);
    await accessible(operator, `the operator's #/${route}`);
  }

  begin('removing a device asks first');
  await visit(admin, `device/${deviceId}`, '#remove-device');
  await check('cancelling the removal keeps the device, confirming removes it', async () => {
    await confirming(admin, false, () => admin.click('#remove-device'));
    const kept = await api(admin, 'GET', `devices?id_prefix=${deviceId}`);
    if (!kept.body.devices.some((listed) => listed.id === deviceId)) throw new Error('the device went though the removal was cancelled');
    await confirming(admin, true, () => admin.click('#remove-device'));
    await admin.waitForFunction(() => location.hash === '#/devices', null, { timeout: LIMIT });
    const gone = await api(admin, 'GET', `devices?id_prefix=${deviceId}`);
    if (gone.body.devices.some((listed) => listed.id === deviceId)) throw new Error('the device is still listed after the removal');
  });
} catch (error) {
  console.error(`[admin.e2e] FAILED at step "${run.step}": ${error.stack || error.message}`);
  await browser.close();
  process.exit(1);
}

await browser.close();
if (failedChecks.length) {
  console.error(`[admin.e2e] ${failedChecks.length} check(s) failed: ${failedChecks.join('; ')}`);
  process.exit(1);
}
log('all steps and checks passed');
