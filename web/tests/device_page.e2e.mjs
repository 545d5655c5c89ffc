// The device page and the devices list of issue 19 in real headless Chromium (playwright-core,
// Debian's browser). Started by crates/tether-e2e/tests/web_device_page.rs, which runs a real hub
// and two real agents and passes in the environment:
//   TETHER_URL, TETHER_USER, TETHER_PASSWORD, TETHER_DEVICE (accepted, file transfer on, root
//   TETHER_DEVICE_ROOT holding a.txt = TETHER_DOWNLOAD_TEXT and logs/inner.txt), TETHER_KERNEL
//   and TETHER_ARCH (this machine's uname -r and -m), TETHER_NOFILES_DEVICE (accepted, file
//   transfer off), TETHER_SCREENSHOTS.
// Checks: the inventory panel (kernel, architecture, uptime), the list's OS and architecture
// columns and filters, browsing a directory, download by click, upload by drop into the shown
// directory, the overwrite warning (cancel keeps the file, overwrite replaces it), the "file
// transfer is off on this device" panel, and screenshots (device-*.png) at 1400×900 and 400 px
// (device-list, device-page, device-files-off; device-files: the browser at 1400×900),
// with nothing wider than 400 px. Exits 0 when every step passed.

import { mkdirSync, readFileSync } from 'node:fs';
import { createRun, env, launchBrowser, saveShots } from './script.mjs';
import { LIMIT } from './helpers.mjs';

const url = env('TETHER_URL');
const device = env('TETHER_DEVICE');
const root = env('TETHER_DEVICE_ROOT');
const screenshots = env('TETHER_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });

const run = createRun('device_page');
const { log, begin } = run;

const browser = await launchBrowser();
const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true, viewport: { width: 1100, height: 700 } });
const page = await context.newPage();
page.on('pageerror', (error) => log(`page error: ${error.message}`));

/** Screenshots at both sizes (script.mjs); a page wider than 400 px fails the step. */
const shots = (name) => saveShots(page, screenshots, name, (_, action) => action());

const text = (selector) => page.textContent(selector);
async function waitText(selector, pattern, what) {
  try {
    await page.waitForFunction(([sel, source]) => new RegExp(source).test(document.querySelector(sel)?.textContent || ''), [selector, pattern.source], { timeout: LIMIT });
  } catch {
    throw new Error(`${what}: ${selector} says ${JSON.stringify(await page.textContent(selector).catch(() => null))}`);
  }
}
const rows = () => page.$$eval('#devices tbody tr[data-device]', (all) => all.map((row) => row.dataset.device));

/** Drops a file named `name` holding `content` on `selector`. */
async function drop(selector, name, content) {
  const transfer = await page.evaluateHandle(([fileName, body]) => {
    const data = new DataTransfer();
    data.items.add(new File([body], fileName, { type: 'text/plain' }));
    return data;
  }, [name, content]);
  await page.dispatchEvent(selector, 'drop', { dataTransfer: transfer });
}

async function openDevice(name) {
  await page.goto(`${url}/#/devices`);
  await page.fill('#device-search', name);
  await page.waitForSelector(`a[data-open="${name}"]`, { timeout: LIMIT });
  await page.click(`a[data-open="${name}"]`);
  await page.waitForSelector('#inventory', { timeout: LIMIT });
}

