// The device page's terminals: several shells at once, one ARIA tab each (role tablist, tab,
// tabpanel; Left/Right/Home/End move between tabs, Delete closes one). Every tab has its own
// xterm.js instance, so a hidden tab keeps its output; it is fitted to its box when shown.
// Closing a tab with a running shell asks first and ends only that shell; Detach closes the tab
// and leaves its shell running on the device, listed under Detached shells. The first tab keeps
// the page's historic ids (#terminal, #connect, #disconnect, #terminal-status); tab N > 1 has
// them with a `-N` suffix.

import { h } from '../dom.js';
import { LEAVE_KEYS, connectTerminal, createTerminal } from '../terminal.js';

const LIVE = ['connecting', 'connected', 'reconnecting'];

/** Whether the device's shells outlive their connection (protocol version 2 on; a stock
 *  mender-connect, with no inventory, ends its shell with the connection). */
const keepsShells = (device) => ((device.inventory && device.inventory.versions) || []).some((version) => version >= 2);

/** What a tab's label adds for its state (the status line under it says more). */
const STATE_WORDS = { connecting: 'connecting', connected: 'running', reconnecting: 'reconnecting', ended: 'ended', failed: 'failed', detached: 'detached' };

/**
 * The terminals panel of `device`; `changed()` is called when a shell ends or a tab closes (the
 * detached list may have changed). Returns {panel, reattach(sid), sids(), leaving(), cleanup()}.
 */
