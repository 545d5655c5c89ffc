// A browser terminal on a device: xterm.js over the hub's user-leg WebSocket (the cookie
// authenticates it; the hub checks Origin). The fit addon makes the remote PTY follow the
// window; selecting copies, Ctrl+Shift+C/V copy and paste; Esc then Tab (or Shift+Tab) moves
// the focus out of the terminal, which otherwise keeps every key for the shell. When someone
// watches the terminal live, a notice above it says who (the hub's control `watching`).

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { API, checkSession, get, sessionExpired, websocketUrl } from './api.js';
import { interpret, parse, shellData, shellNew, shellResize, shellStop } from './envelope.js';

/** What moves the focus out of a terminal, as the page tells its users. */
export const LEAVE_KEYS = 'Esc then Tab leaves the terminal';

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** Focuses the next (`step` 1) or previous (-1) focusable element outside `element`. */
function focusOutside(element, step) {
  const candidates = [...document.querySelectorAll(FOCUSABLE)]
    .filter((candidate) => !element.contains(candidate) && candidate.getClientRects().length > 0);
  const after = (candidate) => element.compareDocumentPosition(candidate) & Node.DOCUMENT_POSITION_FOLLOWING;
  const target = step > 0
    ? candidates.find(after) || candidates[0]
    : candidates.filter((candidate) => !after(candidate)).pop() || candidates[candidates.length - 1];
  if (target) target.focus();
  else document.activeElement.blur();
}

const MODIFIERS = ['Shift', 'Control', 'Alt', 'Meta'];

/**
 * The terminal's own keys: Esc then Tab leaves it (Esc still reaches the shell: vim needs it;
 * only the Tab right after is taken), and with `clipboard` Ctrl+Shift+C / Ctrl+Shift+V.
 */
function keyHandler(terminal, element, clipboard) {
  let afterEscape = false;
  return (event) => {
    if (event.type !== 'keydown') return true;
    const plain = !event.ctrlKey && !event.altKey && !event.metaKey;
    if (event.key === 'Tab' && plain && afterEscape) {
      afterEscape = false;
      event.preventDefault();
      focusOutside(element, event.shiftKey ? -1 : 1);
      return false;
    }
    if (!MODIFIERS.includes(event.key)) afterEscape = event.key === 'Escape' && plain && !event.shiftKey;
    if (!clipboard || !event.ctrlKey || !event.shiftKey) return true;
    if (event.code === 'KeyC') {
      const selection = terminal.getSelection();
      if (selection) navigator.clipboard.writeText(selection).catch(() => {});
      return false;
    }
    // The browser's own paste follows (xterm.js handles it); only keep ^V from the shell.
    if (event.code === 'KeyV') return false;
    return true;
  };
}

/**
 * An xterm.js terminal in `element`; `clipboard` adds copy on selection and Ctrl+Shift+C/V.
 * The terminal is also `element.terminal`, for the browser tests and the console.
 */
export function createTerminal(element, options = {}, { clipboard = false } = {}) {
  const terminal = new Terminal({
    cursorBlink: true,
    fontSize: 14,
    fontFamily: 'ui-monospace, Menlo, Consolas, monospace',
    // Rows exactly one font height tall (the default, 1.0) cut off what a font draws at the
    // bottom of its descent: DejaVu Sans Mono's underscore vanished.
    lineHeight: 1.2,
    scrollback: 5000,
    ...options,
  });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open(element);
  terminal.attachCustomKeyEventHandler(keyHandler(terminal, element, clipboard));
  if (clipboard) {
    terminal.onSelectionChange(() => {
      const selection = terminal.getSelection();
      if (selection && navigator.clipboard) navigator.clipboard.writeText(selection).catch(() => {});
    });
  }
  element.terminal = terminal;
  return { terminal, fit };
}

/**
 * The "NAME is watching" notice above `terminal`'s box: `watching(user, yes)` counts a watcher
 * in or out (one user may watch from two tabs); `reset()` forgets them (a re-attach: the hub
 * names them again); `remove()` takes the notice away.
 */
