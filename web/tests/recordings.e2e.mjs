// Audit ↔ recordings of issue 19 in real headless Chromium (playwright-core, Debian's browser).
// Started by crates/tether-e2e/tests/web_recordings.rs, which runs a real hub and two real
// agents, records three sessions with the real CLI and passes in the environment:
//   TETHER_URL, TETHER_USER, TETHER_PASSWORD (an administrator), TETHER_DEVICE (alice's two
//   sessions), TETHER_OTHER_DEVICE (bob's), TETHER_NEEDLE_SID (alice's command printing
//   "needle-42-found here"), TETHER_OTHER_SID (bob's command), TETHER_PLAYER_SID (alice's shell:
//   player-start-2, over a megabyte of `seq` output, a 62 s pause, then player-end-4 on a cleared
//   screen), TETHER_SCREENSHOTS.
// Checks: the recordings list filters by device (name and id), user and dates, and searches the
// output (the needle found with its excerpt, the search said complete, a missing text finds
// nothing); the player shows user, device, date and duration, skips the idle gap, seeks
// through the keyframes with a window read from the keyframe (smaller than the whole
// recording, no asciicast download), links to the session's audit events, whose terminal events
// link back to the player; axe-core on each page. Screenshots recordings-filtered and
// player-metadata at 1400×900 and 400 px. A failed check is reported and the run goes on;
// exits 0 when every step and check passed.

import { mkdirSync } from 'node:fs';
import { createRun, env, launchBrowser, saveShots } from './script.mjs';
import { LIMIT, screen, waitScreen } from './helpers.mjs';
import { assertAccessible } from './a11y.mjs';

const url = env('TETHER_URL');
const device = env('TETHER_DEVICE');
const otherDevice = env('TETHER_OTHER_DEVICE');
const needleSid = env('TETHER_NEEDLE_SID');
const otherSid = env('TETHER_OTHER_SID');
const playerSid = env('TETHER_PLAYER_SID');
const screenshots = env('TETHER_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });
const API = '/api/management/v1';

const run = createRun('recordings');
const { log, begin, check, failedChecks } = run;

const browser = await launchBrowser();
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 700 } });
const page = await context.newPage();
page.on('pageerror', (error) => log(`page error: ${error.message}`));
/** The hub requests the page made (path and query), in order. */
const requests = [];
page.on('request', (request) => {
  const address = new URL(request.url());
  if (address.pathname.startsWith(API)) requests.push(`${address.pathname}${address.search}`);
});

/** Screenshots of the page at both sizes (script.mjs). */
const shots = (name) => saveShots(page, screenshots, name, check);

/** The session ids listed on the recordings page. */
const listed = () => page.$$eval('#recordings tbody tr[data-sid]', (rows) => rows.map((row) => row.dataset.sid));
/** How many answers the recordings page has shown. */
const loads = () => page.$eval('#recordings', (table) => Number(table.dataset.loads || 0));

/** Sets the filters (others emptied), submits, and returns the sessions listed. */
async function filtered(values) {
  for (const name of ['device', 'user', 'from', 'to', 'text']) await page.fill(`#recordings-${name}`, values[name] || '');
  const before = await loads();
  await page.click('#recordings-filters button[type=submit]');
  await page.waitForFunction((count) => Number(document.querySelector('#recordings').dataset.loads || 0) > count, before, { timeout: LIMIT });
  return listed();
}