export function terminalTabs(device, { changed = () => {} } = {}) {
  const tablist = h('div', { role: 'tablist', class: 'terminal-tablist', 'aria-label': `Terminals on ${device.name}` });
  const newButton = h('button', { type: 'button', id: 'new-terminal', class: 'small' }, 'New terminal');
  const panels = h('div', { class: 'terminal-panels' });
  const panel = h('section', { class: 'panel', id: 'terminals' },
    h('div', { class: 'terminal-tabs' }, tablist, newButton), panels,
    h('p', { class: 'notice hint', id: 'terminal-keys' }, `${LEAVE_KEYS} (Esc then Shift+Tab: backwards); Ctrl+Shift+C / Ctrl+Shift+V copy and paste; in the tab list, arrow keys switch tabs and Delete closes one.`));
  /** The open tabs, in their order on screen. */
  let tabs = [];
  let active = null;
  let counter = 0;

  const refitActive = () => { if (active) active.refit(); };
  window.addEventListener('resize', refitActive);

  function makeTab() {
    if (tabs.length === 0) counter = 0;
    counter += 1;
    const number = counter;
    const suffix = number === 1 ? '' : `-${number}`;
    const label = h('span', {}, `Terminal ${number}`);
    const stateWord = h('span', { class: 'tab-state' });
    const tabButton = h('button', {
      type: 'button', role: 'tab', id: `terminal-tab-${number}`, 'aria-controls': `terminal-panel-${number}`,
      'aria-selected': 'false', tabindex: '-1', class: 'terminal-tab', dataset: { tab: String(number) },
    }, label, stateWord);
    const box = h('div', { class: 'terminal-box', id: `terminal${suffix}` });
    const status = h('span', { id: `terminal-status${suffix}`, class: 'notice terminal-status', 'aria-live': 'polite' }, 'Not connected.');
    const connectButton = h('button', { type: 'button', class: 'primary connect', id: `connect${suffix}` }, 'Connect terminal');
    const disconnectButton = h('button', { type: 'button', class: 'disconnect', id: `disconnect${suffix}`, disabled: true }, 'Disconnect');
    const detachButton = h('button', { type: 'button', class: 'detach', id: `detach-terminal-${number}`, disabled: true, hidden: !keepsShells(device), title: 'Leave the shell running on the device, to re-attach later' }, 'Detach');
    const closeButton = h('button', { type: 'button', class: 'close-tab', id: `close-terminal-${number}` }, `Close tab ${number}`);
    const tabPanel = h('div', {
      role: 'tabpanel', id: `terminal-panel-${number}`, 'aria-labelledby': tabButton.id, hidden: true, dataset: { tab: String(number) },
    }, h('div', { class: 'status-line terminal-controls' }, connectButton, disconnectButton, detachButton, closeButton, status), box);

    const tab = { number, button: tabButton, panel: tabPanel, state: 'idle', session: null, terminal: null, fit: null };
    const observer = new ResizeObserver(() => { if (!tabPanel.hidden) tab.refit(); });
    tab.refit = () => { if (tab.fit && !tabPanel.hidden) tab.fit.fit(); };
    tab.live = () => LIVE.includes(tab.state);

    function report(now, text) {
      const was = tab.state;
      tab.state = now;
      status.textContent = text;
      status.className = `${now === 'failed' ? 'error' : 'notice'} terminal-status`;
      status.dataset.state = now;
      tabPanel.dataset.state = now;
      tabButton.dataset.state = now;
      stateWord.textContent = STATE_WORDS[now] ? ` · ${STATE_WORDS[now]}` : '';
      const live = tab.live();
      connectButton.disabled = live;
      disconnectButton.disabled = !live;
      detachButton.disabled = now !== 'connected';
      connectButton.textContent = now === 'connecting' || now === 'connected' ? 'Connect terminal' : (tab.terminal && now !== 'idle' ? 'Reconnect' : 'Connect terminal');
      if (LIVE.includes(was) && !live) changed();
    }

    tab.connect = (options = {}) => {
      if (!tab.terminal) {
        ({ terminal: tab.terminal, fit: tab.fit } = createTerminal(box, {}, { clipboard: true }));
        observer.observe(box);
      } else {
        tab.terminal.reset();
      }
      if (tab.session) tab.session.dispose();
      tab.refit();
      tab.session = connectTerminal(device, tab.terminal, tab.fit, report, options);
    };
    tab.end = () => {
      if (tab.session) tab.session.disconnect();
      observer.disconnect();
      if (tab.terminal) tab.terminal.dispose();
    };
    connectButton.addEventListener('click', () => tab.connect());
    disconnectButton.addEventListener('click', () => tab.session && tab.session.disconnect());
    closeButton.addEventListener('click', () => close(tab));
    // Detaching loses nothing (the shell is listed under Detached shells): no question.
    detachButton.addEventListener('click', () => { if (tab.session && tab.session.detach()) close(tab); });
    tabButton.addEventListener('click', () => select(tab));
    tablist.append(tabButton);
    panels.append(tabPanel);
    tabs.push(tab);
    return tab;
  }

  function select(tab, { focus = false } = {}) {
    for (const other of tabs) {
      const chosen = other === tab;
      other.button.setAttribute('aria-selected', String(chosen));
      other.button.tabIndex = chosen ? 0 : -1;
      other.panel.hidden = !chosen;
    }
    active = tab;
    // A hidden terminal has no size: fit it to its box now that it shows.
    tab.refit();
    if (focus) tab.button.focus();
  }

  /** Closes `tab`, asking first when its shell runs; returns whether it closed. */
  function close(tab) {
    if (tab.live() && !window.confirm(`End the shell in tab ${tab.number}?`)) return false;
    const at = tabs.indexOf(tab);
    tab.end();
    tab.button.remove();
    tab.panel.remove();
    tabs = tabs.filter((other) => other !== tab);
    if (tabs.length === 0) makeTab();
    if (active === tab || !tabs.includes(active)) select(tabs[Math.min(at, tabs.length - 1)], { focus: true });
    changed();
    return true;
  }

  tablist.addEventListener('keydown', (event) => {
    const at = tabs.indexOf(active);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      select(tabs[(moves[event.key] + tabs.length) % tabs.length], { focus: true });
    } else if (event.key === 'Delete' && active) {
      event.preventDefault();
      close(active);
    }
  });

  newButton.addEventListener('click', () => {
    const tab = makeTab();
    select(tab);
    tab.connect();
  });

  select(makeTab());

  return {
    panel,
    /** Opens detached shell `sid` in a new tab. */
    reattach(sid) {
      const held = tabs.find((tab) => tab.session && tab.session.sid() === sid && tab.live());
      if (held) return select(held, { focus: true });
      const tab = makeTab();
      select(tab);
      tab.connect({ attach: sid });
    },
    /** The sessions this page's live tabs hold (a dropped one is re-attaching by itself). */
    sids: () => tabs.filter((tab) => tab.live() && tab.session).map((tab) => tab.session.sid()).filter(Boolean),
    /** What leaving would end, or null. */
    leaving() {
      const running = tabs.filter((tab) => tab.live()).map((tab) => tab.number);
      if (running.length === 0) return null;
      if (running.length === 1) return `The shell in tab ${running[0]} on ${device.name} is still running: leaving this page ends it.`;
      return `The shells in tabs ${running.slice(0, -1).join(', ')} and ${running[running.length - 1]} on ${device.name} are still running: leaving this page ends them.`;
    },
    cleanup() {
      for (const tab of tabs) tab.end();
      window.removeEventListener('resize', refitActive);
    },
  };
}