function watchersNotice(terminal) {
  const counts = new Map();
  let notice = null;
  const render = () => {
    const box = terminal.element && terminal.element.parentElement;
    if (!box) return;
    if (!notice) {
      notice = Object.assign(document.createElement('p'), { className: 'watchers-notice' });
      notice.setAttribute('role', 'status');
      box.before(notice);
    }
    const names = [...counts.keys()];
    notice.hidden = names.length === 0;
    notice.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} watching this terminal (read-only).` : '';
  };
  return {
    watching(user, yes) {
      const count = (counts.get(user) || 0) + (yes ? 1 : -1);
      if (count > 0) counts.set(user, count);
      else counts.delete(user);
      render();
    },
    reset() {
      counts.clear();
      render();
    },
    remove() {
      if (notice) notice.remove();
    },
  };
}

/** The WebSocket close code that tells the hub to keep the shell for a re-attach (protocol.md). */
const DETACH_CLOSE_CODE = 4001;
/** How long a lost session keeps trying to re-attach (the agent keeps a shell 5 min by default). */
const REATTACH_FOR_MS = 15 * 60 * 1000;
/** A hub and an online device that refuse a re-attach this often in a row: the shell is gone. */
const REFUSALS_TO_GIVE_UP = 3;
/** Keys typed while reconnecting, sent once back (more is dropped, with a notice). */
const MAX_PENDING_INPUT = 256;

/**
 * Connects `terminal` to device `device` ({id, name}); `report(state, text)` hears
 * 'connecting' | 'connected' | 'reconnecting' | 'ended' | 'failed'. A session whose connection
 * drops re-attaches by itself (`?attach=SID&offset=N`): the output missed meanwhile is replayed,
 * and what was already shown is not shown twice. With `attach` (a detached shell's session id)
 * it re-attaches to that shell from its first byte instead of starting one. Returns
 * {disconnect, dispose, sid}.
 */
export function connectTerminal(device, terminal, fit, report, { attach = '' } = {}) {
  let sid = attach;
  /** Re-attaching to a detached shell, until its first start answers. */
  let adopting = Boolean(attach);
  let started = false;
  let over = false;
  let socket = null;
  /** The output offset after the last byte shown: where a re-attach continues. */
  let nextOffset = 0;
  let lostSince = 0;
  let retryDelay = 250;
  /** Re-attaches refused in a row while the hub answered and the device was online. */
  let refusedOnline = 0;
  const pending = [];
  const encoder = new TextEncoder();
  const watchers = watchersNotice(terminal);
  report('connecting', adopting ? `Re-attaching to the shell on ${device.name}…` : `Connecting to ${device.name}…`);

  const finish = (state, text) => {
    if (over) return;
    over = true;
    report(state, text);
    if (socket && socket.readyState === WebSocket.OPEN) socket.close();
  };

  const send = (frame) => {
    if (socket && socket.readyState === WebSocket.OPEN && started) socket.send(frame);
    else if (sid && pending.length < MAX_PENDING_INPUT) pending.push(frame);
  };
  const sendNow = (frame) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(frame);
  };

  /** Writes output, skipping what a replay repeats (by its offset). */
  const show = (data, offset) => {
    if (typeof offset !== 'number') {
      terminal.write(data);
      return;
    }
    const end = offset + data.length;
    if (end <= nextOffset) return;
    terminal.write(offset < nextOffset ? data.subarray(nextOffset - offset) : data);
    nextOffset = end;
  };

  const back = () => {
    if (lostSince) report('connected', `Connected to ${device.name} (reconnected)`);
    lostSince = 0;
    retryDelay = 250;
    refusedOnline = 0;
  };

  const input = terminal.onData((data) => { if (sid) send(shellData(sid, encoder.encode(data))); });
  const binary = terminal.onBinary((data) => {
    if (sid) send(shellData(sid, Uint8Array.from(data, (c) => c.charCodeAt(0))));
  });
  const resize = terminal.onResize(({ cols, rows }) => { if (started) send(shellResize(sid, cols, rows)); });

  function open() {
    const path = `${API}/deviceconnect/devices/${encodeURIComponent(device.id)}/connect`;
    const attach = sid ? `?attach=${encodeURIComponent(sid)}&offset=${nextOffset}` : '';
    const resuming = Boolean(sid);
    socket = new WebSocket(websocketUrl(path + attach));
    socket.binaryType = 'arraybuffer';
    let opened = false;
    socket.addEventListener('open', () => { opened = true; });
    socket.addEventListener('message', (event) => {
      if (typeof event.data === 'string') return;
      const message = parse(event.data);
      const meaning = interpret(message);
      switch (meaning.kind) {
        case 'accepted':
          // Re-attached: the hub says again who watches.
          if (resuming) {
            watchers.reset();
            break;
          }
          sid = message.sid;
          fit.fit();
          sendNow(shellNew(sid, terminal.cols, terminal.rows));
          break;
        case 'started':
          started = true;
          if (adopting) {
            adopting = false;
            report('connected', `Connected to ${device.name} (re-attached)`);
            fit.fit();
            sendNow(shellResize(sid, terminal.cols, terminal.rows));
            terminal.focus();
          } else if (resuming) {
            back();
            sendNow(shellResize(sid, terminal.cols, terminal.rows));
          } else {
            report('connected', `Connected to ${device.name}`);
          }
          while (pending.length) sendNow(pending.shift());
          // Only the first start takes the focus: a re-attach must not pull it back.
          if (!resuming) terminal.focus();
          break;
        case 'refused':
          finish('failed', resuming ? `The session could not be resumed: ${meaning.text}` : `The device refused the shell: ${meaning.text}`);
          break;
        case 'output':
          if (lostSince && !resuming) back();
          show(meaning.data, meaning.offset);
          break;
        case 'ended':
          finish('ended', meaning.text ? `The shell ended: ${meaning.text}` : 'The shell ended.');
          break;
        case 'reconnecting':
          if (!lostSince) lostSince = Date.now();
          report('reconnecting', `${meaning.text}`);
          break;
        case 'watching':
          watchers.watching(meaning.user, meaning.watching);
          break;
        case 'notice':
          terminal.write(`\r\n\x1b[33m[${meaning.text}]\x1b[0m\r\n`);
          break;
        case 'closed':
          finish(started ? 'ended' : 'failed', `Session ended: ${meaning.text}`);
          break;
        case 'reply':
          sendNow(meaning.frame);
          break;
        default:
          break;
      }
    });
    socket.addEventListener('close', () => closed(opened));
  }

  /** The device as the hub lists it now, or null (gone, or not visible any more). */
  async function lookUp() {
    const list = await get(`devices?id_prefix=${encodeURIComponent(device.id)}`);
    return list.devices.find((d) => d.id === device.id) || null;
  }

  /** The login ended: stop here, and let the page return to the login form. */
  function loggedOut() {
    over = true;
    sessionExpired();
  }

  async function closed(opened) {
    if (over) return;
    if (sid) {
      // A shell was started: it outlives this connection on the device, so re-attach (like
      // mosh), whatever broke: the hub restarting, the network, the device's own link.
      const wasStarted = started;
      started = false;
      if (!lostSince) lostSince = Date.now();
      if (Date.now() - lostSince > REATTACH_FOR_MS) {
        finish('ended', 'Connection lost; gave up reconnecting.');
        return;
      }
      if (opened || wasStarted) {
        report('reconnecting', 'Connection to the hub lost; reconnecting…');
      } else if (!(await explainRefusedReattach())) {
        return;
      }
      retry();
      return;
    }
    // A refused upgrade tells the browser nothing: ask the hub why.
    const session = await checkSession();
    if (over) return;
    if (session === 'expired') return loggedOut();
    if (session === 'unknown') return finish('failed', 'Hub unreachable: could not open a session.');
    // The hub refuses an upgrade beyond its caps (HTTP 429, which a browser cannot read) or
    // without the permission; the device being offline or gone is told apart below.
    let why = `The hub refused a new session on ${device.name}: a session limit was reached (the hub's max_sessions_per_user or max_sessions_per_device), or you may not open one there. Close another terminal and try again.`;
    try {
      const found = await lookUp();
      if (!found) why = 'The device no longer exists.';
      else if (found.status !== 'accepted') why = `The device is ${found.status}.`;
      else if (!found.online) why = `${device.name} is offline.`;
    } catch { /* keep the generic reason */ }
    finish('failed', why);
  }

  /**
   * A re-attach was refused before the upgrade: says why and returns true to keep trying, or
   * ends the session (false). An unreachable hub and an offline device are waited for; a hub
   * that answers, with the device online, and still refuses has no shell to give back.
   */
  async function explainRefusedReattach() {
    const session = await checkSession();
    if (over) return false;
    if (session === 'expired') {
      loggedOut();
      return false;
    }
    if (session === 'unknown') {
      report('reconnecting', 'Hub unreachable, retrying…');
      return true;
    }
    let found;
    try {
      found = await lookUp();
    } catch {
      report('reconnecting', 'Reconnecting…');
      return true;
    }
    if (over) return false;
    if (!found || found.status !== 'accepted') {
      finish('ended', found ? `The device is ${found.status}.` : 'The device no longer exists.');
      return false;
    }
    if (!found.online) {
      refusedOnline = 0;
      report('reconnecting', `${device.name} is offline; waiting for it to come back…`);
      return true;
    }
    refusedOnline += 1;
    if (refusedOnline >= REFUSALS_TO_GIVE_UP) {
      finish('ended', 'The shell can no longer be re-attached (it ended, or its grace period passed).');
      return false;
    }
    report('reconnecting', 'Reconnecting…');
    return true;
  }

  function retry() {
    setTimeout(() => { if (!over) open(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 3000);
  }

  open();

  return {
    /** The session's id, once the hub gave one ('' before). */
    sid: () => sid,
    disconnect() {
      if (started) sendNow(shellStop(sid));
      finish('ended', 'Disconnected.');
      watchers.remove();
      input.dispose();
      binary.dispose();
      resize.dispose();
    },
    /** Leaves a started shell running on the device, detached (the hub's close code 4001),
     *  to be re-attached later; returns whether there was one to leave. */
    detach() {
      if (!started || over) return false;
      over = true;
      socket.close(DETACH_CLOSE_CODE, 'detach');
      report('detached', `Detached: the shell keeps running on ${device.name}.`);
      watchers.remove();
      input.dispose();
      binary.dispose();
      resize.dispose();
      return true;
    },
    dispose() {
      over = true;
      if (socket && socket.readyState === WebSocket.OPEN) socket.close();
      watchers.remove();
      input.dispose();
      binary.dispose();
      resize.dispose();
    },
  };
}
