// Acceptance test of the web UI in real headless Chromium (playwright-core, the Debian
// browser; nothing is downloaded). Started by crates/tether-e2e/tests/web_ui.rs, which runs a
// real hub and agent and passes them in the environment:
//   TETHER_URL, TETHER_USER, TETHER_PASSWORD, TETHER_DEVICE (name, pending at start),
//   TETHER_DEVICE_ROOT (a file-transfer root on the device), TETHER_DOWNLOAD (a file in it),
//   TETHER_DOWNLOAD_SHA256, TETHER_UPLOAD_TEXT, TETHER_SCREENSHOTS (directory),
//   TETHER_OFFLINE_DEVICE (an accepted device whose agent is stopped), TETHER_REJECT_DEVICE
//   (another pending device, to reject), TETHER_OPERATOR and TETHER_OPERATOR_PASSWORD (a user
//   with the operator role, who enrols 2FA and requests access).
// Exits 0 when every step passed; otherwise prints the failed step and exits 1.

import { createHash, createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('TETHER_URL');
const device = env('TETHER_DEVICE');
const root = env('TETHER_DEVICE_ROOT');
const screenshots = env('TETHER_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });
rmSync(`${screenshots}/failure.png`, { force: true });
const LIMIT = 30000;

let step = 'start';
const log = (text) => console.log(`[ui.e2e] ${text}`);
const begin = (name) => { step = name; log(name); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--ignore-certificate-errors'],
});
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

/** The visible rows of the xterm.js terminal in `selector`, as text lines. */
const screen = (selector, on = page) => on.evaluate((sel) => {
  const rows = document.querySelector(`${sel} .xterm-rows`);
  return rows ? Array.from(rows.children, (row) => row.textContent.replace(/\u00a0/g, ' ').trimEnd()).join('\n') : '';
}, selector);

async function waitScreen(selector, pattern, what, on = page, limit = LIMIT) {
  const deadline = Date.now() + limit;
  let text = '';
  while (Date.now() < deadline) {
    text = await screen(selector, on);
    const match = text.match(pattern);
    if (match) return match;
    await on.waitForTimeout(100);
  }
  throw new Error(`${what}: ${pattern} never appeared; the screen was:\n${text}`);
}

/** RFC 6238 TOTP (HMAC-SHA1, 30 s steps, 6 digits) of a base32 secret, at `seconds`. */
function totp(secret, seconds) {
  let bits = '';
  for (const char of secret.replace(/=+$/, '').toUpperCase()) {
    bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(char).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

async function logIn(name, password) {
  await page.fill('#username', name);
  await page.fill('#password', password);
  await page.click('form.login button[type=submit]');
}

async function typeLine(line) {
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}

/** A WebSocket upgrade sent from Node with the browser's cookie and a chosen Origin. */
function upgradeStatus(path, origin, cookie) {
  return new Promise((resolve, reject) => {
    const request = https.request(`${url}${path}`, {
      rejectUnauthorized: false,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', Origin: origin, Cookie: cookie,
      },
    });
    request.on('response', (response) => { response.resume(); resolve(response.statusCode); });
    request.on('upgrade', (response, socket) => { socket.destroy(); resolve(response.statusCode); });
    request.on('error', reject);
    request.end();
  });
}

try {
  begin('a wrong password shows an error');
  await page.goto(url);
  await page.waitForSelector('#username', { timeout: LIMIT });
  await shot('login');
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
  await page.click(`button[data-reject="${unwanted}"]`, { timeout: LIMIT });
  await page.waitForFunction((name) => {
    const row = document.querySelector(`#devices tr[data-device="${name}"]`);
    return row && row.children[2].textContent === 'rejected' && !row.querySelector('button');
  }, unwanted, { timeout: LIMIT });
  await page.fill('#device-search', device);
  await page.waitForFunction((name) => {
    const rows = document.querySelectorAll('#devices tbody tr[data-device]');
    return rows.length === 1 && rows[0].dataset.device === name && /online/.test(rows[0].textContent);
  }, device, { timeout: LIMIT });
  await shot('devices');

  begin('open its terminal and run echo hello-$RANDOM');
  await page.click(`tr[data-device="${device}"] a[data-open]`);
  await page.click('#connect', { timeout: LIMIT });
  await page.waitForSelector('#terminal-status[data-state=connected]', { timeout: LIMIT });
  await page.click('#terminal');
  await typeLine('echo hello-$RANDOM');
  const hello = (await waitScreen('#terminal', /^(hello-\d+)$/m, 'echo'))[1];
  log(`saw ${hello}`);

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
  await watcher.screenshot({ path: `${screenshots}/watch.png`, type: 'png' });
  await watcher.close();

  begin('upload a file by picking it');
  await page.fill('#upload-dir', root);
  await page.setInputFiles('#upload-file', { name: 'web-upload.txt', mimeType: 'text/plain', buffer: Buffer.from(env('TETHER_UPLOAD_TEXT')) });
  await page.waitForSelector('#upload-status[data-done]', { timeout: LIMIT });
  await page.click('#terminal');
  await typeLine(`clear; cat ${root}/web-upload.txt; echo`);
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
  begin('tag the device (administrator)');
  await page.fill('#device-tags-input', 'site-a, lab');
  await page.click('button:text("Save tags")');
  await page.waitForFunction(() => [...document.querySelectorAll('#device-tags .tag')].map((t) => t.textContent).join(',') === 'site-a,lab', null, { timeout: LIMIT });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('device');

  begin('disconnect and play the recorded session');
  await page.click('#disconnect');
  await page.waitForSelector('#terminal-status[data-state=ended]', { timeout: LIMIT });
  await page.goto(`${url}/#/recordings`);
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
  await shot('player');

  begin('an audit event for the terminal');
  await page.goto(`${url}/#/audit`);
  await page.waitForSelector('#audit tr[data-action="terminal.open"]', { timeout: LIMIT });
  await shot('audit');
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
  await shot('account');

  begin('create a user with a role on a group and disable it');
  await page.goto(`${url}/#/users`);
  await page.fill('#user-name', 'bob');
  await page.fill('#user-password', 'bob-correct-horse-battery');
  await page.selectOption('#user-role', 'operator');
  await page.fill('#user-groups', 'tag:site-a');
  await page.click('button:text("Create user")');
  await page.waitForFunction(() => document.querySelector('#users tr[data-user="bob"] input.grants')?.value === 'operator@tag:site-a', null, { timeout: LIMIT });
  await page.click('#users tr[data-user="bob"] button:text("Disable")', { timeout: LIMIT });
  await page.waitForFunction(() => /disabled/.test(document.querySelector('#users tr[data-user="bob"]')?.textContent || ''), null, { timeout: LIMIT });
  await shot('users');

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
  await page.click('button:text("Refresh")');
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
  const totpSecret = (await (await page.waitForSelector('#two-factor-secret', { timeout: LIMIT })).textContent()).trim();
  await page.waitForSelector('#two-factor-qr[src^="data:image/"]', { timeout: LIMIT });
  await shot('account-2fa', true);
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
  await shot('access', true);

  const unexpected = consoleErrors.filter((text) => /Content Security Policy|Refused to/i.test(text));
  if (unexpected.length) throw new Error(`the browser reported policy violations: ${unexpected.join('; ')}`);
  log('all steps passed');
  await browser.close();
  process.exit(0);
} catch (error) {
  console.error(`[ui.e2e] FAILED at "${step}": ${error.stack || error}`);
  await shot('failure').catch(() => {});
  await browser.close().catch(() => {});
  process.exit(1);
}
