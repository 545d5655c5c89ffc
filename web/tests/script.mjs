// What every browser script (*.e2e.mjs) shares: its environment, the log of its steps and checks,
// Debian's Chromium started headless, and screenshots at both sizes with the 400 px check. The
// Rust side (tether_e2e::browser::run_web_script) starts the script and reads its exit code.

import { chromium } from 'playwright-core';

/** The environment variable `name`, which the Rust test must have set. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/**
 * The steps and checks of one script, logged as `[TAG] SECONDS s  TEXT`. A failed step stops the
 * script (its caller reports `run.step`); a failed check is recorded in `failedChecks`, reported
 * as `CHECK FAILED: …`, and the script goes on, so one run lists every failure.
 */
export function createRun(tag) {
  const started = Date.now();
  const run = {
    step: 'start',
    failedChecks: [],
    log: (text) => console.log(`[${tag}] ${((Date.now() - started) / 1000).toFixed(1)} s  ${text}`),
    begin: (name) => {
      run.step = name;
      run.log(name);
    },
    check: async (name, action) => {
      try {
        await action();
        run.log(`check passed: ${name}`);
      } catch (error) {
        run.failedChecks.push(name);
        console.error(`[${tag}] CHECK FAILED: ${name}: ${error.message}`);
      }
    },
  };
  return run;
}

/** Debian's Chromium (or `CHROMIUM`), headless; never a downloaded browser. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--ignore-certificate-errors'],
  });
}

/**
 * Screenshots of `page` as it is into `directory`: NAME.png at 1400×900 and NAME-400.png 400 px
 * wide (full height). `check(name, action)` judges that nothing is wider than the 400 px screen
 * (a script's check, or a step that throws). The viewport is put back afterwards.
 */
export async function saveShots(page, directory, name, check) {
  const viewport = page.viewportSize();
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.waitForTimeout(200);
  await page.screenshot({ path: `${directory}/${name}.png`, type: 'png' });
  await page.setViewportSize({ width: 400, height: 800 });
  await page.waitForTimeout(200);
  await page.screenshot({ path: `${directory}/${name}-400.png`, type: 'png', fullPage: true });
  await check(`the ${name} page fits a 400 px screen`, async () => {
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    if (width > 400) {
      const wide = await page.evaluate(() => [...document.querySelectorAll('body *')]
        .filter((element) => element.getBoundingClientRect().right > 401)
        .slice(0, 6).map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}`).join(', '));
      throw new Error(`the ${name} page is ${width} px wide at 400 px (too wide: ${wide})`);
    }
  });
  await page.setViewportSize(viewport);
}
