// Acceptance test of the web UI in real headless Chromium (playwright-core, the Debian
// browser; nothing is downloaded). Started by crates/tether-e2e/tests/web_ui.rs, which runs a
// real hub and agent and passes them in the environment:
//   TETHER_URL, TETHER_USER, TETHER_PASSWORD, TETHER_DEVICE (name, pending at start),
//   TETHER_DEVICE_ROOT (a file-transfer root on the device), TETHER_DOWNLOAD (a file in it),
//   TETHER_DOWNLOAD_SHA256, TETHER_UPLOAD_TEXT, TETHER_SCREENSHOTS (directory),
//   TETHER_OFFLINE_DEVICE (an accepted device whose agent is stopped), TETHER_REJECT_DEVICE
//   (another pending device, to reject), TETHER_OPERATOR and TETHER_OPERATOR_PASSWORD (a user
//   with the operator role, who enrols 2FA and requests access), TETHER_CONTROL (a directory:
//   the script asks the test to SIGKILL and restart the hub by printing `[ui.e2e] control: WHAT`
//   and waits for TETHER_CONTROL/WHAT.done).
// Exits 0 when every step and check passed. A failed step stops the run; a failed check (one
// behaviour, e.g. an issue's bug) is reported and the run goes on, so one run shows them all.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { createRun, env, launchBrowser, saveShots } from './script.mjs';
import * as helpers from './helpers.mjs';