try {
  begin('log in');
  await page.goto(url);
  await page.fill('#username', env('TETHER_USER'));
  await page.fill('#password', env('TETHER_PASSWORD'));
  await page.click('form.login button[type=submit]');
  await page.waitForSelector(`#devices tr[data-device="${device}"]`, { timeout: LIMIT });

  begin('the list shows OS and architecture, and filters on them');
  const headings = await page.$$eval('#devices thead th', (all) => all.map((th) => th.textContent));
  if (!headings.includes('OS') || !headings.includes('Arch.')) throw new Error(`columns: ${headings}`);
  const architecture = await text(`#devices tr[data-device="${device}"] .device-architecture`);
  if (architecture !== env('TETHER_ARCH')) throw new Error(`architecture column: ${architecture}`);
  const os = await text(`#devices tr[data-device="${device}"] .device-os`);
  if (!os || os === '—') throw new Error(`OS column: ${os}`);
  await page.fill('#device-architecture', env('TETHER_ARCH').toUpperCase());
  await page.waitForFunction((name) => !!document.querySelector(`#devices tr[data-device="${name}"]`), device, { timeout: LIMIT });
  await page.fill('#device-architecture', 'sparc64');
  await waitText('#devices tbody', /No devices match/, 'an architecture no device has');
  await page.fill('#device-architecture', '');
  await page.fill('#device-os', os.split(' ')[0]);
  await page.waitForFunction((name) => !!document.querySelector(`#devices tr[data-device="${name}"]`), device, { timeout: LIMIT });
  await page.fill('#device-os', 'no-such-os');
  await waitText('#devices tbody', /No devices match/, 'an OS no device runs');
  await page.fill('#device-os', '');
  await page.waitForFunction((name) => !!document.querySelector(`#devices tr[data-device="${name}"]`), device, { timeout: LIMIT });
  if (!(await rows()).includes(env('TETHER_NOFILES_DEVICE'))) throw new Error(`rows: ${await rows()}`);
  await shots('device-list');

  begin('the device page shows the inventory, uptime computed from the boot time');
  await openDevice(device);
  await waitText('#inventory-kernel', new RegExp(`^${env('TETHER_KERNEL').replace(/[.+]/g, '\\$&')}$`), 'kernel');
  await waitText('#inventory-architecture', new RegExp(`^${env('TETHER_ARCH')}$`), 'architecture');
  await waitText('#inventory-uptime', /^\d+ (s|min|h|d)/, 'uptime');
  await waitText('#inventory-features', /terminal, files/, 'features');

  begin('browse a directory of the device');
  await page.fill('#browse-path', root);
  await page.click('#browse-go');
  await page.waitForSelector(`#browse-drop[data-shown="${root}"]`, { timeout: LIMIT });
  await page.waitForSelector('[data-entry="a.txt"][data-kind="file"]', { timeout: LIMIT });
  await page.click('[data-entry="logs"][data-kind="directory"]');
  await page.waitForSelector(`#browse-drop[data-shown="${root}/logs"]`, { timeout: LIMIT });
  await page.waitForSelector('[data-entry="inner.txt"]', { timeout: LIMIT });
  await page.click('#browse-up');
  await page.waitForSelector(`#browse-drop[data-shown="${root}"]`, { timeout: LIMIT });

  begin('download by a click on the entry');
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: LIMIT }), page.click('[data-entry="a.txt"]')]);
  const got = readFileSync(await download.path(), 'utf8');
  if (got !== env('TETHER_DOWNLOAD_TEXT')) throw new Error(`downloaded ${JSON.stringify(got)}`);
  await page.waitForSelector('#download-status[data-done]', { timeout: LIMIT });

  begin('upload by dropping a file on the shown directory');
  await drop('#browse-drop', 'dropped-new.txt', 'dropped into the browser');
  await page.waitForSelector('[data-entry="dropped-new.txt"]', { timeout: LIMIT });
  if (readFileSync(`${root}/dropped-new.txt`, 'utf8') !== 'dropped into the browser') throw new Error('the dropped file differs on the device');

  begin('dropping over an existing name asks first; cancel keeps the file');
  await drop('#browse-drop', 'a.txt', 'replaced');
  await page.waitForSelector('#browse-confirm:not([hidden])', { timeout: LIMIT });
  await waitText('#browse-question', /a\.txt already exists in .*Overwrite it\?/, 'the overwrite question');
  await page.click('#browse-cancel');
  await waitText('#browse-status', /nothing was overwritten/, 'cancelled');
  if (readFileSync(`${root}/a.txt`, 'utf8') !== env('TETHER_DOWNLOAD_TEXT')) throw new Error('cancel overwrote a.txt');

  begin('overwrite replaces it');
  await page.evaluate(() => { delete document.querySelector('#upload-status').dataset.done; });
  await drop('#browse-drop', 'a.txt', 'replaced');
  await page.waitForSelector('#browse-confirm:not([hidden])', { timeout: LIMIT });
  await page.click('#browse-overwrite');
  await page.waitForSelector('#upload-status[data-done]', { timeout: LIMIT });
  if (readFileSync(`${root}/a.txt`, 'utf8') !== 'replaced') throw new Error('overwrite did not replace a.txt');
  // The browser itself at 1400×900 (device-files.png): the page's top is the inventory.
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.$eval('#browser', (element) => element.scrollIntoView());
  await page.screenshot({ path: `${screenshots}/device-files.png`, type: 'png' });
  await page.setViewportSize({ width: 1100, height: 700 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shots('device-page');

  begin('a device without file transfer says so');
  await openDevice(env('TETHER_NOFILES_DEVICE'));
  await waitText('#files-off', /File transfer is off on this device/, 'the files-off panel');
  if (await page.$('#browse-drop')) throw new Error('a file browser is offered on a device without file transfer');
  await waitText('#forwards-off', /Port forwarding is off on this device/, 'the forwards-off panel');
  await shots('device-files-off');
  log('all steps passed');
  await browser.close();
} catch (error) {
  console.error(`[device_page] FAILED at step "${run.step}": ${error.stack || error.message}`);
  await page.screenshot({ path: `${screenshots}/device-failure.png`, type: 'png', fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
