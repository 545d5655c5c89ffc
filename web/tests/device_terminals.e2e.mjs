// The device page's terminal tabs and detached shells (issue 19) in real headless Chromium
// (playwright-core, Debian's browser). Started by crates/tether-e2e/tests/web_device_terminals.rs,
// which runs a real hub (two sessions per user) and agent and passes in the environment:
//   TETHER_URL, TETHER_USER and TETHER_PASSWORD (an operator), TETHER_DEVICE (accepted, holding
//   a detached shell of that operator whose output had TETHER_DETACHED_OUTPUT),
//   TETHER_SCREENSHOTS.
// Checks: two tabs run different commands and each keeps its own output; the arrow keys, Home
// and End switch tabs; the leave-page question names both running shells; a third shell is
// refused by the hub's session limit and its tab says so while the others keep running; closing a
// tab asks (cancel keeps it, Delete on the tab asks too, confirm ends only its shell, the other
// still answers); the detached shell is listed with when it was detached, and Re-attach opens
// it in a new tab with its earlier output, taking input; Esc then Tab leaves a second tab's terminal; Detach closes
// that tab, the shell is listed again and re-attached again with its output; axe-core finds
// nothing serious; the detached list was asked again by itself; screenshots device-terminals
// and device-detached at 1400×900 and 400 px, nothing wider than 400 px.
// A failed step stops the run; a failed check is reported and the run goes on. Exits 0 when
// every step and check passed.

import { mkdirSync } from 'node:fs';
import { createRun, env, launchBrowser, saveShots } from './script.mjs';
import { LIMIT, bufferLines, waitScreen } from './helpers.mjs';
import { assertAccessible } from './a11y.mjs';

const url = env('TETHER_URL');
const device = env('TETHER_DEVICE');
const screenshots = env('TETHER_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });

const run = createRun('device_terminals');
const { log, begin, check, failedChecks } = run;

const browser = await launchBrowser();
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 700 } });
const page = await context.newPage();
page.on('pageerror', (error) => log(`page error: ${error.message}`));
let detachedRequests = 0;
page.on('request', (request) => { if (request.url().endsWith('/sessions/detached')) detachedRequests += 1; });

/** Screenshots at both sizes (script.mjs; wider than 400 px fails the step); the page must not
 *  end in a stray "null" either (an operator's device page once did). */
async function shots(name) {
  await saveShots(page, screenshots, name, (_, action) => action());
  if (await page.evaluate(() => /(^|\n)null$/.test(document.querySelector('main').innerText.trim()))) throw new Error(`${name}: the page ends in "null"`);
}

const panelOf = (number) => `#terminal-panel-${number}`;
const boxOf = (number) => (number === 1 ? '#terminal' : `#terminal-${number}`);
const stateOf = (number) => page.getAttribute(`${panelOf(number)} .terminal-status`, 'data-state');
const waitState = (number, state) => page.waitForSelector(`${panelOf(number)} .terminal-status[data-state=${state}]`, { state: 'attached', timeout: LIMIT });
/** The number of the tab shown now. */
const shownTab = () => page.$eval('[role=tab][aria-selected=true]', (tab) => Number(tab.dataset.tab));
async function typeLine(number, line) {
  await page.click(boxOf(number));
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}
const holds = async (number, text) => (await bufferLines(boxOf(number), page)).some((line) => line.includes(text));

/** Presses `key` on the focused tab and returns the tab then shown (and focused). */
async function press(key) {
  await page.keyboard.press(key);
  const shown = await shownTab();
  const focused = await page.evaluate(() => Number(document.activeElement?.dataset?.tab || 0));
  const visible = await page.$$eval('[role=tabpanel]', (all) => all.filter((panel) => !panel.hidden).map((panel) => Number(panel.dataset.tab)));
  if (focused !== shown || visible.length !== 1 || visible[0] !== shown) {
    throw new Error(`after ${key}: shown ${shown}, focused ${focused}, visible panels ${visible}`);
  }
  return shown;
}

/** Answers the next dialog (accept or dismiss) and returns its message. */
function nextDialog(accept) {
  return new Promise((resolve) => {
    page.once('dialog', async (dialog) => {
      const message = dialog.message();
      if (accept) await dialog.accept();
      else await dialog.dismiss();
      resolve(message);
    });
  });
}