const sameSet = (got, want) => got.length === want.length && want.every((sid) => got.includes(sid));
const expectListed = (got, want, what) => {
  if (!sameSet(got, want)) throw new Error(`${what}: listed ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
};
/** A local `datetime-local` value `hours` from now. */
const localTime = (hours) => {
  const date = new Date(Date.now() + hours * 3600 * 1000);
  date.setMinutes(date.getMinutes() - date.getTimezoneOffset());
  return date.toISOString().slice(0, 16);
};

try {
  begin('log in');
  await page.goto(url);
  await page.fill('#username', env('TETHER_USER'));
  await page.fill('#password', env('TETHER_PASSWORD'));
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('#devices', { timeout: LIMIT });

  begin('the recordings list and its filters');
  await page.goto(`${url}/#/recordings`);
  await page.waitForSelector(`#recordings tr[data-sid="${playerSid}"]`, { timeout: LIMIT });
  const all = await listed();
  await check('every session is listed unfiltered', async () => {
    for (const sid of [needleSid, otherSid, playerSid]) if (!all.includes(sid)) throw new Error(`${sid} missing from ${all}`);
  });
  const otherDeviceId = await page.evaluate(async ([api, sid]) => {
    const answer = await (await fetch(`${api}/sessions?limit=1000`)).json();
    return answer.sessions.find((session) => session.sid === sid).device_id;
  }, [API, otherSid]);
  await check('the device filter takes a name', async () => {
    expectListed(await filtered({ device: otherDevice }), [otherSid], `device ${otherDevice}`);
  });
  await check('the device filter takes an id', async () => {
    expectListed(await filtered({ device: otherDeviceId }), [otherSid], `device ${otherDeviceId}`);
  });
  await check('the user filter', async () => {
    expectListed(await filtered({ user: 'alice' }), [needleSid, playerSid], 'user alice');
    expectListed(await filtered({ user: 'bob', device }), [], `bob on ${device}`);
  });
  await check('the date filters', async () => {
    expectListed(await filtered({ from: localTime(1) }), [], 'from an hour ahead');
    expectListed(await filtered({ from: localTime(-1), to: localTime(1) }), [needleSid, otherSid, playerSid], 'within the hour');
    expectListed(await filtered({ to: localTime(-1) }), [], 'before an hour ago');
  });
  await check('the search in the output finds the needle, with its line', async () => {
    expectListed(await filtered({ text: 'NEEDLE-42' }), [needleSid], 'text NEEDLE-42');
    const excerpt = await page.textContent(`[data-excerpt="${needleSid}"]`);
    if (!/needle-42-found here/.test(excerpt)) throw new Error(`excerpt: ${excerpt}`);
    const summary = await page.textContent('#recordings-search');
    if (!/Searched the output of 3 recordings/.test(summary) || !/Every recording the filters keep was searched/.test(summary)) throw new Error(`summary: ${summary}`);
  });
  await check('a search combines with the other filters, and a missing text finds nothing', async () => {
    expectListed(await filtered({ text: 'needle-42', user: 'bob' }), [], 'needle-42 of bob');
    expectListed(await filtered({ text: 'no-such-text-anywhere' }), [], 'a missing text');
    if (!(await page.textContent('#recordings tbody')).includes('No recorded sessions.')) throw new Error('no "No recorded sessions." row');
  });
  expectListed(await filtered({ text: 'needle-42', user: 'alice', device }), [needleSid], 'needle-42 of alice');
  await check('axe finds nothing serious on the recordings page', () => assertAccessible(page, 'recordings'));
  await shots('recordings-filtered');

  begin('the player: metadata, idle gaps skipped, playing to the end');
  requests.length = 0;
  await page.goto(`${url}/#/play/${playerSid}`);
  await waitScreen('#player', /player-end-4/, 'playback to the end', page);
  await page.waitForSelector('#play:text("Play")', { timeout: LIMIT });
  await check('the player shows user, device, date and duration', async () => {
    const facts = await page.$$eval('#player-meta dd', (all) => Object.fromEntries(all.map((dd) => [dd.id, dd.textContent])));
    if (facts['player-user'] !== 'alice') throw new Error(`user: ${facts['player-user']}`);
    if (facts['player-device'] !== device) throw new Error(`device: ${facts['player-device']}`);
    if (!/\d/.test(facts['player-date'] || '')) throw new Error(`date: ${facts['player-date']}`);
    if (!/^\d+ s$|^\d+ min \d+ s$/.test(facts['player-duration'] || '')) throw new Error(`duration: ${facts['player-duration']}`);
    if (facts['player-command'] !== 'shell') throw new Error(`command: ${facts['player-command']}`);
  });
  await check('the 62 s pause is skipped down to the 2 s limit', async () => {
    const skipped = Number(await page.getAttribute('#player-skipped', 'data-skipped-ms'));
    if (!(skipped >= 55000)) throw new Error(`skipped ${skipped} ms`);
    const said = await page.textContent('#player-skipped');
    if (!/^Skipped (\d+ min )?\d+ s of idle time\.$/.test(said)) throw new Error(`the notice says ${JSON.stringify(said)}`);
  });
  await check('the player reads windows of the recording, never the whole cast', async () => {
    if (!requests.some((path) => path.endsWith(`/sessions/${playerSid}/segments`))) throw new Error(`no segments request: ${requests}`);
    const windows = requests.filter((path) => path.includes(`/sessions/${playerSid}/recording?`));
    if (!windows.length || !windows.every((path) => /from_ms=\d+/.test(path))) throw new Error(`recording requests: ${windows}`);
    // The first window ends at the keyframe after the pause; the next one starts there.
    if (windows.length < 2 || !/to_ms=\d+/.test(windows[0])) throw new Error(`one window for a recording of two: ${windows}`);
    const end = new URL(`${url}${windows[0]}`).searchParams.get('to_ms');
    if (new URL(`${url}${windows[1]}`).searchParams.get('from_ms') !== end) throw new Error(`the windows do not follow on: ${windows}`);
    if (requests.some((path) => path.includes('/asciicast'))) throw new Error(`the cast was downloaded: ${requests}`);
  });

  // As it ended: its facts, and the idle time it skipped.
  await shots('player-metadata');

  begin('seek through the keyframes');
  const segments = await page.evaluate(async ([api, sid]) => (await fetch(`${api}/sessions/${sid}/segments`)).json(), [API, playerSid]);
  await check('the recording has several keyframes, offered on the seek bar', async () => {
    if (segments.segments.length < 2) throw new Error(`segments: ${JSON.stringify(segments.segments)}`);
    const ticks = await page.$$eval('#player-keyframes option', (all) => all.length);
    if (ticks !== segments.segments.length) throw new Error(`${ticks} ticks for ${segments.segments.length} keyframes`);
  });
  await check('seeking reads from the keyframe before the moment, far less than the whole recording', async () => {
    if (segments.segments.length < 3) throw new Error(`segments: ${JSON.stringify(segments.segments)}`);
    // Just after the keyframe before the pause's (in the middle of the numbers).
    const keyframe = segments.segments[segments.segments.length - 2].start_ms;
    const target = keyframe + 1;
    requests.length = 0;
    const answered = page.waitForResponse((response) => response.url().includes('/recording?from_ms='), { timeout: LIMIT });
    await page.fill('#seek', String(Math.ceil((target / segments.duration_ms) * 1000)));
    await page.dispatchEvent('#seek', 'input');
    const window = await (await answered).text();
    const from = Number(new URL(`${url}${requests.find((path) => path.includes('/recording?'))}`).searchParams.get('from_ms'));
    if (!(from >= keyframe)) throw new Error(`read from ${from} ms, before the keyframe at ${keyframe}`);
    const whole = await page.evaluate(async ([api, sid]) => (await (await fetch(`${api}/sessions/${sid}/recording`)).text()).length, [API, playerSid]);
    if (!(window.length * 2 < whole)) throw new Error(`the window is ${window.length} bytes of ${whole}`);
    // The screen at that moment: in the middle of the numbers, not the end of the session.
    const shown = (await waitScreen('#player', /^\d{5,6}$/m, 'the screen after seeking', page)).input;
    if (/player-end-4/.test(shown)) throw new Error(`the screen after seeking shows the end:\n${shown}`);
  });
  await check('seeking back to the start clears the screen', async () => {
    await page.fill('#seek', '0');
    await page.dispatchEvent('#seek', 'input');
    const shown = await screen('#player', page);
    if (/player-end-4/.test(shown)) throw new Error(`the last screen stayed:\n${shown}`);
  });
  await check('without skipping, the gap is played as it was (the notice stays empty)', async () => {
    await page.uncheck('#skip-idle');
    await page.selectOption('#speed', '8');
    await page.click('#play');
    await waitScreen('#player', /player-end-4/, 'playback without skipping', page);
    const skipped = Number(await page.getAttribute('#player-skipped', 'data-skipped-ms'));
    if (skipped >= 1000) throw new Error(`skipped ${skipped} ms with skipping off`);
  });
  await check('axe finds nothing serious on the player', () => assertAccessible(page, 'player'));

  begin('the player links to the session\'s audit events, and they link back');
  await page.click('#player-audit');
  await page.waitForFunction((sid) => location.hash === `#/audit/session/${sid}`, playerSid, { timeout: LIMIT });
  await page.waitForSelector('#audit tbody tr[data-action="terminal.open"]', { timeout: LIMIT });
  await check('the audit log is filtered to the session', async () => {
    const value = await page.inputValue('#audit-session');
    if (value !== playerSid) throw new Error(`session filter: ${value}`);
    const links = await page.$$eval('#audit a[data-recording]', (all) => all.map((link) => link.dataset.recording));
    if (!links.length || links.some((sid) => sid !== playerSid)) throw new Error(`recording links: ${links}`);
  });
  await check('axe finds nothing serious on the filtered audit log', () => assertAccessible(page, 'audit'));
  await page.click(`#audit tr[data-action="terminal.open"] a[data-recording="${playerSid}"]`);
  await page.waitForFunction((sid) => location.hash === `#/play/${sid}`, playerSid, { timeout: LIMIT });
  await waitScreen('#player', /player-end-4/, 'the player reached from the audit log', page);

  begin('the unfiltered audit log links terminal events to their recordings');
  await page.goto(`${url}/#/audit`);
  await page.fill('#audit-action', 'terminal.open');
  await page.dispatchEvent('#audit-action', 'change');
  await check('each terminal.open links to its session\'s recording', async () => {
    await page.waitForFunction((sid) => !!document.querySelector(`#audit a[data-recording="${sid}"]`), needleSid, { timeout: LIMIT });
    const links = await page.$$eval('#audit a[data-recording]', (all) => all.map((link) => link.dataset.recording));
    for (const sid of [needleSid, otherSid, playerSid]) if (!links.includes(sid)) throw new Error(`${sid} has no link: ${links}`);
  });
} catch (error) {
  console.error(`[recordings] FAILED at step "${run.step}": ${error.stack || error.message}`);
  await page.screenshot({ path: `${screenshots}/recordings-failure.png`, type: 'png', fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}

await browser.close();
if (failedChecks.length) {
  console.error(`[recordings] ${failedChecks.length} check(s) failed: ${failedChecks.join('; ')}`);
  process.exit(1);
}
log('all steps and checks passed');
