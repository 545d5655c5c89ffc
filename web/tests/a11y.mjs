// Accessibility checks of the browser tests: axe-core (npm `axe-core`) run in the page, and
// keyboard-only navigation (Tab reaches every control of the page).
//
// The hub's Content-Security-Policy forbids inline scripts: axe's source is evaluated through
// the DevTools protocol (`page.evaluate(source)`), which the policy does not govern.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** What counts as a failure: the impacts the issue names. */
const FAILING = ['serious', 'critical'];

/**
 * Runs axe-core on `page` as it is; returns the serious and critical violations, each as one
 * line (rule, impact, help, the first offending elements).
 */
export async function axeViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((violation) => ({
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      targets: violation.nodes.slice(0, 4).map((node) => `${node.target.join(' ')}${node.failureSummary ? ` (${node.failureSummary.split('\n').slice(1, 2).join('').trim()})` : ''}`),
    }));
  });
  return violations.filter((violation) => FAILING.includes(violation.impact))
    .map((violation) => `${violation.id} [${violation.impact}] ${violation.help}: ${violation.targets.join('; ')}`);
}

/** Throws when axe finds a serious or critical violation on `page` (named `what`). */
export async function assertAccessible(page, what) {
  const found = await axeViolations(page);
  if (found.length) throw new Error(`axe on ${what}:\n  ${found.join('\n  ')}`);
}

/**
 * Presses Tab from the skip link on until every visible control (links, buttons, inputs,
 * selects) outside a terminal and a closed <details> got the focus, or throws naming those it never reached. In a
 * terminal, which keeps Tab for the shell, it presses the documented Esc then Tab.
 */
export async function assertKeyboardReachable(page, what) {
  const controls = await page.evaluate(() => {
    const visible = (element) => element.getClientRects().length > 0 && getComputedStyle(element).visibility !== 'hidden';
    const all = [...document.querySelectorAll('a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled])')]
      .filter((element) => visible(element) && !element.closest('.xterm') && !element.closest('details:not([open])') && element.tabIndex >= 0);
    all.forEach((element, index) => { element.dataset.keyboardCheck = String(index); });
    return all.length;
  });
  await page.focus('#skip-link');
  const reached = new Set(['0']);
  for (let presses = 0; presses < controls + 20 && reached.size < controls; presses += 1) {
    if (await page.evaluate(() => Boolean(document.activeElement?.closest('.xterm')))) await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    const index = await page.evaluate(() => document.activeElement?.dataset?.keyboardCheck ?? null);
    if (index !== null) reached.add(index);
  }
  const missed = await page.evaluate((seen) => [...document.querySelectorAll('[data-keyboard-check]')]
    .filter((element) => !seen.includes(element.dataset.keyboardCheck))
    .map((element) => `${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''} “${(element.textContent || element.value || '').trim().slice(0, 30)}”`), [...reached]);
  await page.evaluate(() => document.querySelectorAll('[data-keyboard-check]').forEach((element) => delete element.dataset.keyboardCheck));
  if (missed.length) throw new Error(`on ${what}, Tab never reached ${missed.length} of ${controls} controls: ${missed.slice(0, 6).join(', ')}`);
}