const url = env('TETHER_URL');
const device = env('TETHER_DEVICE');
const root = env('TETHER_DEVICE_ROOT');
const screenshots = env('TETHER_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });
rmSync(`${screenshots}/failure.png`, { force: true });
const { LIMIT, totp } = helpers;

const run = createRun('ui.e2e');
const { log, begin, check, failedChecks } = run;

/** Asks the Rust test to act on the hub (`kill-hub`, `restart-hub`) and waits until it has. */
async function control(what) {
  const done = `${env('TETHER_CONTROL')}/${what}.done`;
  console.log(`[ui.e2e] control: ${what}`);
  const deadline = Date.now() + 120000;
  while (!existsSync(done)) {
    if (Date.now() > deadline) throw new Error(`the test did not ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const browser = await launchBrowser();
const context = await browser.newContext({
  ignoreHTTPSErrors: true,
  acceptDownloads: true,
  viewport: { width: 1100, height: 700 },
});
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
const page = await context.newPage();
page.on('pageerror', (error) => log(`page error: ${error.message}`));
const consoleErrors = [];
page.on('console', (message) => { if (message.type() === 'error') consoleErrors.push(message.text()); });

const shot = (name, fullPage = false) => page.screenshot({ path: `${screenshots}/${name}.png`, type: 'png', fullPage });

/** Screenshots of the page at both sizes (script.mjs), checking the 400 px width. */
const shots = (name, on = page) => saveShots(on, screenshots, name, check);

const bufferLines = (selector, on = page) => helpers.bufferLines(selector, on);
const assertUnderscoresDrawn = (selector, on = page) => helpers.assertUnderscoresDrawn(selector, on);
const screen = (selector, on = page) => helpers.screen(selector, on);
const waitScreen = (selector, pattern, what, on = page, limit = LIMIT) => helpers.waitScreen(selector, pattern, what, on, limit);
const upgradeStatus = (path, origin, cookie) => helpers.upgradeStatus(url, path, origin, cookie);

async function logIn(name, password) {
  await page.fill('#username', name);
  await page.fill('#password', password);
  await page.click('form.login button[type=submit]');
}

async function typeLine(line) {
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}

try {
  begin('a wrong password shows an error');
  await page.goto(url);
  await page.waitForSelector('#username', { timeout: LIMIT });
  await shots('login');
  await page.fill('#username', env('TETHER_USER'));
  await page.fill('#password', 'not-the-password');
  await page.click('form.login button[type=submit]');
  await page.waitForFunction(() => /invalid username or password/.test(document.querySelector('#login-error')?.textContent || ''), null, { timeout: LIMIT });
  begin('log in');
  await page.fill('#password', env('TETHER_PASSWORD'));
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('#devices', { timeout: LIMIT });
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === '__Host-tether_session');
  if (!session || !session.httpOnly || !session.secure || session.sameSite !== 'Strict') {
    throw new Error(`the session cookie is not Secure, HttpOnly, SameSite=Strict: ${JSON.stringify(session)}`);
  }
  const policy = (await page.goto(url)).headers()['content-security-policy'] || '';
  if (!policy.includes("script-src 'self'") || /script-src[^;]*unsafe/.test(policy)) {
    throw new Error(`unexpected Content-Security-Policy: ${policy}`);
  }
  await page.waitForSelector('#devices', { timeout: LIMIT });
  begin('accept the pending device');
  await page.click(`button[data-accept="${device}"]`, { timeout: LIMIT });
  await page.waitForSelector(`tr[data-device="${device}"] a[data-open]`, { timeout: LIMIT });
  begin('reject another pending device');
  const unwanted = env('TETHER_REJECT_DEVICE');
  page.once('dialog', (dialog) => dialog.accept()); await page.click(`button[data-reject="${unwanted}"]`, { timeout: LIMIT });
  await page.waitForFunction((name) => {
    const row = document.querySelector(`#devices tr[data-device="${name}"]`);
    return row && row.children[2].textContent === 'rejected' && !row.querySelector('button');
  }, unwanted, { timeout: LIMIT });
  await page.fill('#device-search', device);
  await page.waitForFunction((name) => {
    const rows = document.querySelectorAll('#devices tbody tr[data-device]');
    return rows.length === 1 && rows[0].dataset.device === name && rows[0].children[3].textContent === 'online now';
  }, device, { timeout: LIMIT });
  await page.fill('#device-search', '');
  await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr[data-device]').length >= 3, null, { timeout: LIMIT });
  await shots('devices');
  await page.fill('#device-search', device);
  await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr[data-device]').length === 1, null, { timeout: LIMIT });
  begin('open its terminal and run echo hello-$RANDOM');
  await page.click(`tr[data-device="${device}"] a[data-open]`);
  await page.click('#connect', { timeout: LIMIT });
  await page.waitForSelector('#terminal-status[data-state=connected]', { timeout: LIMIT });
  await page.click('#terminal');
  await typeLine('echo hello-$RANDOM');
  const hello = (await waitScreen('#terminal', /^(hello-\d+)$/m, 'echo'))[1];
  log(`saw ${hello}`);
  await typeLine('echo a_b_c');
  await waitScreen('#terminal', /^a_b_c$/m, 'a_b_c');
  await check('underscores are drawn in the terminal', () => assertUnderscoresDrawn('#terminal'));
  begin('leaving a running shell asks first (header link, closing the page)');
  await check('a header link asks before ending the shell, and staying keeps it', async () => {
    const here = page.url();
    let asked = '';
    const answer = (dialog) => { asked = dialog.message(); dialog.dismiss(); };
    page.once('dialog', answer);
    await page.click('header nav a[href="#/audit"]');
    await page.waitForTimeout(500);
    page.off('dialog', answer);
    if (!/still running/.test(asked)) throw new Error(`no confirmation before leaving (asked: ${JSON.stringify(asked)})`);
    if (page.url() !== here) throw new Error(`the page left for ${page.url()} though the user stayed`);
    if (!(await page.isVisible('#terminal-status[data-state=connected]'))) throw new Error('the shell did not survive staying');
  });
  if (!(await page.isVisible('#terminal-status[data-state=connected]'))) {
    // The shell was lost (the check above failed): a new one for the steps that follow.
    await page.goBack();
    await page.click('#connect', { timeout: LIMIT });
    await page.waitForSelector('#terminal-status[data-state=connected]', { timeout: LIMIT });
  }
  await check('closing or reloading the page asks first (beforeunload)', async () => {
    const prevented = await page.evaluate(() => {
      const event = new Event('beforeunload', { cancelable: true });
      window.dispatchEvent(event);
      return event.defaultPrevented;
    });
    if (!prevented) throw new Error('beforeunload lets the page go without asking');
  });
  await page.click('#terminal');
  begin('resizing the window changes stty size');
  await typeLine('clear; stty size');
  const before = (await waitScreen('#terminal', /^(\d+ \d+)$/m, 'stty size'))[1];
  await page.setViewportSize({ width: 800, height: 560 });
  let after = before;
  const deadline = Date.now() + LIMIT;
  while (after === before && Date.now() < deadline) {
    await typeLine('clear; stty size');
    await page.waitForTimeout(300);
    after = (await waitScreen('#terminal', /^(\d+ \d+)$/m, 'stty size after resize'))[1];
  }
  if (after === before) throw new Error(`stty size stayed ${before} after the window was resized`);
  log(`stty size ${before} -> ${after}`);
  begin('run vim and quit it');
  await typeLine('clear; vim -u NONE /tmp/tether-web-vim-test');
  await waitScreen('#terminal', /^~\s*$/m, 'vim start');
  await page.keyboard.type(':q!');
  await page.keyboard.press('Enter');
  // Keys typed while vim is still leaving go to vim (or are flushed): retype until the shell
  // answers.
  for (let attempt = 1; ; attempt += 1) {
    await typeLine('echo vim-left-$((40+2))');
    try {
      await waitScreen('#terminal', /^vim-left-42$/m, 'after vim', page, 5000);
      break;
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
  await shot('terminal');
  begin('a second shell is refused by the device limit, with a clear message');
  const second = await context.newPage();
  await second.goto(page.url());
  await second.click('#connect', { timeout: LIMIT });
  await second.waitForSelector('#terminal-status[data-state=failed]', { timeout: LIMIT });
  const refusal = await second.textContent('#terminal-status');
  if (!/refused the shell/.test(refusal)) throw new Error(`unexpected refusal message: ${refusal}`);
  log(refusal);
  await second.close();
  begin('watch the running session live, read-only');
  const watcher = await context.newPage();
  await watcher.setViewportSize({ width: 900, height: 600 });
  await watcher.goto(`${url}/#/recordings`);
  await (await watcher.waitForSelector('#recordings a[data-watch]', { timeout: LIMIT })).click();
  await watcher.waitForSelector('#watch .xterm-rows', { timeout: LIMIT });
  await watcher.waitForSelector('#watch-status:text("Watching")', { timeout: LIMIT });
  await page.click('#terminal');
  await typeLine('echo watched-$((6*7))');
  await waitScreen('#watch', /^watched-42$/m, 'live view', watcher);
  await typeLine('echo a_b_c');
  await waitScreen('#watch', /^a_b_c$/m, 'a_b_c in the live view', watcher);
  await check('underscores are drawn in the live view', () => assertUnderscoresDrawn('#watch', watcher));
  await shots('watch', watcher);
  await watcher.close();

  begin('upload a file by picking it');
  await page.fill('#upload-dir', root);
  await page.setInputFiles('#upload-file', { name: 'web-upload.txt', mimeType: 'text/plain', buffer: Buffer.from(env('TETHER_UPLOAD_TEXT')) });
  await page.waitForSelector('#upload-status[data-done]', { timeout: LIMIT });
  await page.click('#terminal');
  await typeLine(`clear; echo a_b_c; cat ${root}/web-upload.txt; echo`);
  await waitScreen('#terminal', new RegExp(env('TETHER_UPLOAD_TEXT')), 'uploaded file on the device');

  begin('upload a file by dropping it');
  const dropped = await page.evaluateHandle((text) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([text], 'web-dropped.txt', { type: 'text/plain' }));
    return transfer;
  }, `dropped-${env('TETHER_UPLOAD_TEXT')}`);
  await page.evaluate(() => { delete document.querySelector('#upload-status').dataset.done; });
  await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: dropped });
  await page.waitForSelector('#upload-status[data-done]', { timeout: LIMIT });

  begin('paste into the terminal (Ctrl+Shift+V)');
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((3*5))'));
  await page.click('#terminal');
  await page.keyboard.press('Control+Shift+V');
  await page.keyboard.press('Enter');
  await waitScreen('#terminal', /^pasted-15$/m, 'pasted command');

  begin('download a device file and compare checksums');
  await page.fill('#download-path', env('TETHER_DOWNLOAD'));
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: LIMIT }), page.click('#download')]);
  const downloaded = await download.path();
  const sum = createHash('sha256').update(readFileSync(downloaded)).digest('hex');
  if (sum !== env('TETHER_DOWNLOAD_SHA256')) throw new Error(`downloaded sha256 ${sum}, expected ${env('TETHER_DOWNLOAD_SHA256')}`);
  await check('the download status says the download is complete', async () => {
    await page.waitForSelector('#download-status[data-done]', { timeout: 10000 }).catch(() => {});
    const said = await page.textContent('#download-status');
    if (!/^Downloaded from-device\.bin \(\d/.test(said)) throw new Error(`the status says: ${said}`);
  });
  begin('tag the device (administrator)');
  await page.fill('#device-tags-input', 'site-a, lab');
  await page.click('button:text("Save tags")');
  await page.waitForFunction(() => [...document.querySelectorAll('#device-tags .tag')].map((t) => t.textContent).join(',') === 'site-a,lab', null, { timeout: LIMIT });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shots('device');

  begin('disconnect and play the recorded session');
  await page.click('#disconnect');
  await page.waitForSelector('#terminal-status[data-state=ended]', { timeout: LIMIT });
  await page.goto(`${url}/#/recordings`);
  // The hub ends the recording once the device has stopped the shell: refresh until it has.
  for (let attempt = 1; !(await page.waitForSelector('#recordings a[data-play]', { timeout: 3000 }).catch(() => null)); attempt += 1) {
    if (attempt >= 10) throw new Error('the recording never became playable');
    await page.click('button:text("Refresh")');
  }
  const play = await page.waitForSelector('#recordings a[data-play]', { timeout: LIMIT });
  await play.click();
  // The recording ends on the uploaded file's text (the last command cleared the screen first).
  const uploaded = new RegExp(`^${env('TETHER_UPLOAD_TEXT')}$`, 'm');
  await waitScreen('#player', uploaded, 'playback to the end');
  await page.waitForSelector('#play:text("Play")', { timeout: LIMIT });
  begin('seek back to the start, then play again at 8x');
  await page.fill('#seek', '0');
  await page.dispatchEvent('#seek', 'input');
  if (uploaded.test(await screen('#player'))) throw new Error('seeking to the start left the last screen');
  await page.selectOption('#speed', '8');
  await page.click('#play');
  await waitScreen('#player', uploaded, 'playback after seeking');
  await check('underscores are drawn in the player', () => assertUnderscoresDrawn('#player'));
  await shots('player');
  await page.goto(`${url}/#/recordings`);
  await page.waitForSelector('#recordings a[data-play]', { timeout: LIMIT });
  await shots('recordings');

  begin('an audit event for the terminal');
  await page.goto(`${url}/#/audit`);
  await page.waitForSelector('#audit tr[data-action="terminal.open"]', { timeout: LIMIT });
  await shots('audit');
  const allIds = (await page.evaluate(() => fetch('/api/management/v1/devices').then((r) => r.json()))).devices.map((d) => d.id);
  const deviceId = (await page.evaluate((name) => fetch(`/api/management/v1/devices?name=${encodeURIComponent(name)}`).then((r) => r.json()), device)).devices[0].id;
  // Ids are UUIDv7: their first 12 hex digits are the enrolment millisecond, so devices enrolled
  // together share a long prefix. Type the shortest prefix that names this device alone.
  let prefixLength = 8;
  while (allIds.filter((id) => id.startsWith(deviceId.slice(0, prefixLength))).length > 1) prefixLength += 1;
  for (const [how, text] of [['name', device], ['id prefix', deviceId.slice(0, prefixLength)]]) {
    await check(`the audit log's device filter takes a device ${how}`, async () => {
      await page.fill('#audit-device', text);
      await page.dispatchEvent('#audit-device', 'change');
      await page.waitForFunction((id) => {
        const rows = [...document.querySelectorAll('#audit tbody tr')];
        return rows.length > 0 && rows.some((row) => row.dataset.action === 'terminal.open')
          && (document.querySelector('#audit-export-csv')?.href || '').includes(`device=${id}`);
      }, deviceId, { timeout: 10000 });
    });
  }
  await page.fill('#audit-device', '');
  await page.dispatchEvent('#audit-device', 'change');
  begin('filter the audit log and export it');
  await page.fill('#audit-action', 'file.upload');
  await page.dispatchEvent('#audit-action', 'change');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#audit tbody tr')];
    return rows.length > 0 && rows.every((row) => row.dataset.action === 'file.upload');
  }, null, { timeout: LIMIT });
  await page.fill('#audit-action', '');
  await page.dispatchEvent('#audit-action', 'change');
  const [exported] = await Promise.all([page.waitForEvent('download', { timeout: LIMIT }), page.click('#audit-export-csv')]);
  const csv = readFileSync(await exported.path(), 'utf8');
  if (!csv.startsWith('seq,id,time') || !csv.includes('terminal.open')) throw new Error(`unexpected audit export:\n${csv.slice(0, 500)}`);

  begin('a cross-origin WebSocket upgrade is refused');
  const cookie = `${session.name}=${session.value}`;
  const devices = await page.evaluate(() => fetch('/api/management/v1/devices').then((r) => r.json()));
  const id = devices.devices.find((d) => d.name === device).id;
  const path = `/api/management/v1/deviceconnect/devices/${id}/connect`;
  const crossOrigin = await upgradeStatus(path, 'https://evil.example', cookie);
  if (crossOrigin !== 403) throw new Error(`a cross-origin upgrade got ${crossOrigin}, expected 403`);
  const sameOrigin = await upgradeStatus(path, new URL(url).origin, cookie);
  if (sameOrigin !== 101) throw new Error(`a same-origin upgrade got ${sameOrigin}, expected 101`);

  begin('an offline device gets a clear message and a reconnect button');
  const offline = devices.devices.find((d) => d.name === env('TETHER_OFFLINE_DEVICE'));
  await page.goto(`${url}/#/device/${offline.id}`);
  await page.click('#connect', { timeout: LIMIT });
  await page.waitForSelector('#terminal-status[data-state=failed]', { timeout: LIMIT });
  const why = await page.textContent('#terminal-status');
  if (!/offline/.test(why)) throw new Error(`unexpected message for an offline device: ${why}`);
  await page.waitForSelector('#connect:text("Reconnect")', { timeout: LIMIT });

  begin('create an access token, use it as a bearer token, revoke it');
  await page.goto(`${url}/#/account`);
  await page.fill('#token-name', 'ci-script');
  await page.click('button:text("Create token")');
  const secret = (await (await page.waitForSelector('#token-secret', { timeout: LIMIT })).textContent()).trim();
  if (!secret.startsWith('ttp_')) throw new Error(`unexpected token ${secret.slice(0, 6)}…`);
  const bearer = (token) => new Promise((resolve, reject) => {
    https.get(`${url}/api/management/v1/devices`, { rejectUnauthorized: false, headers: { Authorization: `Bearer ${token}` } },
      (response) => { response.resume(); resolve(response.statusCode); }).on('error', reject);
  });
  if (await bearer(secret) !== 200) throw new Error('the new token does not list devices');
  await page.click('#tokens tr[data-token="ci-script"] button:text("Revoke")');
  await page.waitForFunction(() => /revoked/.test(document.querySelector('#tokens tr[data-token="ci-script"]')?.textContent || ''), null, { timeout: LIMIT });
  if (await bearer(secret) !== 401) throw new Error('the revoked token still works');
  await shots('account');
  await check('a wrong current password shows an error and keeps the login', async () => {
    await page.fill('#current-password', 'not-my-password');
    await page.fill('#new-password', 'a-new-password-never-set-1');
    await page.click('button:text("Change password")');
    await page.waitForFunction(() => document.querySelector('#username') || /password/i.test(document.querySelector('#password-message')?.textContent || ''), null, { timeout: 10000 });
    if (await page.isVisible('#username')) throw new Error('the page logged out');
    log(`wrong current password: ${await page.textContent('#password-message')}`);
  });
  if (await page.isVisible('#username')) await logIn(env('TETHER_USER'), env('TETHER_PASSWORD'));

  begin('create a user with a role on a group and disable it');
  await page.goto(`${url}/#/users`);
  await page.fill('#user-name', 'bob');
  await page.fill('#user-password', 'bob-correct-horse-battery');
  await page.selectOption('#user-role', 'operator');
  await page.fill('#user-groups', 'tag:site-a');
  await page.click('button:text("Create user")');
  await page.waitForFunction(() => document.querySelector('#users tr[data-user="bob"] input.grants')?.value === 'operator@tag:site-a', null, { timeout: LIMIT });
  page.once('dialog', (dialog) => dialog.accept()); await page.click('#users tr[data-user="bob"] button:text("Disable")', { timeout: LIMIT });
  await page.waitForFunction(() => /disabled/.test(document.querySelector('#users tr[data-user="bob"]')?.textContent || ''), null, { timeout: LIMIT });
  await check('a grant without tag: is refused with what is wrong', async () => {
    await page.fill('#users tr[data-user="bob"] input.grants', 'operator@site-a');
    await page.click('#users tr[data-user="bob"] button:text("Save")');
    await page.waitForFunction(() => (document.querySelector('#users-error')?.textContent || '') + (document.querySelector('#users-message')?.textContent || ''), null, { timeout: 10000 });
    const said = await page.textContent('#users-error');
    if (!/tag:site-a/.test(said)) throw new Error(`no error naming tag:site-a (error: ${JSON.stringify(said)}, message: ${JSON.stringify(await page.textContent('#users-message'))})`);
    const stored = await page.evaluate(() => fetch('/api/management/v1/users').then((r) => r.json()));
    const grants = stored.users.find((u) => u.name === 'bob').roles.map((g) => `${g.role}@${g.scope}`).join(', ');
    if (grants !== 'operator@tag:site-a') throw new Error(`bob's grants became ${grants}`);
  });
  await shots('users');

  begin('a state change without the CSRF token is refused');
  const forged = await page.evaluate(() => fetch('/api/management/v1/auth/web/logout', { method: 'POST' }).then((r) => r.status));
  if (forged !== 403) throw new Error(`a POST without the CSRF token got ${forged}, expected 403`);

  begin('log out: the page returns to the login form and cannot reach the API');
  await page.click('#logout');
  await page.waitForSelector('#username', { timeout: LIMIT });
  const status = await page.evaluate(() => fetch('/api/management/v1/devices').then((r) => r.status));
  if (status !== 401) throw new Error(`after logout the API answered ${status}, expected 401`);
  const replayed = await upgradeStatus(path, new URL(url).origin, cookie);
  if (replayed !== 401) throw new Error(`the old cookie still opens sessions (${replayed})`);
  await page.goto(`${url}/#/devices`);
  await page.waitForSelector('#username', { timeout: LIMIT });

  begin('an ended session returns the page to the login form with a message');
  await page.fill('#username', env('TETHER_USER'));
  await page.fill('#password', env('TETHER_PASSWORD'));
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('#devices', { timeout: LIMIT });
  const revoked = await page.evaluate(async (name) => {
    const { csrf_token: csrf } = await fetch('/api/management/v1/auth/web/session').then((r) => r.json());
    const answer = await fetch(`/api/management/v1/users/${name}/revoke-sessions`, { method: 'POST', headers: { 'X-CSRF-Token': csrf } });
    return answer.status;
  }, env('TETHER_USER'));
  if (revoked !== 200) throw new Error(`revoking the sessions answered ${revoked}`);
  // The first request after the revocation finds it: the Refresh click, or one the page makes by
  // itself (the header's count of access requests) when that comes first and the button is gone.
  await page.click('button:text("Refresh")', { timeout: 2000 }).catch(() => {});
  await page.waitForSelector('#login-notice:text("session has ended")', { timeout: LIMIT });

  begin('an operator requests access to a group; the approver section stays hidden');
  const operator = env('TETHER_OPERATOR');
  const operatorPassword = env('TETHER_OPERATOR_PASSWORD');
  await logIn(operator, operatorPassword);
  await page.waitForSelector('#devices', { timeout: LIMIT });
  await page.goto(`${url}/#/access`);
  await page.fill('#access-scope', 'tag:site-a', { timeout: LIMIT });
  await page.check('#access-form input[data-permission="file_read"]');
  await page.fill('#access-reason', 'ticket 42: inspect site A');
  await page.click('button:text("Request access")');
  await page.waitForSelector('#access-mine tr[data-scope="tag:site-a"] [data-status="pending"]', { timeout: LIMIT });
  if (await page.isVisible('#access-approvals')) throw new Error('an operator sees the approver section');

  begin('enrol two-factor authentication on the Account page');
  await page.goto(`${url}/#/account`);
  await page.click('#two-factor-enrol', { timeout: LIMIT });
  let totpSecret = (await (await page.waitForSelector('#two-factor-secret', { timeout: LIMIT })).textContent()).trim();
  await page.waitForSelector('#two-factor-qr[src^="data:image/"]', { timeout: LIMIT });
  await shots('account-2fa');
  await check('a wrong 2FA enrolment code shows an error and keeps the login', async () => {
    const near = [-60, -30, 0, 30, 60].map((shift) => totp(totpSecret, Date.now() / 1000 + shift));
    let wrong = 200000;
    while (near.includes(String(wrong))) wrong += 1;
    await page.fill('#two-factor-code', String(wrong));
    await page.click('#two-factor button:text("Confirm")');
    await page.waitForFunction(() => document.querySelector('#username') || document.querySelector('#two-factor-message.error')?.textContent, null, { timeout: 10000 });
    if (await page.isVisible('#username')) throw new Error('the page logged out');
    log(`wrong enrolment code: ${await page.textContent('#two-factor-message')}`);
  });
  if (await page.isVisible('#username')) {
    await logIn(operator, operatorPassword);
    await page.waitForSelector('#devices', { timeout: LIMIT });
    await page.goto(`${url}/#/account`);
    await page.click('#two-factor-enrol', { timeout: LIMIT });
    totpSecret = (await (await page.waitForSelector('#two-factor-secret', { timeout: LIMIT })).textContent()).trim();
  }
  await page.fill('#two-factor-code', totp(totpSecret, Date.now() / 1000));
  await page.click('#two-factor button:text("Confirm")');
  await page.waitForSelector('#recovery-codes li', { timeout: LIMIT });
  const recoveryCodes = await page.$$eval('#recovery-codes li', (items) => items.length);
  if (recoveryCodes !== 10) throw new Error(`expected 10 recovery codes, saw ${recoveryCodes}`);
  await shot('account-2fa-codes');

  begin('log in again: the code step appears; a wrong code is refused, the right one logs in');
  await page.click('#logout');
  await page.waitForSelector('#username', { timeout: LIMIT });
  await logIn(operator, operatorPassword);
  await page.waitForSelector('#login-code', { state: 'visible', timeout: LIMIT });
  const near = [-30, 0, 30, 60].map((shift) => totp(totpSecret, Date.now() / 1000 + shift));
  let wrong = 100000;
  while (near.includes(String(wrong))) wrong += 1;
  await page.fill('#login-code', String(wrong));
  await page.click('form.login button[type=submit]');
  await page.waitForFunction(() => (document.querySelector('#login-error')?.textContent || '').length > 0, null, { timeout: LIMIT });
  if (await page.isVisible('#devices')) throw new Error('a wrong code logged in');
  log(`wrong code: ${await page.textContent('#login-error')}`);
  // The next step's code: never the one used to confirm, so it is not a replay.
  await page.fill('#login-code', totp(totpSecret, Date.now() / 1000 + 30));
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('#devices', { timeout: LIMIT });
  await page.click('#logout');
  await page.waitForSelector('#username', { timeout: LIMIT });

  begin('the administrator approves the request on the Access page');
  await logIn(env('TETHER_USER'), env('TETHER_PASSWORD'));
  await page.waitForSelector('#devices', { timeout: LIMIT });
  await page.goto(`${url}/#/access`);
  const pendingRow = `#access-all tr[data-user="${operator}"][data-scope="tag:site-a"]`;
  await page.fill(`${pendingRow} input.note`, 'ok for today', { timeout: LIMIT });
  await page.click(`${pendingRow} button:text("Approve")`);
  await page.waitForSelector(`${pendingRow} [data-status="approved"]`, { timeout: LIMIT });
  await shots('access');

  begin('Esc then Tab moves the focus out of the terminal');
  await page.goto(`${url}/#/device/${id}`);
  await page.click('#connect', { timeout: LIMIT });
  await page.waitForSelector('#terminal-status[data-state=connected]', { timeout: LIMIT });
  await page.click('#terminal');
  await check('Esc then Tab moves the focus out of the terminal; Tab alone stays in it', async () => {
    const inTerminal = () => page.evaluate(() => document.querySelector('#terminal').contains(document.activeElement));
    await page.keyboard.type('ech');
    await page.keyboard.press('Tab');
    if (!(await inTerminal())) throw new Error('a plain Tab left the terminal');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    if (await inTerminal()) throw new Error('Esc then Tab did not leave the terminal');
    const told = await page.textContent('#terminal-keys').catch(() => '');
    if (!/Esc then Tab/.test(told)) throw new Error(`the page does not say how to leave the terminal: ${told}`);
  });
  await page.click('#terminal');
  // Ctrl+C (a signal, past readline's Esc prefix) drops the half-typed line.
  await page.keyboard.press('Control+C');

  begin('a terminal survives a hub SIGKILL and restart: the login stays, every line shows exactly once');
  const lines = 150;
  await page.evaluate(() => {
    window.sawLoginForm = false;
    new MutationObserver(() => { if (document.querySelector('#username')) window.sawLoginForm = true; })
      .observe(document.body, { childList: true, subtree: true });
  });
  await typeLine(`clear; for i in $(seq 1 ${lines}); do echo line-$i; sleep 0.2; done; echo counted-$((${lines}*2))`);
  await waitScreen('#terminal', /^line-10$/m, 'the counter');
  await check('the terminal re-attaches after the hub restarts, with every line once', async () => {
    await control('kill-hub');
    await page.waitForSelector('#hub-status:text("Hub unreachable")', { state: 'visible', timeout: LIMIT });
    await page.waitForSelector('#terminal-status[data-state=reconnecting]', { timeout: LIMIT });
    log(`while the hub is down: ${await page.textContent('#terminal-status')}`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await shots('hub-unreachable');
    await control('restart-hub');
    await page.waitForSelector('#hub-status', { state: 'hidden', timeout: 120000 });
    await page.waitForSelector('#terminal-status[data-state=connected]', { timeout: 120000 });
    const deadline = Date.now() + 120000;
    while (!(await bufferLines('#terminal')).includes(`counted-${lines * 2}`)) {
      if (Date.now() > deadline) throw new Error(`the counter never finished:\n${(await bufferLines('#terminal')).join('\n')}`);
      await page.waitForTimeout(500);
    }
    const shown = await bufferLines('#terminal');
    const wrong = [];
    for (let i = 1; i <= lines; i += 1) {
      const times = shown.filter((line) => line === `line-${i}`).length;
      if (times !== 1) wrong.push(`line-${i} ×${times}`);
    }
    if (wrong.length) throw new Error(`lines missing or repeated: ${wrong.slice(0, 20).join(', ')}`);
    if (await page.evaluate(() => window.sawLoginForm)) throw new Error('the login form appeared: the login was dropped');
    await typeLine('echo typed-$((2+3))');
    await waitScreen('#terminal', /^typed-5$/m, 'typing after the restart');
  });
  await page.click('#disconnect');
  await page.waitForSelector('#terminal-status[data-state=ended]', { timeout: LIMIT });

  const unexpected = consoleErrors.filter((text) => /Content Security Policy|Refused to/i.test(text));
  if (unexpected.length) throw new Error(`the browser reported policy violations: ${unexpected.join('; ')}`);
  if (failedChecks.length) throw new Error(`${failedChecks.length} check(s) failed: ${failedChecks.join('; ')}`);
  log('all steps passed');
  await browser.close();
  process.exit(0);
} catch (error) {
  console.error(`[ui.e2e] FAILED at "${run.step}": ${error.stack || error}`);
  await shot('failure').catch(() => {});
  await browser.close().catch(() => {});
  process.exit(1);
}