try {
  begin('log in and open the device');
  await page.goto(url);
  await page.fill('#username', env('TETHER_USER'));
  await page.fill('#password', env('TETHER_PASSWORD'));
  await page.click('form.login button[type=submit]');
  await page.waitForSelector(`#devices tr[data-device="${device}"]`, { timeout: LIMIT });
  await page.click(`tr[data-device="${device}"] a[data-open]`);
  await page.waitForSelector('#connect', { timeout: LIMIT });

  begin('tab 1: connect and run a command');
  await page.click('#connect');
  await waitState(1, 'connected');
  await typeLine(1, 'echo first-$((1+1))');
  await waitScreen('#terminal', /^first-2$/m, 'tab 1', page);

  begin('New terminal opens tab 2 with a shell of its own');
  await page.click('#new-terminal');
  await waitState(2, 'connected');
  if ((await shownTab()) !== 2) throw new Error('the new tab is not shown');
  await typeLine(2, 'echo second-$((2+2))');
  await waitScreen('#terminal-2', /^second-4$/m, 'tab 2', page);
  await check('each tab keeps its own output', async () => {
    if (await holds(2, 'first-2')) throw new Error('tab 2 shows tab 1\'s output');
    if (!(await holds(1, 'first-2')) || (await holds(1, 'second-4'))) throw new Error(`tab 1 holds ${await bufferLines('#terminal', page)}`);
  });

  begin('arrow keys, Home and End move between tabs');
  await check('Left, Right, Home and End switch tabs (and wrap)', async () => {
    await page.focus('#terminal-tab-2');
    const seen = [];
    for (const key of ['ArrowLeft', 'ArrowRight', 'Home', 'End', 'ArrowRight', 'ArrowLeft', 'ArrowLeft']) seen.push(await press(key));
    if (seen.join() !== '1,2,1,2,1,2,1') throw new Error(`the keys showed tabs ${seen}`);
  });
  await check('a tab shown again still has its output, and answers', async () => {
    await waitScreen('#terminal', /^first-2$/m, 'tab 1 shown again', page);
    await typeLine(1, 'echo again-$((3+3))');
    await waitScreen('#terminal', /^again-6$/m, 'tab 1 typing', page);
  });

  begin('leaving names both running shells');
  await check('the leave-page question names every running shell; staying keeps them', async () => {
    const asked = nextDialog(false);
    await page.click('header nav a[href="#/devices"]');
    const message = await asked;
    if (!/tabs 1 and 2 .*still running/.test(message)) throw new Error(`asked ${JSON.stringify(message)}`);
    await page.waitForTimeout(300);
    if (!(await page.isVisible('#terminal-panel-1'))) throw new Error('the page left');
    if ((await stateOf(1)) !== 'connected' || (await stateOf(2)) !== 'connected') throw new Error('a shell did not survive staying');
  });

  begin('a third shell is refused by the hub\'s session limit: its tab says so');
  await page.click('#new-terminal');
  await waitState(3, 'failed');
  await check('the refused tab names the session limit, the others keep running', async () => {
    const why = await page.textContent(`${panelOf(3)} .terminal-status`);
    if (!/refused a new session.*max_sessions_per_user/.test(why)) throw new Error(`tab 3 says ${JSON.stringify(why)}`);
    const label = await page.textContent('#terminal-tab-3');
    if (!/failed/.test(label)) throw new Error(`tab 3's label reads ${JSON.stringify(label)}`);
    if ((await stateOf(1)) !== 'connected' || (await stateOf(2)) !== 'connected') throw new Error('a running tab broke');
  });
  await check('a tab without a running shell closes without asking', async () => {
    let asked = null;
    const answer = (dialog) => { asked = dialog.message(); dialog.dismiss(); };
    page.on('dialog', answer);
    await page.click('#close-terminal-3');
    await page.waitForTimeout(300);
    page.off('dialog', answer);
    if (asked) throw new Error(`asked ${JSON.stringify(asked)}`);
    if (await page.$('#terminal-tab-3')) throw new Error('tab 3 is still there');
  });
  await page.click('#terminal-tab-2');
  await page.$eval('#terminals', (element) => element.scrollIntoView());
  await shots('device-terminals');

  begin('closing tab 2 asks; cancel keeps it, confirm ends only its shell');
  await check('cancel keeps the tab and its shell', async () => {
    const asked = nextDialog(false);
    await page.click('#close-terminal-2');
    const message = await asked;
    if (message !== 'End the shell in tab 2?') throw new Error(`asked ${JSON.stringify(message)}`);
    await page.waitForTimeout(300);
    if ((await stateOf(2)) !== 'connected') throw new Error('tab 2 is gone or ended');
    await typeLine(2, 'echo kept-$((4+4))');
    await waitScreen('#terminal-2', /^kept-8$/m, 'tab 2 after cancel', page);
  });
  await check('Delete on the focused tab asks the same', async () => {
    await page.focus('#terminal-tab-2');
    const asked = nextDialog(false);
    await page.keyboard.press('Delete');
    const message = await asked;
    if (message !== 'End the shell in tab 2?') throw new Error(`asked ${JSON.stringify(message)}`);
    await page.waitForTimeout(300);
    if ((await stateOf(2)) !== 'connected') throw new Error('tab 2 is gone or ended');
  });
  const confirmed = nextDialog(true);
  await page.click('#close-terminal-2');
  await confirmed;
  await page.waitForSelector('#terminal-tab-2', { state: 'detached', timeout: LIMIT });
  await check('the other tab still answers', async () => {
    if ((await shownTab()) !== 1) throw new Error(`tab ${await shownTab()} is shown`);
    await typeLine(1, 'echo alive-$((5+5))');
    await waitScreen('#terminal', /^alive-10$/m, 'tab 1 after closing tab 2', page);
  });

  begin('the detached shell is listed, and Re-attach opens it in a new tab');
  await page.waitForSelector('#detached li[data-sid] button[data-reattach]', { timeout: LIMIT });
  await check('the detached shell says when it was detached', async () => {
    const items = await page.$$eval('#detached li[data-sid]', (all) => all.map((item) => item.textContent));
    if (items.length !== 1) throw new Error(`listed ${JSON.stringify(items)}`);
    if (!/detached \d+ (s|min) ago/.test(items[0])) throw new Error(`listed ${JSON.stringify(items[0])}`);
  });
  await page.$eval('#detached', (element) => element.scrollIntoView({ block: 'center' }));
  await shots('device-detached');
  await check('axe-core finds nothing serious on the device page with tabs and detached shells', () => assertAccessible(page, 'the device page'));
  await page.click('#detached button[data-reattach]');
  const adopted = await shownTab();
  await waitState(adopted, 'connected');
  await check('the re-attached tab shows the earlier output and takes input', async () => {
    const earlier = env('TETHER_DETACHED_OUTPUT');
    const deadline = Date.now() + LIMIT;
    while (!(await holds(adopted, earlier))) {
      if (Date.now() > deadline) throw new Error(`no ${earlier} in:\n${(await bufferLines(boxOf(adopted), page)).join('\n')}`);
      await page.waitForTimeout(200);
    }
    await typeLine(adopted, 'echo back-$((40+2))');
    await waitScreen(boxOf(adopted), /^back-42$/m, 'the re-attached shell', page);
  });
  await check('a re-attached shell leaves the detached list', () => page.waitForSelector('#detached[data-count="0"]', { timeout: LIMIT }));
  await check('Esc then Tab leaves the terminal of a second tab', async () => {
    await page.click(boxOf(adopted));
    const inside = () => page.evaluate((sel) => document.querySelector(sel).contains(document.activeElement), boxOf(adopted));
    await page.keyboard.press('Tab');
    if (!(await inside())) throw new Error('a plain Tab left the terminal');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    if (await inside()) throw new Error('Esc then Tab stayed in the terminal');
    // Ctrl+C (a signal, past the shell's Esc prefix) drops the half-typed line.
    await page.click(boxOf(adopted));
    await page.keyboard.press('Control+C');
  });
  await check('Detach closes the tab and keeps the shell: listed again, re-attached again', async () => {
    await page.click(`#detach-terminal-${adopted}`);
    await page.waitForSelector(`#terminal-tab-${adopted}`, { state: 'detached', timeout: LIMIT });
    await page.waitForSelector('#detached li[data-sid] button[data-reattach]', { timeout: LIMIT });
    await page.click('#detached button[data-reattach]');
    const again = await shownTab();
    await waitState(again, 'connected');
    const deadline = Date.now() + LIMIT;
    while (!(await holds(again, 'back-42'))) {
      if (Date.now() > deadline) throw new Error(`no back-42 in:\n${(await bufferLines(boxOf(again), page)).join('\n')}`);
      await page.waitForTimeout(200);
    }
    await typeLine(again, 'echo twice-$((2*21))');
    await waitScreen(boxOf(again), /^twice-42$/m, 'the shell re-attached twice', page);
  });
  await check('the detached list is asked again by itself', async () => {
    // Past the second look that follows a tab's change (1.5 s): only the interval is left.
    await page.waitForTimeout(2500);
    const before = detachedRequests;
    const deadline = Date.now() + 40000;
    while (detachedRequests === before && Date.now() < deadline) await page.waitForTimeout(500);
    if (detachedRequests === before) throw new Error('no refresh in 40 s');
    log(`the page asked for the detached list ${detachedRequests} times`);
  });

  begin('leave: the shells end');
  const leaving = nextDialog(true);
  await page.click('header nav a[href="#/devices"]');
  log(`asked: ${await leaving}`);
  await page.waitForSelector('#devices', { timeout: LIMIT });
  await browser.close();
  if (failedChecks.length) {
    console.error(`[device_terminals] ${failedChecks.length} check(s) failed: ${failedChecks.join('; ')}`);
    process.exit(1);
  }
  log('all steps and checks passed');
} catch (error) {
  console.error(`[device_terminals] FAILED at step "${run.step}": ${error.stack || error.message}`);
  await page.screenshot({ path: `${screenshots}/device-terminals-failure.png`, type: 'png', fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
